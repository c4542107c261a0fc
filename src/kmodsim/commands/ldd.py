"""``kmodsim ldd FILE --kernel KDIR [--modules DIR]``: who provides each import of a module."""

from __future__ import annotations

from .. import args
from ..kernel import same_magic
from ..link import SymbolIndex, resolve
from ..module import ModuleError, read_module
from ..report import render_ldd_text, resolution_json
from .common import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    config_option,
    dump_json,
    error,
    kernel_option,
    load_kernel,
    max_size_option,
    warn_ignored,
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
    kernel = load_kernel(kernel_path)
    try:
        m = read_module(file, max_size)
    except ModuleError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    if kernel.machine is not None and m.machine != kernel.machine:
        from ..elf import MACHINE_NAMES

        error(f"{file}: ELF machine {m.machine_name} does not match the kernel's "
              f"({MACHINE_NAMES.get(kernel.machine, kernel.machine)})")
        raise SystemExit(EXIT_ERROR)
    status = EXIT_OK
    modules = []
    if modules_dir:
        from ..tree import scan

        res = scan([modules_dir], jobs=jobs, max_size=max_size, config_paths=config or None)
        warn_ignored(res.ignored)
        for e in res.errors:
            error(str(e))
            status = EXIT_ERROR
        modules = res.modules
    index = SymbolIndex.build(kernel, modules, symvers_modules=not modules_dir)
    rs = resolve(m, index)
    vermagic_ok = None
    if kernel.vermagic is not None:
        vermagic_ok = same_magic(m.vermagic, kernel.vermagic, bool(m.versions))
    bad = [r for r in rs if not r.ok]
    if as_json:
        dump_json({"module": m.name, "path": m.path, "kernel": kernel.source, "vermagic": m.vermagic,
                   "kernel_vermagic": kernel.vermagic, "vermagic_ok": vermagic_ok,
                   "imports": [resolution_json(r) for r in rs]})
    else:
        if vermagic_ok is False:
            args.echo(f"{m.name}: version magic '{m.vermagic}' should be '{kernel.vermagic}'")
        args.echo(render_ldd_text(rs))
    if status == EXIT_OK and (bad or vermagic_ok is False):
        status = EXIT_FINDINGS
    raise SystemExit(status)
