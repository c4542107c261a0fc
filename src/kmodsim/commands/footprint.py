"""``kmodsim footprint --kernel KDIR FILE...``: the RAM each module takes, as /proc/modules shows it."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, EXIT_OK, dump_json, error, kernel_option, load_kernel


def profile_for(release: str):
    """The layout profile of a kernel release (None: not modelled yet)."""
    from ..footprint import PROFILES
    from ..kernel import release_version

    v = release_version(release)
    if v is None or v[:2] < (6, 1):
        return None
    if v[:2] < (6, 4):  # 6.4 replaced the core/init layouts by mod_mem[] (ac3b43283923)
        return PROFILES["6.1"]
    return PROFILES["6.4"]


@args.command("footprint")
@args.argument("files", nargs=-1, required=True, type=args.Path(dir_okay=False))
@kernel_option()
@args.option("--json", "as_json", is_flag=True)
@args.option("--merge", "merges", multiple=True, metavar="A.ko,B.ko[,...]",
              help="What if these modules were linked into one (repeatable; a module may be in several).")
def footprint_cmd(files: tuple[str, ...], kernel_path: str, as_json: bool, merges: tuple[str, ...]) -> None:
    """Predict the size /proc/modules shows for each FILE once loaded, with a breakdown by memory
    type and the pages it takes; with --merge, what merging modules would change."""
    import os

    from ..elf import ElfError
    from ..footprint import layout, read_input, what_if
    from ..module import ModuleError

    files = tuple(files) + tuple(p for g in merges for p in g.split(",") if p not in files)
    kernel = load_kernel(kernel_path)
    prof = profile_for(kernel.release)
    if prof is None:
        error(f"{kernel_path}: no footprint model for kernel {kernel.release or '(unknown release)'} yet "
              f"(modelled: 6.1 and later)")
        raise SystemExit(EXIT_ERROR)
    status = EXIT_OK
    mods, out, inputs = [], [], []
    for f in files:
        try:
            m, inp = read_input(f)  # each file read once: the module and its layout input
            out.append(layout(inp, prof, f, m.name))
            mods.append(m)
            inputs.append(inp)
        except (ModuleError, ElfError) as exc:
            error(str(exc) if isinstance(exc, ModuleError) else f"{f}: {exc}")
            status = EXIT_ERROR
    if merges:
        if status != EXIT_OK:
            raise SystemExit(status)
        where = {os.path.realpath(m.path): i for i, m in enumerate(mods)}
        groups = [[where[os.path.realpath(p)] for p in g.split(",")] for g in merges]
        _render_what_if(what_if(mods, groups, prof, inputs), as_json)
        raise SystemExit(status)
    total_size = sum(x.size for x in out)
    total_pages = sum(x.pages for x in out)
    if as_json:
        dump_json({"profile": prof.name, "modules": [x.to_json() for x in out],
                   "total": {"size": total_size, "pages": total_pages}})
    else:
        args.echo(_table(out))
        args.echo(f"{'total':<24}{total_size:>10}{total_pages:>7}")
    raise SystemExit(status)


def _table(rows) -> str:
    kinds = [k for k in ("text", "rodata", "ro_after_init", "data", "other", "kallsyms")
             if any(k in x.by_type for x in rows)]
    lines = [f"{'module':<24}{'size':>10}{'pages':>7}  " + "".join(f"{k:>14}" for k in kinds)]
    for x in rows:
        lines.append(f"{x.name:<24}{x.size:>10}{x.pages:>7}  " + "".join(f"{x.by_type.get(k, 0):>14}" for k in kinds))
    return "\n".join(lines)


def _render_what_if(r: dict, as_json: bool) -> None:
    pages = lambda n: (n + 4095) // 4096  # noqa: E731
    if as_json:
        dump_json({"profile": r["profile"], "modules": [m.to_json() for m in r["modules"]],
                   "merges": [g.to_json() for g in r["merges"]],
                   "duplicates": [{"symbol": s, "exporters": w} for s, w in r["duplicates"].items()],
                   "configuration": {"before": {"size": r["before"], "pages": pages(r["before"])},
                                     "after": {"size": r["after"], "pages": pages(r["after"])},
                                     "delta": {"bytes": r["after"] - r["before"],
                                               "pages": pages(r["after"]) - pages(r["before"])}}})
        return
    args.echo(_table(r["modules"]))
    for g in r["merges"]:
        args.echo("")
        args.echo(f"merged {g.footprint.name}: {g.footprint.size} bytes ({g.footprint.pages} pages) "
                   f"instead of {g.separate} ({pages(g.separate)} pages): {g.delta:+d} bytes, "
                   f"{g.footprint.pages - pages(g.separate):+d} pages")
        args.echo(f"  exports that become internal ({len(g.internal_exports)}): "
                   + (", ".join(g.internal_exports[:12]) + (" ..." if len(g.internal_exports) > 12 else "")))
    if r["duplicates"]:
        args.echo("")
        args.echo(f"exported twice after merging: {len(r['duplicates'])} symbols")
        for s, who in list(r["duplicates"].items())[:10]:
            args.echo(f"  {s}: {', '.join(who)}")
    args.echo("")
    args.echo(f"configuration: {r['before']} -> {r['after']} bytes ({r['after'] - r['before']:+d}), "
               f"{pages(r['before'])} -> {pages(r['after'])} pages")
