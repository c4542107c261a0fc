"""The findings cache of ``kmodsim check`` (``$KMODSIM_CACHE/check``): a warm ``check`` whose
inputs are all unchanged gives the previous run's findings without reading a module.

The findings are a function of every input of :func:`kmodsim.checks.check_paths`: the stat keys of
the checked modules and of the ``--modules`` tree, the allowlist and symbol-list *contents*, the
``--kernel`` path and kmodsim's version — those form the key (:func:`key`) — and the files the
kernel was read from. Those are not listed here: :class:`kmodsim.kernel.Kernel` notes every file
its load looked at (``Kernel.inputs``, found or missing), the result is stored with their stat
keys, and a stored result is an answer only while each of them is unchanged (:func:`load`). A stat
key counts only when it can stand for the content read with it (git's racy-clean rule,
:func:`kmodsim.cache.is_trusted`): when one cannot, the result is not kept.

One file a key, ``<key>.result``, in the one checked format of :mod:`kmodsim.cache`
(:func:`~kmodsim.cache.store_checked`: magic and format, checksum, key); the 32 newest are kept.
The payload is a versioned serialisation of the result, not of any rendering (JSON)::

    {"modules": <number checked>,
     "findings": [[check, severity, symbol, module, path, message, {extra}], ...],
     "notes": [what the run told the user besides its findings (an unverified target release)],
     "inputs": [[kernel input file, its stat key or null when it did not exist], ...]}

A file of another format, of another key, damaged, or whose payload fails to parse in any way is a
miss (the run checks again and replaces it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from .cache import cache_root, is_trusted, load_checked, store_checked
from .checks import Finding

if TYPE_CHECKING:
    from .tree import ScanResult

MAGIC = b"KMSFIND4"  # the store and its format: 4, kmodsim.cache.store_checked and the kernel's inputs
KEEP = 32

def key(version: str, res: ScanResult, tree: ScanResult | None, kernel_path: str | None,
        allow_files: Sequence[str], symbol_lists: Sequence[str], cutoff: int) -> str:
    """The findings cache key; "" when a module's stat key cannot be trusted (a missing module, or
    one changed within the clock second the run started in: :func:`kmodsim.cache.is_trusted`).
    The kernel's files are checked apart (:func:`load`)."""
    import hashlib

    h = hashlib.blake2b(digest_size=20)
    checked = [(p, res.keys.get(p)) for p, _r, _s in res.items]
    providers = [(p, tree.keys.get(p)) for p, _r, _s in tree.items] if tree else None
    if not all(is_trusted(k, cutoff) for _p, k in checked + (providers or [])):
        return ""
    parts = [version, checked, providers, os.path.realpath(kernel_path) if kernel_path else None]
    h.update(repr(parts).encode("utf-8", "surrogateescape"))
    for f in (*allow_files, *symbol_lists):  # contents, not only stat: they are small
        with open(f, "rb") as fh:
            h.update(b"\0" + f.encode() + b"\0" + fh.read())
    return h.hexdigest()


def _file(k: str) -> str:
    return os.path.join(cache_root(), "check", k + ".result")


class Cached(NamedTuple):
    modules: int  # number of modules checked
    findings: list[Finding]
    notes: list[str]  # the run's notes (an unverified target release), shown again on a hit


def load(k: str) -> Cached | None:
    """The result stored under ``k`` while every kernel input it was computed from is unchanged;
    None on a miss."""
    from .scan_cache import stat_key

    payload = load_checked(_file(k), MAGIC, k.encode())
    if payload is None:
        return None
    try:
        doc = json.loads(payload)
        n = doc["modules"]
        findings = [Finding(*row) for row in doc["findings"]]
        notes = doc["notes"]
        inputs = [(str(path), None if sk is None else tuple(sk)) for path, sk in doc["inputs"]]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(n, int) or not all(isinstance(f.extra, dict) for f in findings) or \
            not isinstance(notes, list) or not all(isinstance(s, str) for s in notes):
        return None
    if any(stat_key(path) != sk for path, sk in inputs):
        return None  # the kernel changed (or a file it looked for appeared or went)
    return Cached(n, findings, notes)


def store(k: str, modules: int, findings: list[Finding], notes: list[str], inputs: Sequence[str],
          cutoff: int) -> None:
    """Keep a result under ``k`` with the stat keys of the kernel's ``inputs`` (and the
    :data:`KEEP` newest results); not kept when an input's stat key cannot be trusted yet. A result
    that cannot be written only costs time next run."""
    from .scan_cache import stat_key

    keyed = [(path, stat_key(path)) for path in inputs]
    if not all(sk is None or is_trusted(sk, cutoff) for _p, sk in keyed):
        return
    path = _file(k)
    rows = [[f.check, f.severity, f.symbol, f.module, f.path, f.message, f.extra] for f in findings]
    payload = json.dumps({"modules": modules, "findings": rows, "notes": notes, "inputs": keyed}).encode()
    try:
        store_checked(path, MAGIC, k.encode(), payload)
        d = os.path.dirname(path)
        olds = sorted((os.path.join(d, f) for f in os.listdir(d) if f.endswith(".result")),
                      key=os.path.getmtime)
        for old in olds[:-KEEP]:
            os.unlink(old)
    except OSError:
        pass
