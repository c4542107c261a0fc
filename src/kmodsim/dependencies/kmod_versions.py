"""The kmod versions ``kmodsim depmod`` mirrors, and what each one's depmod does differently in
its outputs: one row per version, one field per behaviour, each citing the kmod release and the
upstream commit (github.com/kmod-project/kmod) that introduced it. The rest of the package reads
these fields; nothing else in it asks which version runs.

* kmod 30 — Debian 12 (bookworm), the system's depmod there.
* kmod 34 — Debian 13 (trixie), ``kmod 34.2``; checked against kmod 34.2 built from trixie's
  source package (:mod:`kmodsim.kmod_build`).

Between them (kmod's NEWS for 31 to 34, and ``git log v30..v34.2 -- tools/depmod.c``):

===============================  =====  ==========  ==============================================
behaviour                        since  commit      what changes
===============================  =====  ==========  ==============================================
``outdir`` (``-o/--outdir``)     31     1712a15     the files go to ``OUTDIR/lib/modules/KVER``
``distconfdir`` depmod.d         32     8463809     ``/usr/lib/depmod.d`` read before ``/lib/depmod.d``
``weakdep`` (modules.weakdep)    33     05828b4     ``weakdep=`` of .modinfo, after modules.softdep
``moduledir`` (``-m``)           34     c36ddb6,    ``BASEDIR/MODULEDIR/KVER`` (a leading ``/``
                                        a9e69c0     dropped: always below the base)
no deprecated options            34     af54b73     ``-u -q -r -m/--map`` are gone (``-m`` is
                                                    ``--moduledir``)
modules.order, first line wins   34     a1186fa     a module listed twice takes its first line
                                                    (kmod 30: its last)
.bin indexes in pre-order        34     dada048     a node before its children (kmod 30: children
                                                    first); the root at offset 12 with its flags
libkmod messages, no location    34     8c1c901     ``depmod: ERROR: kmod_module '...' already
                                                    exists ...`` without kmod 30's
                                                    ``../libkmod/libkmod-module.c:428 <fn>() ``
===============================  =====  ==========  ==============================================

(kmod 31's 5c004af, ``-ENODATA`` for a missing section, changes no output: depmod ignores a
module without symbols silently in both. kmod 34's 9cbb979 makes depmod refuse 8-bit characters
in index keys, which kmodsim does not model; Debian's trees have none.)
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from typing import NamedTuple

from ..cache import cache_root, is_trusted, load_checked, racy_cutoff, store_checked
from ..module import stat_key_of


class KmodVersion(NamedTuple):
    version: int
    # kmod 31, 1712a15 "depmod: Introduce outdir option"
    outdir: bool
    # kmod 32, 8463809 "libkmod, depmod: Load modprobe.d, depmod.d from ${prefix}/lib." — Debian
    # builds with prefix /usr (debian/rules of kmod 34.2-2), so DISTCONFDIR is /usr/lib
    cfg_paths: tuple[str, ...]
    # kmod 33, 05828b4 "libkmod: add weak dependecies": modules.weakdep after modules.softdep
    weakdep: bool
    # kmod 34, c36ddb6 "depmod: Add option to override MODULE_DIRECTORY" and a9e69c0 "depmod: Fix
    # handling relative moduledir"
    moduledir: bool
    # kmod 34, af54b73 "depmod: Remove deprecated options" (-u, -q, -r, -m/--map)
    deprecated_options: bool
    # kmod 34, a1186fa "depmod: Support modules.order with duplicate lines": the first line counts
    order_first_line_wins: bool
    # kmod 34, dada048 "depmod: Write index in pre-order"
    index_preorder: bool
    # libkmod's messages with their source location: kmod 30 as Debian 12 builds it prints
    # "<file>:<line> <function>() " before each (tools/log.c log_kmod() under ENABLE_DEBUG); kmod 34
    # as Debian 13 builds it (meson, debug-messages off: ENABLE_DEBUG 0, tested with "== 1" since
    # 8c1c901 "Always define and use ENABLE_DEBUG") does not — a build option as much as a version
    libkmod_log_location: bool


KMOD_VERSIONS: dict[int, KmodVersion] = {
    30: KmodVersion(30, outdir=False,
                    cfg_paths=("/etc/depmod.d", "/run/depmod.d", "/usr/local/lib/depmod.d", "/lib/depmod.d"),
                    weakdep=False, moduledir=False, deprecated_options=True, order_first_line_wins=False,
                    index_preorder=False, libkmod_log_location=True),
    34: KmodVersion(34, outdir=True,
                    cfg_paths=("/etc/depmod.d", "/run/depmod.d", "/usr/local/lib/depmod.d", "/usr/lib/depmod.d",
                               "/lib/depmod.d"),
                    weakdep=True, moduledir=True, deprecated_options=False, order_first_line_wins=True,
                    index_preorder=True, libkmod_log_location=False),
}
NEWEST = 34


def kmod_version(version: int | None = None) -> KmodVersion:
    """The behaviours of kmod ``version`` (None: :func:`default_version`)."""
    return KMOD_VERSIONS[default_version() if version is None else version]


@functools.cache
def default_version() -> int:
    """The kmod of this machine (``depmod --version``: ``kmod version 30``) when it is one of
    :data:`KMOD_VERSIONS`, else the newest. The answer is kept in the cache, keyed on the stat key
    of the binary the ``depmod`` found resolves to (the one cache mechanism,
    :func:`kmodsim.cache.store_checked`), so that a run does not pay a process for it (a warm
    ``kmodsim depmod`` is a few tens of milliseconds)."""
    depmod = shutil.which("depmod") or shutil.which("depmod", path="/usr/sbin:/sbin") or "depmod"
    binary = os.path.realpath(depmod)
    try:
        key = stat_key_of(os.stat(binary))
    except OSError:
        key = None
    memo = os.path.join(cache_root(), "kmod-version")
    tag = repr((binary, key)).encode()
    if key is not None:
        hit = load_checked(memo, _MEMO_MAGIC, tag)
        if hit is not None and hit.isdigit():
            return _known(int(hit))
    v = _ask(depmod)
    if key is not None and is_trusted(key, racy_cutoff()):
        try:
            store_checked(memo, _MEMO_MAGIC, tag, str(v).encode())
        except OSError:
            pass  # not kept: only costs the process next time
    return _known(v)


_MEMO_MAGIC = b"KMSKMODV"


def _ask(depmod: str) -> int:
    """``depmod --version``'s number (the newest known when it does not answer as kmod)."""
    import subprocess

    try:
        p = subprocess.run([depmod, "--version"], capture_output=True, text=True, timeout=10)
        m = re.match(r"kmod version (\d+)", p.stdout)
    except (OSError, subprocess.SubprocessError):
        m = None
    return int(m.group(1)) if m else NEWEST


def _known(v: int) -> int:
    return v if v in KMOD_VERSIONS else NEWEST
