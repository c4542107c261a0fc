"""What every kmodsim cache shares: where caches live, how a file is replaced, and when a stat key
may stand for a file's content.

* :func:`cache_root` — ``$KMODSIM_CACHE``, else ``$XDG_CACHE_HOME/kmodsim``, else
  ``~/.cache/kmodsim``; each cache is a directory below it (``scan``, ``check``, ``depmod-v2``,
  ``kbuild``, ``roots``, ``oracle`` ...).
* :func:`write_atomic` — a temporary file in the same directory, written, fsync'ed, renamed over
  the old one: a reader sees the old file or the new one, never a torn one.
* :func:`racy_cutoff` / :func:`is_trusted` — git's racy-clean rule. A stat key (size, mtime_ns,
  ctime_ns, inode: :func:`kmodsim.module.stat_key_of`) cannot tell two versions of a file apart
  when both were written within one tick of the file system's clock (one second on ext4 with
  128-byte inodes, ext3, many network file systems): a module rewritten in place, same size, in the
  very second it was read keeps its key. As git does for its index (Documentation/technical/
  racy-git.txt), a cache keeps an entry only when its file's ctime is older than the second in
  which the run started to read; a racily clean entry is not kept, and the next run reads the file
  again.

This module imports nothing of kmodsim's: the reader layer, the Debian fetcher and the commands
all stand above it.
"""

from __future__ import annotations

import os
import tempfile
import time


def cache_root() -> str:
    """The directory under which every kmodsim cache lives."""
    return os.environ.get("KMODSIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kmodsim")


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never a torn file)."""
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# Kernel file times come from a coarse clock that may lag the wall clock by a few ticks.
_CLOCK_SLACK_NS = 100_000_000


def racy_cutoff(now_ns: int | None = None) -> int:
    """The start of the clock second before which a file's ctime must lie for its stat key to be
    trusted by a cache whose content is read from now on (git's racy-clean rule, at one-second
    resolution: the coarsest timestamps of the file systems kmodsim reads)."""
    t = (time.time_ns() if now_ns is None else now_ns) - _CLOCK_SLACK_NS
    return t - t % 1_000_000_000


def is_trusted(key: tuple | None, cutoff: int) -> bool:
    """Whether a stat key (:func:`kmodsim.module.stat_key_of`) taken after ``cutoff`` can stand for
    the content read with it: any later write changes the ctime (and so the key) only when the
    current ctime is older than ``cutoff``."""
    return key is not None and key[2] < cutoff
