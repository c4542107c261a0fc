"""What every command shares: exit codes, one-line errors, common options."""

from __future__ import annotations

import json
import sys

from .. import args

EXIT_OK, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


def error(msg: str) -> None:
    """One line on stderr: ``kmodsim: <file>: <problem>``."""
    print(f"kmodsim: {msg}", file=sys.stderr)


def warn(msg: str) -> None:
    """One line on stderr: ``kmodsim: warning: <what>`` (the run goes on; the exit status is unchanged)."""
    print(f"kmodsim: warning: {msg}", file=sys.stderr)


def dump_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def parse_size(text: str) -> int:
    """``1G``, ``512M``, ``4096``... (binary units)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if t and t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        return int(t)
    except ValueError:
        raise args.BadParameter(f"{text!r} is not a size (e.g. 1G, 512M, 4096)") from None


def max_size_option(f):
    return args.option(
        "--max-decompressed", "max_size", default="128M", show_default=True, metavar="SIZE",
        callback=lambda ctx, param, v: parse_size(v),
        help="Refuse compressed modules (.ko.xz, .ko.zst, .ko.gz) that expand past this size: one "
             "line naming the file, memory kept near SIZE. The default is 4.4x the largest module "
             "Debian ships (6.12's amdgpu.ko: 28 MiB decompressed).")(f)


def kernel_option(required: bool = True):
    return args.option(
        "--kernel", "-k", "kernel_path", required=required, metavar="KDIR|Module.symvers|vmlinux",
        help="Target kernel: a headers/build directory, a Module.symvers, a vmlinux or a vmlinuz.")


def load_kernel(path: str):
    from ..kernel import Kernel, KernelError

    try:
        return Kernel.load(path)
    except KernelError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None


def load_target(path: str):
    """The :class:`kmodsim.target.Target` of ``--kernel PATH``; exits 2 with one line if unreadable."""
    from ..target import Target

    return Target.of(load_kernel(path))


def scheduler_option(what: str):
    """``--scheduler ADDR``: ``what`` (e.g. "each kernel") as one task on a dask.distributed
    cluster (:mod:`kmodsim.cluster`); without it, this process and its worker processes."""
    return args.option(
        "--scheduler", metavar="ADDR", default=None,
        help=f"Read {what} as one task on a dask.distributed cluster: tcp://HOST:PORT (its "
             f"scheduler) or local:N (N worker processes here). Default: this process.")


def input_resolver(paths):
    """:func:`kmodsim.debian.resolve_input` when one of ``paths`` names a Debian package
    (``debian:...``, its ``PACKAGE_PREFIX``), else None: a run of paths only imports no apt
    machinery (``subprocess``: ~13 ms)."""
    if not any(p.startswith("debian:") for p in paths):
        return None
    from ..debian import resolve_input

    return resolve_input


def config_option(f):
    """depmod's ``-C``: the depmod.d files or directories that decide which file of a tree is a
    module (``search``, ``override``, ``external``, ``exclude``), as for ``kmodsim depmod``."""
    return args.option(
        "--config", "-C", "config", multiple=True, metavar="PATH",
        help="depmod.d configuration for trees (repeatable; default: depmod's directories).")(f)


def warn_ignored(paths) -> None:
    """One stderr line per ``.ko.gz`` a tree holds: depmod and modprobe (kmod 30, -ZLIB) pass over it."""
    from ..tree import IGNORED_NOTE

    for p in paths:
        print(f"kmodsim: warning: {p}: {IGNORED_NOTE}", file=sys.stderr)


def report_inputs(ignored, problems) -> None:
    """What a result says about its inputs, on stderr: first the ``.ko.gz`` files passed over, then
    each input problem (``(path, problem)``) as one line ``kmodsim: <path>: <problem>``."""
    if ignored:  # (warn_ignored imports the tree scanner)
        warn_ignored(ignored)
    for path, what in problems:
        error(f"{path}: {what}" if path else what)
