"""Dependency cycles: depmod's own report (``depmod_report_cycles``, line for line) and kmodsim's
(every elementary cycle, Johnson's algorithm on Tarjan's components, with the symbols behind
each edge)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..messages import DepmodMessage

if TYPE_CHECKING:
    from typing import TypeAlias

    from .graph import Depmod

    Vertex: TypeAlias = tuple[int, "Vertex | None"]  # a module of depmod's walk, and the vertex it came from



def strongly_connected(deps: list[list[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, iteratively."""
    n = len(deps)
    index = [-1] * n
    low = [0] * n
    on = [False] * n
    stack: list[int] = []
    out = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work = [(root, 0)]
        while work:
            v, pi = work.pop()
            if pi == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on[v] = True
            recurse = False
            for k in range(pi, len(deps[v])):
                w = deps[v][k]
                if index[w] < 0:
                    work.append((v, k + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if on[w]:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on[w] = False
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return out


def elementary_cycles(deps: list[list[int]], comp: list[int], limit: int) -> list[list[int]]:
    """Johnson's algorithm restricted to one component (cycles through its smallest members)."""
    out: list[list[int]] = []
    members = set(comp)
    for start in comp:
        if len(out) >= limit:
            break
        allowed = {v for v in members if v >= start}
        blocked: set[int] = set()
        bmap: dict[int, set[int]] = {}
        path = [start]
        blocked.add(start)
        stack = [(start, iter([w for w in deps[start] if w in allowed]))]
        closed = [False]
        while stack and len(out) < limit:
            v, it = stack[-1]
            w = next(it, None)
            if w is not None:
                if w == start:
                    out.append(list(path))
                    closed[-1] = True
                elif w not in blocked:
                    path.append(w)
                    blocked.add(w)
                    closed.append(False)
                    stack.append((w, iter([x for x in deps[w] if x in allowed])))
                continue
            stack.pop()
            path.pop()
            done = closed.pop()
            if done:
                _unblock(v, blocked, bmap)
            else:
                for x in deps[v]:
                    if x in allowed:
                        bmap.setdefault(x, set()).add(v)
            if closed:
                closed[-1] = closed[-1] or done
    return out


def _unblock(v: int, blocked: set[int], bmap: dict[int, set[int]]) -> None:
    todo = [v]
    while todo:
        u = todo.pop()
        if u in blocked:
            blocked.discard(u)
            todo.extend(bmap.pop(u, ()))



def cycle_report(dm: Depmod, limit: int) -> list[DepmodMessage]:
    """kmodsim's report: every elementary cycle, then each edge with the symbols behind it."""
    cycles = dm.cycles(limit)
    out = []
    for k, c in enumerate(cycles, 1):
        names = [dm.mods[i].name for i in c]
        out.append(DepmodMessage("cycle-explained", (str(k), f"{len(cycles)}{'+' if len(cycles) >= limit else ''}",
                                                     " -> ".join(names + names[:1]))))
        for a, b in zip(c, c[1:] + c[:1], strict=True):
            syms = dm.edge_symbols(a, b)
            shown = ", ".join(s + (" (weak)" if wk else "") for s, wk in syms)
            out.append(DepmodMessage("cycle-edge", (dm.mods[a].name, dm.mods[b].name, shown)))
    return out



def _remove_rotating(roots: list[int], m: int) -> list[int]:
    """depmod_list_remove_data() on depmod's circular list of roots: kmod_list_remove_data()
    (libkmod/libkmod-list.c) returns the node after the removed one, which becomes the list's
    head — the remaining roots, rotated to start after ``m``. Unchanged if ``m`` is not there."""
    try:
        k = roots.index(m)
    except ValueError:
        return roots
    return roots[k + 1:] + roots[:k]


def depmod_cycle_report(dm: Depmod) -> list[DepmodMessage]:
    """depmod_report_cycles(), line for line: the walks it makes from each module left over by
    the sort, and the count of modules named in the cycles it prints."""
    users = dm.users_left
    deps = dm.deps
    roots = [i for i in range(len(dm.mods)) if users[i] > 0]
    limit = len(roots)
    visited = [False] * len(dm.mods)
    in_loops: set[str] = set()
    lines = []
    # depmod may walk forever on some graphs (a walk that enters a cycle without its root goes
    # round it for ever, printing ever longer lines) or abort (its stack is as deep as the
    # roots are many); kmodsim stops after so many steps and printed names, and says so
    budget = 100_000
    while roots:
        root = roots.pop(0)
        stack: list[Vertex] = [(root, None)]
        while stack and budget > 0:
            budget -= 1
            m, parent = stack.pop()
            vertex = (m, parent)
            if visited[m] and m == root:
                chain = []
                v = parent
                while v is not None:
                    chain.append(v[0])
                    in_loops.add(dm.mods[v[0]].name)
                    v = v[1]
                chain.reverse()
                budget -= len(chain)
                for c in chain:
                    roots = _remove_rotating(roots, c)
                lines.append(DepmodMessage("cycle", (" -> ".join([dm.mods[c].name for c in chain]
                                                                 + [dm.mods[m].name]),)))
                continue
            visited[m] = True
            if not deps[m]:
                roots = _remove_rotating(roots, m)
                continue
            if len(stack) + len(deps[m]) > limit:
                budget = 0
                break
            for d in deps[m]:
                stack.append((d, vertex))
    if budget <= 0:
        lines.append(DepmodMessage("cycle-walk-cut"))
    lines.append(DepmodMessage("cycles-found", (str(len(in_loops)),)))
    return lines
