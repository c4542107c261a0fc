"""``kmodsim ldd FILE --kernel KDIR [--modules DIR]``: who provides each import of a module."""

from __future__ import annotations

from .. import args
from .common import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    config_option,
    dump_json,
    error,
    kernel_option,
    max_size_option,
    report_inputs,
)


@args.command("ldd")
@args.argument("file", type=args.path)
@kernel_option()
@args.option("--modules", "-m", "modules_dir", type=args.path,
              help="Module tree to take module providers from, the modules depmod takes "
                   "(default: the kernel's Module.symvers rows).")
@args.option("--json", "as_json", is_flag=True)
@args.option("--jobs", "-j", type=int, default=None, help="Worker processes for --modules (default: all cores).")
@config_option
@max_size_option
def ldd_cmd(file: str, kernel_path: str, modules_dir: str | None, as_json: bool, jobs: int | None,
            config: tuple[str, ...], max_size: int) -> None:
    """Resolve FILE's imports: provider (vmlinux, a module, or none), GPL-only, namespace, CRC.

    Exit status: 0 all imports resolve cleanly, 1 some do not (unresolved, CRC mismatch, GPL-only
    or namespace problem, vermagic mismatch), 2 usage or input error.
    """
    from ..errors import Error
    from ..link import LddRequest, ldd
    from ..render.ldd import ldd_json, ldd_text

    try:
        res = ldd(LddRequest(file, kernel_path, modules_dir=modules_dir, jobs=jobs,
                             config_paths=list(config) or None, max_size=max_size))
    except Error as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    report_inputs(res.ignored, res.problems)
    if as_json:
        dump_json(ldd_json(res))
    else:
        args.echo(ldd_text(res))
    raise SystemExit(EXIT_ERROR if res.problems else EXIT_OK if res.clean else EXIT_FINDINGS)
