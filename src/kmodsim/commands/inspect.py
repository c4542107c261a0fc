"""``kmodsim inspect FILE...``: modinfo-like text plus export and import tables, or ``--json``."""

from __future__ import annotations

from .. import args
from ..module import ModuleError, read_module
from ..render.modules import module_json, module_text
from .common import EXIT_ERROR, EXIT_OK, dump_json, error, max_size_option


@args.command("inspect")
@args.argument("files", nargs=-1, required=True, type=args.path)
@args.option("--json", "as_json", is_flag=True, help="One JSON object (an array for several files).")
@max_size_option
def inspect_cmd(files: tuple[str, ...], as_json: bool, max_size: int) -> None:
    """Show what FILE (.ko, .ko.xz, .ko.zst, .ko.gz) exports, imports and declares."""
    status = EXIT_OK
    objs = []
    for f in files:
        try:
            m = read_module(f, max_size)
        except ModuleError as exc:
            error(str(exc))
            status = EXIT_ERROR
            continue
        if as_json:
            objs.append(module_json(m))
        else:
            args.echo(module_text(m))
    if as_json and objs:
        dump_json(objs[0] if len(files) == 1 else objs)
    raise SystemExit(status)
