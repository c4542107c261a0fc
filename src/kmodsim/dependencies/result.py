"""What ``kmodsim depmod`` prints and writes (files, stderr, status), memoised on disk by every
input's stat key and every option."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..cache import is_trusted, load_checked, racy_cutoff, store_checked
from ..messages import DepmodMessage
from ..module import DEFAULT_MAX_SIZE
from ..scan_cache import StatKey, stat_key
from .cycles import cycle_report
from .graph import compute
from .kmod_view import RECORD_VERSION
from .outputs import outputs
from .plan import Plan, cache_dir_for, load_records, plan_keys

# ---------------------------------------------------------------------------------------------
# What ``kmodsim depmod`` prints and writes, memoised
# ---------------------------------------------------------------------------------------------


class Result(NamedTuple):
    files: dict[str, bytes] | None  # None: a cycle stopped the run, nothing is written
    messages: list[DepmodMessage]  # what depmod (and kmodsim) says, in its order: render.depmod words it
    status: int  # 0 written, 1 cycles, 2 unreadable input


MEMO_MAGIC = b"KMSDEPM3"  # 2: kmodsim.cache.store_checked's layout; 3: typed messages


def depmod_result(pl: Plan, *, errsyms: bool = False, prefix: str = "", warn: bool = False,
                  show: bool = False, bins: bool = False, cycles_limit: int = 1000, jobs: int | None = None,
                  use_cache: bool = True, cache_dir: str | None = None,
                  max_size: int = DEFAULT_MAX_SIZE, explain_cycles: bool = False,
                  progress: bool | None = False) -> Result:
    """The files, messages (stderr) and exit status of ``kmodsim depmod``. With the cache, the whole result
    is also kept, keyed by every input's stat key and every option: an unchanged tree costs its
    discovery and nothing else. kmodsim's own cycle report (:func:`cycle_report`) follows
    depmod's lines only with ``explain_cycles``: stderr is otherwise depmod's alone, as kmod's
    testsuite compares it (``depmod_detect_loop``)."""
    key = None
    if use_cache:
        key = _memo_key(pl, (errsyms, prefix, warn, show, bins, cycles_limit, max_size, explain_cycles,
                             stat_key(os.path.join(pl.dirname, "modules.builtin")),
                             stat_key(os.path.join(pl.dirname, "modules.builtin.modinfo"))))
        hit = _memo_load(pl, cache_dir, key)
        if hit is not None:
            return hit
    dm = compute(pl, load_records(pl, jobs, use_cache, cache_dir, max_size, crcs=errsyms, progress=progress),
                 errsyms=errsyms, prefix=prefix)
    err = list(dm.warnings)
    err += [DepmodMessage("unreadable", (p, problem)) for p, problem in dm.errors]
    if dm.dep_sort is None:
        if explain_cycles:
            err += cycle_report(dm, cycles_limit)
        res = Result(None, err, 1)
    else:
        messages: list[DepmodMessage] = []
        files = outputs(dm, messages, bins=bins and not show, warn_dups=warn, show=show, kmod=pl.kmod)
        res = Result(files, err + messages, 2 if dm.errors else 0)
    if key is not None:
        _memo_save(pl, cache_dir, key, res)
    return res



def _code_keys() -> tuple[StatKey | None, ...]:
    """The stat keys of this package's code: a memo made by other code is not trusted."""
    here = os.path.dirname(os.path.abspath(__file__))
    return tuple(stat_key(os.path.join(here, n)) for n in sorted(os.listdir(here)) if n.endswith(".py"))


def _memo_key(pl: Plan, options: tuple[bool | int | str | StatKey | None, ...]) -> bytes:
    """The memo's key; empty (never memoise) when an input cannot be stat'ed or its stat key cannot
    be trusted yet (:func:`kmodsim.tree.is_trusted`). Stat keys in ``options`` count as inputs."""
    import hashlib
    import marshal

    cutoff = racy_cutoff()  # before the modules are read (load_records)
    cfg = pl.cfg
    keys = plan_keys(pl)
    me = _code_keys()
    ksrc_key = None if pl.ksrc is None else stat_key(pl.ksrc[1])
    order_key = stat_key(os.path.join(pl.dirname, "modules.order"))
    parts = (
        RECORD_VERSION, me, pl.dirname, pl.kver, pl.files_mode, pl.kmod.version, options,
        None if cfg is None else (cfg.searches, cfg.overrides, cfg.externals, cfg.excludes,
                                  [tuple(m) for m in cfg.messages]),
        None if pl.ksrc is None else (pl.ksrc, ksrc_key),
        order_key,
        pl.errors,
        [(f.path, f.relpath, f.name, keys[f.path]) for f in pl.found],
    )
    if any(not is_trusted(k, cutoff) for k in keys.values()):
        return b""  # a module vanished, cannot be stat'ed, or is racily clean
    others = [*me, ksrc_key, order_key, *(k for k in options if isinstance(k, tuple))]
    if any(k is not None and not is_trusted(k, cutoff) for k in others):
        return b""  # a file missing today may appear; one changed this second is racy
    return hashlib.blake2b(marshal.dumps(parts), digest_size=20).digest()


def _memo_file(pl: Plan, cache_dir: str | None) -> str:
    import hashlib

    h = hashlib.blake2b(pl.cache_root.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()
    return os.path.join(cache_dir_for(cache_dir), f"{h}.result")


def _memo_load(pl: Plan, cache_dir: str | None, key: bytes) -> Result | None:
    import marshal

    if not key:
        return None
    payload = load_checked(_memo_file(pl, cache_dir), MEMO_MAGIC, key)
    if payload is None:
        return None
    try:
        files, said, status = marshal.loads(payload)
        messages = [DepmodMessage(code, tuple(args)) for code, args in said]
    except (ValueError, EOFError, TypeError):
        return None
    return Result(files, messages, status)


def _memo_save(pl: Plan, cache_dir: str | None, key: bytes, res: Result) -> None:
    import marshal

    if not key:
        return
    try:
        store_checked(_memo_file(pl, cache_dir), MEMO_MAGIC, key, marshal.dumps((res.files, [(m.code, tuple(m.args)) for m in res.messages], res.status)))
    except OSError:
        pass  # a memo that cannot be written only costs time
