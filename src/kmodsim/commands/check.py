"""``kmodsim check``: modpost-class link checks across a set of modules, with an allowlist."""

from __future__ import annotations

import click

from .common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, dump_json, error, max_size_option


@click.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--kernel", "-k", "kernel_path", metavar="KDIR|Module.symvers|vmlinux",
              help="Target kernel (vmlinux exports, vermagic). Without it, unresolved and vermagic are not checked.")
@click.option("--modules", "-m", "modules_dir", type=click.Path(file_okay=False),
              help="A module tree whose exports may satisfy imports (not itself checked).")
@click.option("--allow", "allow_files", multiple=True, type=click.Path(dir_okay=False),
              help="Allowlist (TOML: [[exclusive]] and [[allow]] entries). Repeatable.")
@click.option("--symbol-list", "symbol_lists", multiple=True, type=click.Path(dir_okay=False),
              help="Allowed vmlinux imports (Android [abi_symbol_list] or one name a line). Repeatable.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@click.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the scan cache.")
@max_size_option
def check_cmd(paths, kernel_path, modules_dir, allow_files, symbol_lists, fmt, jobs, no_cache, max_size) -> None:
    """Check PATH (.ko files or module trees) the way modpost, depmod and the loader would.

    Exit status: 0 no error findings, 1 error findings, 2 usage or input error.
    """
    from .. import __version__
    from ..check import CheckError, load_allowlist, load_symbol_list, render_text, run_checks, to_sarif
    from ..tree import scan
    from .common import load_kernel

    kernel = load_kernel(kernel_path) if kernel_path else None
    try:
        allow = [e for f in allow_files for e in load_allowlist(f)]
        lists = [(f, load_symbol_list(f)) for f in symbol_lists]
    except CheckError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    input_error = False
    res = scan(paths, jobs=jobs, max_size=max_size, use_cache=not no_cache)
    for e in res.errors:
        error(str(e))
        input_error = True
    modules = res.modules
    if kernel is not None and kernel.machine is not None:
        from ..elf import MACHINE_NAMES

        keep = []
        for m in modules:
            if m.machine != kernel.machine:
                error(f"{m.path}: ELF machine {m.machine_name} does not match the kernel's "
                      f"({MACHINE_NAMES.get(kernel.machine, kernel.machine)})")
                input_error = True
            else:
                keep.append(m)
        modules = keep
    providers = []
    if modules_dir:
        tree = scan([modules_dir], jobs=jobs, max_size=max_size, use_cache=not no_cache)
        for e in tree.errors:
            error(str(e))
            input_error = True
        providers = tree.modules
    findings = run_checks(modules, kernel, providers, allow, lists)
    if fmt == "json":
        dump_json({"findings": [f.to_json() for f in findings],
                   "summary": {"modules": len(modules), "errors": sum(f.severity == "error" for f in findings),
                               "warnings": sum(f.severity == "warning" for f in findings)}})
    elif fmt == "sarif":
        dump_json(to_sarif(findings, __version__))
    elif findings:
        click.echo(render_text(findings))
    if input_error:
        raise SystemExit(EXIT_ERROR)
    raise SystemExit(EXIT_FINDINGS if any(f.severity == "error" for f in findings) else EXIT_OK)
