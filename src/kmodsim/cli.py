"""Command line entry point.

The CLI is thin: each sub-command lives in its own module (``kmodsim.commands.*`` or a
subsystem's ``cli`` module), declared with :mod:`kmodsim.args`, and is imported only when it is
run, so ``kmodsim scan`` on a warm cache does not pay for importing the C parser or the terminal
renderer.

Exit codes everywhere: 0 clean, 1 findings, 2 usage or input error.
"""

from __future__ import annotations

import errno
import importlib
import sys
from typing import TextIO

# command name -> "module:attribute" of a kmodsim.args.Command
COMMANDS: dict[str, str] = {
    "abi": "kmodsim.commands.abi:abi_cmd",
    "inspect": "kmodsim.commands.inspect:inspect_cmd",
    "ldd": "kmodsim.commands.ldd:ldd_cmd",
    "scan": "kmodsim.commands.scan:scan_cmd",
    "check": "kmodsim.commands.check:check_cmd",
    "footprint": "kmodsim.commands.footprint:footprint_cmd",
    "ops": "kmodsim.ops.cli:ops_cmd",
    "fetch-kernel": "kmodsim.commands.fetch:fetch_cmd",
    "depmod": "kmodsim.commands.depmod:depmod_cmd",
    "why": "kmodsim.commands.deps:why_cmd",
    "deps": "kmodsim.commands.deps:deps_cmd",
    "load": "kmodsim.commands.load:load_cmd",
    "verify": "kmodsim.commands.verify:verify_cmd",
    "series": "kmodsim.commands.series:series_cmd",
}

HELP = {
    "abi": "What a kernel update changes in module exports: abi diff OLD NEW, abi history K1 K2 ...",
    "inspect": "Show what a module exports, imports and declares (like modinfo).",
    "ldd": "Resolve a module's imports against a kernel (like ldd for a .ko).",
    "scan": "Read every module of a tree (parallel, cached) and summarise it.",
    "check": "modpost-class link checks across a set of modules, with an allowlist.",
    "footprint": "What each module costs in RAM, as /proc/modules shows it.",
    "ops": "Census of an ops table in C source, with a devirtualization plan.",
    "fetch-kernel": "Fetch and unpack a Debian kernel package (cached, never installed).",
    "depmod": "depmod with kmod's options: modules.dep & co. byte-identical, cycles with their symbols.",
    "why": "Which symbols make module A need module B (directly or through a chain).",
    "deps": "The dependency tree of a module, with the symbols behind each edge.",
    "load": "Model the kernel's module loader on an insmod/rmmod/modprobe script.",
    "verify": "Run a load script on the real kernel under QEMU; --compare with the model.",
    "series": "Check every step of a patch series: applies, builds (kbuild M=), links, what moved.",
}

USAGE = "usage: kmodsim [-h] [--version] COMMAND [ARGS]..."


def _help() -> str:
    width = max(map(len, COMMANDS))
    lines = [USAGE, "", "kmodsim: model, check and verify how Linux kernel modules link and load.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {HELP[name]}" for name in sorted(COMMANDS)]
    lines += ["", "options:", "  -h, --help  show this message and exit", "  --version   show the version and exit",
              "", "Exit status: 0 clean, 1 findings, 2 usage or input error. 'kmodsim COMMAND -h' for a command."]
    return "\n".join(lines) + "\n"


def _show_library_warnings() -> None:
    """The library's warnings (:class:`kmodsim.errors.KmodsimWarning`) as one line each on stderr,
    ``kmodsim: warning: <text>``; any other warning as Python shows it."""
    import warnings

    from .errors import KmodsimWarning

    default = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if issubclass(category, KmodsimWarning):
            sys.stderr.write(f"kmodsim: warning: {message}\n")
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: list[str] | None = None) -> None:
    """``kmodsim COMMAND ...``: only the command that runs is imported (and its parser built).

    Run as the program (no ``argv``), the process leaves as soon as the command is done and its
    output flushed: every file the command writes is complete and closed by then (atomic
    replacement, :mod:`kmodsim.cache`), and what the interpreter would still do — free the
    ~10^6 objects of a tree's records, one by one — changes nothing anyone sees (~20 ms of a
    0.4 s ``check`` of Debian's 6.1 tree). Called with ``argv`` (tests, other programs), it
    raises :class:`SystemExit` as usual."""
    if argv is None:
        try:
            _main(sys.argv[1:])
        except SystemExit as exc:
            _leave(exc.code)
        _leave(0)
    else:
        _main(argv)


def _leave(code: object) -> None:
    """Exit with ``code`` (as ``SystemExit`` would take it) once stdout and stderr are flushed,
    without the interpreter's teardown."""
    import os

    status = code if isinstance(code, int) else 0
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        status = 1
    try:
        sys.stdout.flush()
    except OSError as exc:  # every flush error is the output's
        lost = _output_lost(exc)
        status = (status or lost) if isinstance(exc, BrokenPipeError) else lost
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(status)


def _output_lost(exc: OSError) -> int:
    """The exit status for output that could not be written: the reader of a pipe left (1, and
    nothing more is said: stdout is pointed at /dev/null so that no later flush fails again), or
    the device refused it (2, said in one line)."""
    if isinstance(exc, BrokenPipeError):  # "kmodsim ... | head"
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    sys.stderr.write(f"kmodsim: error writing output: {exc.strerror or exc}\n")
    return 2


def _main(argv: list[str]) -> None:
    try:
        _dispatch(argv)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except OSError as exc:  # a pipe's reader gone, stdout on a full disk: not a traceback
        if not isinstance(exc, BrokenPipeError) and (exc.filename is not None
                                                     or exc.errno not in _OUTPUT_ERRNOS):
            raise
        raise SystemExit(_output_lost(exc)) from None
    raise SystemExit(0)


def _dispatch(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(_help())
        raise SystemExit(0 if argv else 2)
    if argv[0] == "--version":
        from importlib.metadata import version

        print(f"kmodsim, version {version('kmodsim')}")
        raise SystemExit(0)
    target = COMMANDS.get(argv[0])
    if target is None:
        sys.stderr.write(f"{USAGE}\nkmodsim: error: no such command {argv[0]!r} "
                         f"(commands: {', '.join(sorted(COMMANDS))})\n")
        raise SystemExit(2)
    mod_name, attr = target.split(":")
    _show_library_warnings()
    getattr(importlib.import_module(mod_name), attr).main(argv[1:], prog=f"kmodsim {argv[0]}")


_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EBADF, errno.EDQUOT, errno.EFBIG}
