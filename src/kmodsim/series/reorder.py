"""``kmodsim series --reorder``: an order of the series' patches in which every step is good.

A step is good when its patch applies, the tree builds, the check adds no error finding against the
step before and no ``--expect`` metric moves the wrong way — the flags of
:class:`~kmodsim.series.steps.Step`, computed by the same code as for the given order. What a step
gives depends only on the tree before it and the tree after it, so the search works on trees, each
named by its git tree id:

* **cheap signals first.** Whether a patch applies to a tree is ``git apply --cached`` on an index
  of its own (no file written, nothing built); the tree it makes is ``git write-tree``'s. Patches
  that touch different lines commute: both orders reach the same tree id, which is built (at most)
  once. With ``--struct``, the ops census of a tree is taken from its files extracted with ``git
  archive`` (source only), so a step that moves a census metric the wrong way is ruled out before
  anything is built.
* **building only the candidates.** A depth-first search, trying the patches in their given order
  first, finds a whole order that passes the cheap signals; only then are its trees built (in the
  one build tree: ``git read-tree -m -u`` rewrites just the files that differ, so kbuild rebuilds
  just their objects), and its first bad step, if any, is ruled out before the search goes on. A
  tree is built once whatever the path to it (the given order's trees are built first, as plain
  ``series`` builds them), and a tree from which the remaining patches have no good order is not
  searched again.
* **the answer**: the order found, its steps as the given order's are reported; or, when every
  order fails, the proof: each ruled-out step (after which patches, which patch, why), which
  together cover every order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from .steps import Applied, OpsCounts, Step, _apply, _census, _compare, _git, _Observation, _observe, _state

if TYPE_CHECKING:
    from .patches import Patch
    from .steps import _Context, _State


class RuledOut(NamedTuple):
    """A step no good order takes: patch ``step`` right after the patches ``after`` (numbers of
    the given order, 1-based, in the order applied)."""

    after: tuple[int, ...]
    step: int
    flags: tuple[str, ...]  # the step's flags (does-not-apply, does-not-build, new-link-errors, wrong-way)
    reason: tuple[str, ...]  # its first details: git apply's or the compiler's error, the new finding, the metric
    same_as: tuple[int, ...] | None = None  # set: no good order from here — the same tree as after these patches


class Need(NamedTuple):
    """Patch ``step`` does not apply to the base; it does after each of ``after`` alone."""

    step: int
    after: tuple[int, ...]


class Reorder(NamedTuple):
    """What ``--reorder`` found. ``order``: the given order's step numbers in an order in which every
    step is good (the given order itself when it is good), None when there is none; ``steps``: that
    order's steps (step 0 the base), numbered in the new order."""

    order: tuple[int, ...] | None
    steps: list[Step] | None
    given_good: bool
    needs: list[Need]  # patches that depend on others to apply
    ruled_out: list[RuledOut]  # the steps ruled out (the proof, when no order exists)
    builds: int  # trees built, the given order's included
    given_builds: int  # of them, for the given order
    orders: int  # whole orders checked by building (the given one included)


class _Search:
    def __init__(self, ctx: _Context, top: str, patches: list[Patch], scratch: str) -> None:
        self.ctx, self.top, self.patches, self.scratch = ctx, top, patches, scratch
        self.index = os.path.join(scratch, "reorder.index")
        self.applied: dict[tuple[str, int], tuple[Applied, str | None]] = {}
        self.observed: dict[str, _Observation] = {}
        self.censuses: dict[str, OpsCounts | None] = {}
        self.builds = 0
        self.current = ""  # the tree the work tree and the repository's index hold
        self.prefix = os.path.relpath(ctx.tree, top)

    # --- trees -----------------------------------------------------------------------------
    def base(self) -> str:
        _git(self.top, "add", "-A", "-f", ".")
        self.current = _git(self.top, "write-tree").stdout.strip()
        return self.current

    def apply(self, tree: str, i: int) -> tuple[Applied, str | None]:
        """Patch ``i`` applied to ``tree`` in an index of its own: (git apply's answer, the new tree)."""
        key = (tree, i)
        if key not in self.applied:
            _git(self.top, "read-tree", tree, index=self.index)
            a = _apply(self.top, self.patches[i], index=self.index)
            new = _git(self.top, "write-tree", index=self.index).stdout.strip() if a.ok else None
            self.applied[key] = (a, new)
        return self.applied[key]

    def census(self, tree: str) -> OpsCounts | None:
        """The ops census of ``tree``'s source, from its files extracted aside (nothing built)."""
        if self.ctx.struct is None:
            return None
        if tree not in self.censuses:
            if tree in self.observed:
                self.censuses[tree] = self.observed[tree].ops
            else:
                out = tempfile.mkdtemp(prefix="census-", dir=self.scratch)
                try:
                    paths = [os.path.normpath(os.path.join(self.prefix, p)) for p in self.ctx.census_paths]
                    arch = subprocess.run(["git", "archive", "--format=tar", tree, "--", *paths], cwd=self.top,
                                          capture_output=True, check=False)
                    subprocess.run(["tar", "-x", "-C", out], input=arch.stdout, capture_output=True, check=False)
                    self.censuses[tree] = _census(self.ctx._replace(tree=os.path.join(out, self.prefix)))
                finally:
                    shutil.rmtree(out, ignore_errors=True)
        return self.censuses[tree]

    def observe(self, tree: str) -> _Observation:
        """Build ``tree`` (once: in the one build tree, only the files that differ rewritten)."""
        if tree not in self.observed:
            if tree != self.current:
                _git(self.top, "read-tree", "-m", "-u", self.current, tree)
                self.current = tree
            self.observed[tree] = _observe(self.ctx)
            self.builds += 1
        return self.observed[tree]

    # --- steps -----------------------------------------------------------------------------
    def cheap(self, tree: str, i: int, number: int) -> tuple[str | None, Step | None]:
        """What can be said without building: (the new tree, None) or (None, the step's flags)."""
        applied, new = self.apply(tree, i)
        if new is None:
            return None, self._bare(number, i, applied)
        if self.ctx.struct is not None and any(m != "size" for m in self.ctx.expect):
            before, after = self.census(tree), self.census(new)
            if before is not None and after is not None:
                from .steps import _wrong_way

                wrong = _wrong_way({m: w for m, w in self.ctx.expect.items() if m != "size"}, after.minus(before), None)
                if wrong:
                    return None, self._bare(number, i, applied)._replace(ops=after, ops_delta=after.minus(before),
                                                                          wrong_way=wrong)
        return new, None

    def _bare(self, number: int, i: int, applied: Applied) -> Step:
        from .steps import Built

        return Step(number, self.patches[i].name, None, applied, Built(None, [], [], [], 0.0), None,
                    [], [], [], [], [], [], [])

    def full(self, tree: str, new: str, i: int, number: int, applied: Applied) -> Step:
        prev: _State | None = _state(self.observe(tree))
        return _compare(self.ctx, number, self.patches[i].name, None, applied, self.observe(new), prev)[0]


def _reason(s: Step, expect: dict[str, int]) -> tuple[str, ...]:
    out = [f"git apply: {e}" for e in s.applied.errors[:2]]
    out += [f"build: {e}" for e in s.built.errors[:2]]
    errors = [f for f in s.new_findings if f.severity == "error"]
    if errors:
        out.append(f"{len(errors)} new error finding{'s' if len(errors) != 1 else ''}: "
                   f"{errors[0].check}: {errors[0].message}")
    out += [f"wrong way: {m} {c:+d} (expected {'down' if expect.get(m, 0) < 0 else 'up'})" for m, c in s.wrong_way]
    return tuple(out)


def given_order(ctx: _Context, search: _Search | _Reordered, tick: Callable[[int], None]) -> list[Step]:
    """The given order's steps, as :func:`kmodsim.series.run_series` reports them (a step that does
    not apply leaves the tree as it was; a step is compared with the last step that built)."""
    tree = search.base()
    step, state = _compare(ctx, 0, "(base)", None, Applied(None, [], []), search.observe(tree), None)
    steps = [step]
    tick(1)
    for i, patch in enumerate(search.patches):
        applied, new = search.apply(tree, i)
        obs = None
        if new is not None:
            tree = new
            obs = search.observe(tree)
        step, state = _compare(ctx, i + 1, patch.name, None, applied, obs, state)
        steps.append(step)
        tick(1)
    return steps


def search_order(ctx: _Context, top: str, patches: list[Patch], scratch: str,
                 tick: Callable[[int], None]) -> tuple[list[Step], Reorder]:
    """The given order's steps and the search (see the module's docstring). ``top``: the scratch
    repository's top directory (the patches' paths are relative to it)."""
    s = _Search(ctx, top, patches, scratch)
    steps = given_order(ctx, s, tick)
    given_builds = s.builds
    n = len(patches)
    base_tree = _base_tree(s)
    needs = _needs(s, base_tree, n)
    if not any(st.flags for st in steps):
        return steps, Reorder(tuple(range(1, n + 1)), steps, True, needs, [], s.builds, given_builds, 1)
    if steps[0].flags or steps[0].findings is None:
        ruled = [RuledOut((), 0, ("does-not-build",), tuple(f"build: {e}" for e in steps[0].built.errors[:2]))]
        return steps, Reorder(None, None, False, needs, ruled, s.builds, given_builds, 1)

    dead_edges: dict[tuple[str, int], RuledOut] = {}
    good_edges: set[tuple[str, int]] = set()
    dead_nodes: dict[tuple[str, frozenset[int]], tuple[int, ...]] = {}
    seen: dict[tuple[str, frozenset[int]], tuple[int, ...]] = {}
    memo_notes: dict[tuple[str, frozenset[int]], RuledOut] = {}
    orders = 1
    tree = base_tree
    for i, step in enumerate(steps[1:]):  # the given order, up to its first bad step: known already
        new = s.apply(tree, i)[1]
        if step.flags or new is None:
            dead_edges[(tree, i)] = RuledOut(tuple(range(1, i + 1)), i + 1, tuple(step.flags), _reason(step, ctx.expect))
            break
        good_edges.add((tree, i))
        tree = new

    def dfs(tree: str, left: frozenset[int], path: tuple[int, ...]) -> list[tuple[str, int, str]] | None:
        """A whole order from ``tree`` through edges not ruled out: [(tree, patch, new tree)]."""
        if not left:
            return []
        key = (tree, left)
        if key in dead_nodes:
            if path and dead_nodes[key] != path and key not in memo_notes:
                memo_notes[key] = RuledOut(tuple(p + 1 for p in path[:-1]), path[-1] + 1 if path else 0,
                                           (), (), tuple(p + 1 for p in dead_nodes[key]))
            return None
        seen.setdefault(key, path)
        for i in sorted(left):
            if (tree, i) in dead_edges:
                continue
            new, bad = s.cheap(tree, i, len(path) + 1)
            if new is None:
                assert bad is not None
                dead_edges[(tree, i)] = RuledOut(tuple(p + 1 for p in path), i + 1, tuple(bad.flags),
                                                 _reason(bad, ctx.expect))
                continue
            rest = dfs(new, left - {i}, path + (i,))
            if rest is not None:
                return [(tree, i, new), *rest]
        dead_nodes[key] = seen[key]
        return None

    found: list[int] | None = None
    while True:
        cand = dfs(base_tree, frozenset(range(n)), ())
        if cand is None:
            break
        orders += 1
        path: tuple[int, ...] = ()
        ok = True
        for tree, i, new in cand:
            if (tree, i) not in good_edges:
                applied = s.apply(tree, i)[0]
                step = s.full(tree, new, i, len(path) + 1, applied)
                if step.flags:
                    dead_edges[(tree, i)] = RuledOut(tuple(p + 1 for p in path), i + 1, tuple(step.flags),
                                                     _reason(step, ctx.expect))
                    ok = False
                    break
                good_edges.add((tree, i))
            path += (i,)
        if ok:
            found = [i for _t, i, _n in cand]
            break
    ruled = sorted(dead_edges.values(), key=lambda r: (len(r.after), r.after, r.step))
    ruled += sorted(memo_notes.values(), key=lambda r: (len(r.after), r.after, r.step))
    if found is None:
        return steps, Reorder(None, None, False, needs, ruled, s.builds, given_builds, orders)
    # the order found, reported as the given order is (every tree in it is built already)
    new_steps = given_order(ctx, _Reordered(s, found), lambda _n: None)
    return steps, Reorder(tuple(i + 1 for i in found), new_steps, False, needs, ruled, s.builds, given_builds, orders)


def _base_tree(s: _Search) -> str:
    """The base's tree id (given_order's first observation)."""
    return next(iter(s.observed))


def _needs(s: _Search, base: str, n: int) -> list[Need]:
    out = []
    for i in range(n):
        if s.apply(base, i)[1] is not None:
            continue
        helpers = []
        for j in range(n):
            if j != i:
                t = s.apply(base, j)[1]
                if t is not None and s.apply(t, i)[1] is not None:
                    helpers.append(j + 1)
        out.append(Need(i + 1, tuple(helpers)))
    return out


class _Reordered:
    """A view of the search with its patches in the order found (for :func:`given_order`)."""

    def __init__(self, s: _Search, order: list[int]) -> None:
        self._s, self._order = s, order
        self.patches = [s.patches[i] for i in order]

    def base(self) -> str:
        return _base_tree(self._s)

    def apply(self, tree: str, i: int) -> tuple[Applied, str | None]:
        return self._s.apply(tree, self._order[i])

    def observe(self, tree: str) -> _Observation:
        return self._s.observe(tree)
