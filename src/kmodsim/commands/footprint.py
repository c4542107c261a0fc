"""``kmodsim footprint --kernel KDIR FILE...``: the RAM each module takes, as /proc/modules shows it."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, EXIT_OK, dump_json, error, kernel_option, load_target, warn


@args.command("footprint")
@args.argument("files", nargs=-1, required=True, type=args.path)
@kernel_option()
@args.option("--json", "as_json", is_flag=True)
@args.option("--merge", "merges", multiple=True, metavar="A.ko,B.ko[,...]",
              help="What if these modules were linked into one (repeatable; a module may be in several).")
def footprint_cmd(files: tuple[str, ...], kernel_path: str, as_json: bool, merges: tuple[str, ...]) -> None:
    """Predict the size /proc/modules shows for each FILE once loaded, with a breakdown by memory
    type and the pages it takes; with --merge, what merging modules would change."""
    import os

    from ..elf import ElfError
    from ..memory_layout import FootprintError, footprint_layout, layout, read_input, what_if
    from ..module import ModuleError
    from ..render.footprint import footprints_json, footprints_text, what_if_json, what_if_text

    files = tuple(files) + tuple(p for g in merges for p in g.split(",") if p not in files)
    target = load_target(kernel_path)
    try:
        prof = footprint_layout(target)
    except FootprintError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    for w in target.warnings:
        warn(w)
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
        r = what_if(mods, groups, prof, inputs)
        if as_json:
            dump_json(what_if_json(r))
        else:
            args.echo(what_if_text(r))
        raise SystemExit(status)
    if as_json:
        dump_json(footprints_json(prof.name, out))
    else:
        args.echo(footprints_text(out))
    raise SystemExit(status)
