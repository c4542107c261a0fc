"""``kmodsim why A B`` and ``kmodsim deps MODULE``: depmod's dependency graph, with the symbols
behind each edge."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, config_option, dump_json, error, max_size_option


def _tree_option(f):
    f = args.option("--tree", "-t", "tree", metavar="DIR", default=None,
                     help="lib/modules/<kver>, or a root holding one lib/modules/<kver> "
                          "(default: /lib/modules/$(uname -r)).")(f)
    f = args.option("--symvers", "-E", metavar="Module.symvers", default=None,
                     help="The kernel's symbols (only changes who owns a name a module re-exports).")(f)
    f = args.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")(f)
    f = args.option("--no-cache", is_flag=True, help="Neither read nor write kmodsim's cache.")(f)
    f = config_option(f)
    return max_size_option(f)


def _load(tree: str | None, symvers: str | None, jobs: int | None, no_cache: bool, max_size: int,
          config: tuple[str, ...] = ()):
    import os

    from ..dependencies import DepmodError, compute, load_records, plan
    from ..tree import module_root

    path = tree or f"/lib/modules/{os.uname().release}"
    try:
        dirname = os.path.abspath(module_root(path))
    except ValueError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    try:
        pl = plan(kver=os.path.basename(dirname), dirname=dirname, symvers=symvers, stat=not no_cache,
                  config_paths=list(config) or None)
        dm = compute(pl, load_records(pl, jobs, not no_cache, None, max_size))
    except DepmodError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    for p, problem in dm.errors:
        error(f"{p}: {problem}")
    return dm


def _find(dm, name: str) -> int:
    i = dm.index_of(name)
    if i is None:
        error(f"{name}: no such module in {dm.dirname}")
        raise SystemExit(EXIT_ERROR)
    return i


@args.command("why")
@args.argument("module")
@args.argument("needed")
@_tree_option
@args.option("--json", "as_json", is_flag=True, help="As JSON.")
def why_cmd(module: str, needed: str, tree: str | None, symvers: str | None, jobs: int | None,
            no_cache: bool, config: tuple[str, ...], max_size: int, as_json: bool) -> None:
    """Which symbols make MODULE need NEEDED, directly or through a chain of modules.

    MODULE and NEEDED are module names ('-' and '_' alike) or paths. Every chain of dependencies
    from MODULE to NEEDED is shown (shortest first, at most 50), each edge with the imports that
    the next module owns (depmod's owner: the last exporter in modules.dep order). Exit status:
    0 MODULE needs NEEDED, 1 it does not, 2 usage or input error."""
    from ..dependencies import why

    dm = _load(tree, symvers, jobs, no_cache, max_size, config)
    a, b = _find(dm, module), _find(dm, needed)
    w = why(dm, a, b)
    if as_json:
        dump_json(w)
        raise SystemExit(EXIT_OK if w["chains"] else EXIT_FINDINGS)
    if not w["chains"]:
        args.echo(f"{w['module']} does not need {w['needs']}")
        raise SystemExit(EXIT_FINDINGS)
    edges = {(e["from"], e["to"]): e for e in w["edges"]}
    n = len(w["chains"])
    how = "directly" if w["direct"] and n == 1 else f"through {n} chain{'s' if n > 1 else ''}"
    args.echo(f"{w['module']} needs {w['needs']} {how}:")
    for c in w["chains"]:
        args.echo("  " + " -> ".join(c))
        for x, y in zip(c, c[1:], strict=False):
            e = edges[(x, y)]
            syms = e["symbols"] + [f"{s} (weak)" for s in e["weak"]]
            args.echo(f"      {x} -> {y}: {', '.join(syms)}")
    raise SystemExit(EXIT_OK)


@args.command("deps")
@args.argument("module")
@_tree_option
@args.option("--symbols", "-s", "show_symbols", is_flag=True, help="List the symbols of each edge.")
@args.option("--json", "as_json", is_flag=True, help="As JSON.")
def deps_cmd(module: str, tree: str | None, symvers: str | None, jobs: int | None, no_cache: bool,
             config: tuple[str, ...], max_size: int, show_symbols: bool, as_json: bool) -> None:
    """The dependency tree of MODULE as depmod computes it: each module it needs, with the number
    (or, with --symbols, the names) of the symbols that make it needed. A module met a second
    time is marked [see above]; one that closes a cycle, [cycle]. The last line is MODULE's
    modules.dep line."""
    from ..dependencies import dep_tree, render_tree

    dm = _load(tree, symvers, jobs, no_cache, max_size, config)
    i = _find(dm, module)
    t = dep_tree(dm, i)
    closure = [dm.mods[d].shown_path for d in dm.closure(i)]
    if as_json:
        t["modules_dep"] = closure
        dump_json(t)
        raise SystemExit(EXIT_OK)
    render_tree(t, args.echo, show_symbols)
    args.echo(f"{dm.mods[i].shown_path}:" + "".join(" " + p for p in closure))
    raise SystemExit(EXIT_OK)
