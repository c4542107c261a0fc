"""``kmodsim series --jobs N``: the steps of a series observed in N work trees at once.

What a step gives depends only on its tree and, for kbuild's incremental build, on the tree built
before it in the same work tree (:class:`~kmodsim.series.steps._Observation`). So the steps'
trees are found first, without building anything — a git range's commits' trees, or the patches
applied one after the other to an index of their own (``git apply --cached``, as ``--reorder``
does; a patch that does not apply leaves the tree as it was) — and the steps that applied are cut
into N runs of consecutive steps. Each run has a work tree of its own (``git clone --shared`` of
the scratch repository; ``git read-tree -m -u`` moves it from tree to tree, rewriting only the
files that differ), where it first builds the trees before its first step that leave kbuild's
objects as one work tree would leave them (not reported: the tree just before, or, when that one
does not build, the trees from the last one that does), then observes its steps in order. The steps are then compared in order, exactly as one work tree compares them, so
the report is the same byte for byte whatever N; only the wall time changes. Each run's make
gets ``-j`` cores / N unless ``-j`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from threading import Lock
from typing import TYPE_CHECKING

from .steps import Applied, _apply, _build, _compare, _git, _observe

if TYPE_CHECKING:
    from .patches import Patch
    from .steps import Step, _Context, _Observation


def split_runs(positions: Sequence[int], n: int) -> list[list[int]]:
    """``positions`` cut into at most ``n`` runs of consecutive items, as even as can be, in order."""
    n = max(1, min(n, len(positions)))
    size, extra = divmod(len(positions), n)
    out, at = [], 0
    for k in range(n):
        width = size + (1 if k < extra else 0)
        out.append(list(positions[at:at + width]))
        at += width
    return [r for r in out if r]


def parallel_steps(ctx: _Context, repo: str, prefix: str, base: str, names: list[str],
                   commits: list[str] | None, patches: list[Patch], scratch: str, workers: int,
                   tick: Callable[[int], None]) -> list[Step]:
    """The steps of the series (step 0 the base), observed in ``workers`` work trees. ``repo``: the
    scratch repository (its work tree holds the base); ``prefix``: DIR within it; ``base``: the
    base commit, or None for patches; ``commits``: the range's commits in order (None: patches)."""
    trees: list[str | None] = []  # a step's tree; None: it did not apply
    applied: list[Applied] = [Applied(None, [], [])]
    if commits is not None:
        trees.append(_git(repo, "rev-parse", f"{base}^{{tree}}").stdout.strip())
        for sha in commits:
            trees.append(_git(repo, "rev-parse", f"{sha}^{{tree}}").stdout.strip())
            applied.append(Applied(None, [], []))
    else:
        index = os.path.join(scratch, "steps.index")
        _git(repo, "add", "-A", "-f", ".")
        current = _git(repo, "write-tree").stdout.strip()
        trees.append(current)
        for patch in patches:
            _git(repo, "read-tree", current, index=index)
            a = _apply(repo, patch, index=index)
            applied.append(a)
            if a.ok:
                current = _git(repo, "write-tree", index=index).stdout.strip()
                trees.append(current)
            else:
                trees.append(None)
    positions = [i for i, t in enumerate(trees) if t is not None]
    runs = split_runs(positions, workers)
    observed: dict[int, _Observation] = {}
    lock = Lock()

    def run(k: int, items: list[int]) -> None:
        where = os.path.join(scratch, f"worktree{k}")
        _git(scratch, "clone", "-q", "--shared", "--no-checkout", repo, where)
        wctx = ctx._replace(tree=os.path.normpath(os.path.join(where, prefix)))
        current: str | None = None

        def warm(first: int, move: Callable[[str], None]) -> None:
            """Leave kbuild's products as one work tree leaves them before step ``positions[first]``:
            a tree that built has every product up to date, whatever came before it, so from the
            last earlier tree that builds (found going back), the trees after it are built in order;
            when none does, from a clean work tree at the base."""
            back = first - 1
            while True:
                tree = trees[positions[back]]
                assert tree is not None
                if back == 0:
                    _git(where, "clean", "-q", "-f", "-d", "-x")
                move(tree)
                if _build(wctx)[0].ok or back == 0:
                    break
                back -= 1
            for j in range(back + 1, first):
                tree = trees[positions[j]]
                assert tree is not None
                move(tree)
                _build(wctx)

        def move(tree: str) -> None:
            nonlocal current
            if current is None:
                _git(where, "read-tree", "--reset", "-u", tree)
            elif tree != current:
                _git(where, "read-tree", "-m", "-u", current, tree)
            current = tree

        first = positions.index(items[0])
        if first:
            warm(first, move)
        for i in items:
            tree = trees[i]
            assert tree is not None
            move(tree)
            obs = _observe(wctx)
            with lock:
                observed[i] = obs
                tick(1)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        for f in [pool.submit(run, k, items) for k, items in enumerate(runs)]:
            f.result()  # the first error of a run is raised here
    tick(len(trees) - len(positions))
    steps: list[Step] = []
    state = None
    for i, name in enumerate(["(base)", *names]):
        commit = (base if i == 0 else commits[i - 1]) if commits is not None else None
        step, state = _compare(ctx, i, name, commit, applied[i], observed.get(i), state)
        steps.append(step)
    return steps
