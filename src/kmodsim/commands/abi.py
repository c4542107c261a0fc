"""``kmodsim abi diff`` / ``kmodsim abi history``: what a kernel update changes in the exports modules
link against (docs/abi.md)."""

from __future__ import annotations

import sys
from collections.abc import Callable

from .. import args
from ..errors import Error
from .common import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    config_option,
    dump_json,
    error,
    max_size_option,
    report_inputs,
    scheduler_option,
    warn,
)


def _common(f):
    """The options both sub-commands take, in this order in their help."""
    f = config_option(max_size_option(f))  # (each decorator puts its option first)
    for dec in reversed((
        args.option("--symbol-list", "symbol_lists", multiple=True, type=args.path, metavar="F",
                    help="Only the names of this list count (Android [abi_symbol_list] or one name a line). "
                         "Repeatable."),
        args.option("--json", "as_json", is_flag=True, help="Print the JSON document (docs/abi.md)."),
        args.option("--jobs", "-j", type=int, default=None, help="Worker processes for trees (default: all cores)."),
        args.option("--no-cache", is_flag=True, help="Neither read nor write the scan cache."),
        args.option("--no-causes", is_flag=True,
                    help="Do not explain CRC changes from the kernels' BTF (faster on images and trees)."),
        scheduler_option("each kernel"),
    )):
        f = dec(f)
    return f


@args.command("diff")
@args.argument("old", required=True, type=args.path)
@args.argument("new", required=True, type=args.path)
@_common
def diff_cmd(old, new, symbol_lists, as_json, jobs, no_cache, no_causes, scheduler, config, max_size) -> None:
    """Compare the exports of OLD and NEW: added, removed, CRC, GPL-only, namespace, owner.

    OLD and NEW: anything --kernel takes (a headers directory or Module.symvers: vmlinux's and the
    modules' exports; a vmlinux or vmlinuz: vmlinux's), or a module tree / root file system (its
    modules as depmod finds them, vmlinux's exports from boot/vmlinuz-KVER or build/Module.symvers).

    Each CRC change is explained from both kernels' BTF (images and trees carry it; headers do
    not): the first type definitions that differ on the way from the export's prototype.

    A kernel may be named by its Debian package, debian:linux-image-KVER or
    debian:linux-headers-KVER: it is fetched and unpacked into the cache (by the worker that
    reads it, with --scheduler).

    Exit status: 0 compatible (no incompatible change in scope), 1 incompatible changes, 2 usage
    or input error.
    """
    from ..abi import AbiDiffRequest, diff_sides
    from ..debian import resolve_input
    from ..render.abi import diff_json, diff_text

    try:
        res = diff_sides(AbiDiffRequest(old, new, symbol_lists, jobs=jobs, use_cache=not no_cache,
                                        config_paths=config or None, max_size=max_size, causes=not no_causes,
                                        scheduler=scheduler, resolve=resolve_input))
    except Error as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    _finish(res.old.ignored + res.new.ignored, res.problems, res.notes, res.compatible,
            lambda: diff_json(res) if as_json else diff_text(res))


@args.command("history")
@args.argument("kernels", nargs=-1, required=True, type=args.path)
@_common
def history_cmd(kernels, symbol_lists, as_json, jobs, no_cache, no_causes, scheduler, config, max_size) -> None:
    """The table of a run of kernels in order (oldest first): per step, the exports of the newer one
    and the count of each kind of change. KERNELS: each what abi diff takes.

    With --scheduler each kernel's work (fetch, decompress, read, BTF) is one task on the
    cluster; the output is the same bytes as without.

    Exit status: 0 every step compatible, 1 some step is not, 2 usage or input error.
    """
    from ..abi import AbiHistoryRequest, history
    from ..debian import resolve_input
    from ..render.abi import history_json, history_text

    if len(kernels) < 2:
        raise args.UsageError("name at least two kernels")
    shown = sys.stderr.isatty()

    def progress(i: int, n: int, path: str) -> None:
        if shown:
            sys.stderr.write(f"\r\x1b[Kkmodsim: {i}/{n}: {path}")
            sys.stderr.flush()

    try:
        res = history(AbiHistoryRequest(kernels, symbol_lists, jobs=jobs, use_cache=not no_cache,
                                        config_paths=config or None, max_size=max_size, causes=not no_causes,
                                        scheduler=scheduler, resolve=resolve_input),
                      progress)
    except Error as exc:
        if shown:
            sys.stderr.write("\r\x1b[K")
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    if shown:
        sys.stderr.write("\r\x1b[K")
    _finish([p for k in res.kernels for p in k.ignored], res.problems, res.notes, res.compatible,
            lambda: history_json(res) if as_json else history_text(res))


def _finish(ignored: list[str], problems: list[tuple[str, str]], notes: list[str], compatible: bool,
            rendered: Callable[[], object]) -> None:
    """What both sub-commands end with: the inputs passed over and the unreadable ones, the notes,
    the rendered result (a JSON document or text), and the exit status (2 an input could not be
    read, 0 compatible, 1 not)."""
    report_inputs(ignored, problems)
    for note in notes:
        warn(note)
    out = rendered()
    if isinstance(out, str):
        args.echo(out)
    else:
        dump_json(out)
    raise SystemExit(EXIT_ERROR if problems else EXIT_OK if compatible else EXIT_FINDINGS)



@args.command("check")
@args.argument("modules", nargs=-1, required=True, type=args.path)
@args.option("--kernel", "-k", "kernels", required=True, multiple=True, type=args.path, metavar="KERNEL",
             help="The new kernel: anything --kernel takes (a headers directory, Module.symvers, vmlinux, vmlinuz), "
                  "or debian:linux-headers-<kver>. Repeatable: the same modules on each kernel.")
@args.option("--vmlinuz", multiple=True, type=args.path, metavar="IMAGE",
             help="The new kernel's image (or debian:linux-image-<kver>): module signatures are checked against "
                  "the keys built into it, module BTF against its BTF. With several --kernel: one per kernel, "
                  "in the same order.")
@args.option("--json", "as_json", is_flag=True, help="Print the JSON document (docs/abi.md).")
@scheduler_option("each kernel")
def check_cmd(modules, kernels, vmlinuz, as_json, scheduler) -> None:
    """Will each module (MODULES: .ko files or directories of them, built for another kernel)
    load into the kernel of --kernel? The loader model's verdict, as modprobe, with modprobe
    --force-vermagic and with modprobe -f. With several --kernel, the same modules on each (a
    table of verdicts per kernel, then each kernel's report); with --scheduler each kernel's
    work (fetch, read, every module tried) is one task on the cluster.

    Exit status: 0 every module loads (on every kernel), 1 some do not (or cannot be read), 2
    usage or input error.
    """
    from ..abi.check import check_kernels
    from ..debian import resolve_input
    from ..render.abi_check import check_json, check_text, kernels_json, kernels_text

    if vmlinuz and len(vmlinuz) != len(kernels):  # (before any work: a usage error, as the library's ValueError)
        raise args.UsageError(f"{len(vmlinuz)} --vmlinuz for {len(kernels)} --kernel: give none, or one per kernel")
    try:
        results = check_kernels(list(kernels), list(modules), list(vmlinuz), scheduler, resolve_input)
    except Error as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    checks = [r for r in results if not isinstance(r, Exception)]
    for r in results:
        if isinstance(r, Exception):
            error(str(r))
    for path, problem in checks[0].problems if checks else []:
        error(f"{path}: {problem}")
    if len(kernels) == 1:
        if not checks:
            raise SystemExit(EXIT_ERROR)
        if as_json:
            dump_json(check_json(checks[0]))
        else:
            args.echo(check_text(checks[0]), nl=False)
    elif as_json:
        dump_json(kernels_json(results, list(kernels)))
    else:
        args.echo(kernels_text(results, list(kernels)), nl=False)
    if len(checks) < len(results):
        raise SystemExit(EXIT_ERROR)
    raise SystemExit(EXIT_OK if all(r.all_load for r in checks) else EXIT_FINDINGS)


abi_cmd = args.Group("abi", "What a kernel update changes in the exports modules link against (docs/abi.md).", {
    "diff": (diff_cmd, "Compare the exports of two kernels or module trees (CRC, license, namespace, owner)."),
    "history": (history_cmd, "The table of a run of kernels in order: the changes of each step."),
    "check": (check_cmd, "Will modules built for another kernel load into this one (and with --force-vermagic, -f)?"),
})
