"""The findings cache of ``kmodsim check`` (``$KMODSIM_CACHE/check``): a warm ``check`` whose
inputs are all unchanged gives the previous run's findings without reading a module.

The findings are a function of every input of :func:`kmodsim.checks.check_paths`: the stat keys of
the checked modules and of the ``--modules`` tree, the stat keys of the kernel's input files
(:data:`KERNEL_INPUTS`), the allowlist and symbol-list *contents*, and kmodsim's version. Those form
the key (:func:`key`). A stat key counts only when it can stand for the content read with it
(git's racy-clean rule, :func:`kmodsim.cache.is_trusted`): when one cannot, there is no key and the
result is not kept.

One file a key, ``<key>.json``, written with :func:`kmodsim.cache.write_atomic`; the 32 newest are
kept. The file is a versioned serialisation of the result, not of any rendering::

    {"format": FORMAT, "key": "<key>", "modules": <number checked>,
     "findings": [[check, severity, symbol, module, path, message, {extra}], ...],
     "notes": [what the run told the user besides its findings (an unverified target release)]}

A file of another format, of another key, or that fails to parse in any way is a miss (the run
checks again and replaces it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from .cache import cache_root, is_trusted, write_atomic
from .checks import Finding

if TYPE_CHECKING:
    from .tree import ScanResult

FORMAT = 3  # 1: the --format json document itself ({"key", "result"}), before kmodsim.render; 3: notes
KEEP = 32

# What Kernel.load() reads from a headers/build directory (kmodsim.kernel): each one's stat key
# is part of the key. A file given as --kernel (Module.symvers, vmlinux, vmlinuz) stands for itself.
KERNEL_INPUTS = ("Module.symvers", ".config", ".kernelvariables", "include/generated/utsrelease.h",
                 "include/config/kernel.release", "include/generated/randstruct_hash.h")


def key(version: str, res: ScanResult, tree: ScanResult | None, kernel_path: str | None,
        allow_files: Sequence[str], symbol_lists: Sequence[str], cutoff: int) -> str:
    """The findings cache key; "" when an input's stat key cannot be trusted (a missing module, or
    one changed within the clock second the run started in: :func:`kmodsim.cache.is_trusted`)."""
    import hashlib

    from .scan_cache import file_fingerprint

    h = hashlib.blake2b(digest_size=20)
    kfiles = []
    if kernel_path:
        kp = os.path.realpath(kernel_path)
        kfiles = [os.path.join(kp, f) for f in KERNEL_INPUTS] if os.path.isdir(kp) else [kp]
    checked = [(p, res.keys.get(p)) for p, _r, _s in res.items]
    providers = [(p, tree.keys.get(p)) for p, _r, _s in tree.items] if tree else None
    kernel_files = file_fingerprint(kfiles)  # a kernel input that does not exist has key None
    if not all(is_trusted(k, cutoff) for _p, k in checked + (providers or [])) or not all(
            k is None or is_trusted(k, cutoff) for _p, k in kernel_files):
        return ""
    parts = [version, checked, providers, kernel_files]
    h.update(repr(parts).encode("utf-8", "surrogateescape"))
    for f in (*allow_files, *symbol_lists):  # contents, not only stat: they are small
        with open(f, "rb") as fh:
            h.update(b"\0" + f.encode() + b"\0" + fh.read())
    return h.hexdigest()


def _file(k: str) -> str:
    return os.path.join(cache_root(), "check", k + ".json")


class Cached(NamedTuple):
    modules: int  # number of modules checked
    findings: list[Finding]
    notes: list[str]  # the run's notes (an unverified target release), shown again on a hit


def load(k: str) -> Cached | None:
    """The result stored under ``k``; None on a miss."""
    try:
        with open(_file(k), encoding="utf-8") as f:
            doc = json.load(f)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("key") != k:
            return None
        n = doc["modules"]
        findings = [Finding(*row) for row in doc["findings"]]
        notes = doc["notes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(n, int) or not all(isinstance(f.extra, dict) for f in findings) or \
            not isinstance(notes, list) or not all(isinstance(s, str) for s in notes):
        return None
    return Cached(n, findings, notes)


def store(k: str, modules: int, findings: list[Finding], notes: list[str]) -> None:
    """Keep a result under ``k`` (and the :data:`KEEP` newest results); a result that cannot be
    written only costs time next run."""
    path = _file(k)
    rows = [[f.check, f.severity, f.symbol, f.module, f.path, f.message, f.extra] for f in findings]
    try:
        write_atomic(path, json.dumps({"format": FORMAT, "key": k, "modules": modules,
                                       "findings": rows, "notes": notes}).encode())
        d = os.path.dirname(path)
        olds = sorted((os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json")),
                      key=os.path.getmtime)
        for old in olds[:-KEEP]:
            os.unlink(old)
    except OSError:
        pass
