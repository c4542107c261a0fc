"""\"Why does A need B\" and the dependency tree of one module, with the symbols behind each edge."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from .graph import Depmod


# One edge of a chain: the symbols module "from" imports that module "to" owns, weak ones apart
# (the functional form: "from" is a keyword)
Edge = TypedDict("Edge", {"from": str, "to": str, "symbols": list[str], "weak": list[str]})


class Why(TypedDict):
    """:func:`why`'s answer (``kmodsim why --json``)."""

    module: str
    needs: str
    path: str
    needs_path: str
    direct: bool
    chains: list[list[str]]
    edges: list[Edge]


class TreeNode(TypedDict, total=False):
    """A module in :func:`dep_tree` (``kmodsim deps --json``)."""

    name: str
    path: str
    symbols: list[str]  # with symbols: what the parent imports from it
    weak: list[str]
    cycle: bool  # met again on its own path: not expanded
    seen: bool  # expanded earlier in the tree: not expanded again
    deps: list[TreeNode]
    modules_dep: list[str]  # the root's modules.dep line (added by ``kmodsim deps --json``)



# ---------------------------------------------------------------------------------------------
# why / deps
# ---------------------------------------------------------------------------------------------


def chains(dm: Depmod, a: int, b: int, limit: int = 50) -> list[list[int]]:
    """Every simple path from ``a`` to ``b`` along dependencies (at most ``limit``), shortest first."""
    # only modules that can reach b are worth visiting
    rev: dict[int, list[int]] = {}
    for i, ds in enumerate(dm.deps):
        for d in ds:
            rev.setdefault(d, []).append(i)
    reach = {b}
    todo = [b]
    while todo:
        for u in rev.get(todo.pop(), ()):
            if u not in reach:
                reach.add(u)
                todo.append(u)
    out: list[list[int]] = []
    if a not in reach or a == b:
        return out
    path = [a]
    onpath = {a}
    stack = [iter([d for d in dm.deps[a] if d in reach])]
    while stack and len(out) < limit:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            onpath.discard(path.pop())
            continue
        d = nxt
        if d == b:
            out.append(path + [b])
        elif d not in onpath:
            path.append(d)
            onpath.add(d)
            stack.append(iter([x for x in dm.deps[d] if x in reach]))
    out.sort(key=lambda c: (len(c), c))
    return out


def why(dm: Depmod, a: int, b: int) -> Why:
    """Which symbols make ``a`` need ``b``: the chains and the symbols of each edge on them."""
    cs = chains(dm, a, b)
    edges: dict[tuple[int, int], list[tuple[str, bool]]] = {}
    for c in cs:
        for x, y in zip(c, c[1:], strict=False):
            if (x, y) not in edges:
                edges[(x, y)] = dm.edge_symbols(x, y)

    def name(i: int) -> str:
        return dm.mods[i].name

    return {
        "module": name(a), "needs": name(b), "path": dm.mods[a].path, "needs_path": dm.mods[b].path,
        "direct": b in dm.deps[a],
        "chains": [[name(i) for i in c] for c in cs],
        "edges": [{"from": name(x), "to": name(y),
                   "symbols": [s for s, w in syms if not w], "weak": [s for s, w in syms if w]}
                  for (x, y), syms in edges.items()],
    }


def dep_tree(dm: Depmod, root: int, with_symbols: bool = True) -> TreeNode:
    """The dependency tree of ``root`` (each module expanded once; later mentions are marked
    ``"seen": true``, a module met again on its own path ``"cycle": true``)."""
    expanded: set[int] = set()

    def node(i: int, via: int | None, path: frozenset[int]) -> TreeNode:
        m = dm.mods[i]
        d: TreeNode = {"name": m.name, "path": m.shown_path}
        if via is not None and with_symbols:
            syms = dm.edge_symbols(via, i)
            d["symbols"] = [s for s, w in syms if not w]
            d["weak"] = [s for s, w in syms if w]
        if i in path:
            d["cycle"] = True
            return d
        if i in expanded:
            d["seen"] = True
            return d
        expanded.add(i)
        d["deps"] = [node(x, i, path | {i}) for x in dm.deps[i]]
        return d

    return node(root, None, frozenset())


def render_tree(t: TreeNode, out: Callable[[str], None], symbols: bool) -> None:
    def label(d: TreeNode) -> str:
        s = f"{d['name']}  {d['path']}"
        if "symbols" in d:
            n = len(d["symbols"]) + len(d["weak"])
            s += f"  ({n} symbol{'s' if n != 1 else ''}{', weak' if d['weak'] and not d['symbols'] else ''})"
        if d.get("cycle"):
            s += "  [cycle]"
        elif d.get("seen"):
            s += "  [see above]"
        return s

    def walk(d: TreeNode, prefix: str) -> None:
        kids = d.get("deps") or []
        for k, c in enumerate(kids):
            last = k == len(kids) - 1
            out(prefix + ("└── " if last else "├── ") + label(c))
            if symbols and "symbols" in c:
                pad = prefix + ("    " if last else "│   ")
                for s in c["symbols"]:
                    out(pad + "· " + s)
                for s in c["weak"]:
                    out(pad + "· " + s + " (weak)")
            walk(c, prefix + ("    " if last else "│   "))

    out(label(t))
    walk(t, "")
