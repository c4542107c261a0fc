"""What every kmodsim cache shares: where caches live, how a file is replaced, and when a stat key
may stand for a file's content.

* :func:`cache_root` — ``$KMODSIM_CACHE``, else ``$XDG_CACHE_HOME/kmodsim``, else
  ``~/.cache/kmodsim``; each cache is a directory below it (``scan``, ``check``, ``depmod-v2``,
  ``kbuild``, ``roots``, ``oracle`` ...).
* :func:`write_atomic` — a temporary file in the same directory, written, fsync'ed, renamed over
  the old one: a reader sees the old file or the new one, never a torn one.
* :func:`store_checked` / :func:`load_checked` — one result file: a magic naming the store and its
  format version, a checksum, the key it answers, the payload. Anything that does not match —
  another format, a torn or damaged file, another key — reads as "not cached", never as an answer.
* :func:`cached_dir` — a directory made once (a kbuild build, an unpacked package, a source tree):
  filled in a temporary directory beside it and renamed into place, so that it exists only whole.
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
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable


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


def store_checked(path: str, magic: bytes, key: bytes, payload: bytes) -> None:
    """Write ``payload`` as the answer for ``key`` (atomically, :func:`write_atomic`). ``magic``
    (8 bytes) names the store and the format of its payload: change it when the format changes."""
    if len(magic) != 8:
        raise ValueError("magic must be 8 bytes")
    body = len(key).to_bytes(2, "little") + key + payload
    write_atomic(path, magic + zlib.crc32(body).to_bytes(4, "little") + body)


def load_checked(path: str, magic: bytes, key: bytes) -> bytes | None:
    """The payload :func:`store_checked` wrote for ``key``; None when the file is missing,
    unreadable, of another store or format, damaged (checksum), or holds another key's answer."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if len(blob) < 14 or blob[:8] != magic:
        return None
    body = memoryview(blob)[12:]
    if zlib.crc32(body) != int.from_bytes(blob[8:12], "little"):
        return None
    n = int.from_bytes(body[:2], "little")
    if bytes(body[2:2 + n]) != key:
        return None
    return bytes(body[2 + n:])


def cached_dir(dest: str, fill: Callable[[str], None]) -> str:
    """``dest``, made once: when it does not exist, ``fill(tmp)`` writes its content into a new
    temporary directory beside it, which is then renamed to ``dest``. A directory is only ever
    renamed into place whole, so its existence is its completeness; an interrupted ``fill`` leaves
    nothing behind (its temporary directory is removed). Two runs filling one ``dest`` at once: the
    first rename wins, the other run's copy is dropped. Returns ``dest``."""
    if os.path.isdir(dest):
        return dest
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        fill(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not os.path.isdir(dest):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another run got there first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# Kernel file times come from a coarse clock that may lag the wall clock by a few ticks.
_CLOCK_SLACK_NS = 100_000_000


def racy_cutoff(now_ns: int | None = None) -> int:
    """The start of the clock second before which a file's ctime must lie for its stat key to be
    trusted by a cache whose content is read from now on (git's racy-clean rule, at one-second
    resolution: the coarsest timestamps of the file systems kmodsim reads)."""
    t = (time.time_ns() if now_ns is None else now_ns) - _CLOCK_SLACK_NS
    return t - t % 1_000_000_000


StatKey = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode: kmodsim.module.stat_key_of


def is_trusted(key: StatKey | None, cutoff: int) -> bool:
    """Whether a stat key (:func:`kmodsim.module.stat_key_of`) taken after ``cutoff`` can stand for
    the content read with it: any later write changes the ctime (and so the key) only when the
    current ctime is older than ``cutoff``."""
    return key is not None and key[2] < cutoff
