"""``kmodsim check``: modpost-class link checks across a set of modules, with an allowlist."""

from __future__ import annotations

from .. import args
from .common import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    config_option,
    dump_json,
    input_resolver,
    max_size_option,
    report_inputs,
    scheduler_option,
    warn,
)


@args.command("check")
@args.argument("paths", nargs=-1, required=True, type=args.path)
@args.option("--kernel", "-k", "kernel_path", metavar="KDIR|Module.symvers|vmlinux",
              help="Target kernel (vmlinux exports, vermagic). Without it, unresolved and vermagic are not checked.")
@args.option("--modules", "-m", "modules_dir", type=args.path,
              help="A module tree whose exports may satisfy imports (not itself checked).")
@args.option("--allow", "allow_files", multiple=True, type=args.path,
              help="Allowlist (TOML: [[exclusive]] and [[allow]] entries). Repeatable.")
@args.option("--symbol-list", "symbol_lists", multiple=True, type=args.path,
              help="Allowed vmlinux imports (Android [abi_symbol_list] or one name a line). Repeatable.")
@args.option("--format", "fmt", type=args.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@args.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")
@args.option("--no-cache", is_flag=True, help="Neither read nor write the scan cache.")
@scheduler_option("each PATH and the --modules tree")
@config_option
@max_size_option
def check_cmd(paths, kernel_path, modules_dir, allow_files, symbol_lists, fmt, jobs, no_cache, scheduler, config,
              max_size) -> None:
    """Check PATH (.ko files or module trees) the way modpost, depmod and the loader would. A
    tree's modules are the ones depmod takes (depmod.d, updates/ first, no .ko.gz).

    With --scheduler each PATH (and the --modules tree) is read as one task on the cluster; the
    checks run here. PATH and --modules may name a Debian kernel package,
    debian:linux-image-KVER[=VERSION] (fetched into the cache; with --scheduler, by the worker).

    Exit status: 0 no error findings, 1 error findings, 2 usage or input error.
    """
    from ..checks import CheckRequest, check_paths
    from ..render.check import check_json, check_sarif, check_text

    res = check_paths(CheckRequest(paths, kernel_path=kernel_path, modules_dir=modules_dir,
                                   allow_files=allow_files, symbol_lists=symbol_lists, jobs=jobs,
                                   use_cache=not no_cache, config_paths=config or None, max_size=max_size,
                                   scheduler=scheduler,
                                   resolve=input_resolver([*paths, *([modules_dir] if modules_dir else [])])))
    report_inputs(res.ignored, res.problems)
    for note in res.notes:
        warn(note)
    if fmt == "sarif":  # even for a run that could not check anything: it says it failed and why
        dump_json(check_sarif(res))
    elif res.aborted:
        pass
    elif fmt == "json":
        dump_json(check_json(res))
    elif res.findings:
        args.echo(check_text(res))
    raise SystemExit(EXIT_ERROR if res.problems else EXIT_FINDINGS if res.errors else EXIT_OK)
