"""The scan cache: one file per tree mapping each module's path to its parsed record, keyed by the
file's stat key (size, mtime_ns, ctime_ns, inode). Written atomically (:mod:`kmodsim.cache`),
carrying a format version, the records' version and a digest of its payload: a torn, truncated or
tampered cache is detected and rebuilt, an entry whose file changed is read again, an entry of a
racily clean file is not kept. The cache can only make a scan faster, never different. depmod's
record cache is the same store with its own records (:mod:`kmodsim.dependencies.plan`)."""

from __future__ import annotations

import marshal
import os
import warnings
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .cache import cache_root, is_trusted, racy_cutoff, write_atomic
from .errors import KmodsimWarning
from .module import RECORD_VERSION, stat_key_of

if TYPE_CHECKING:
    from mmap import mmap

CACHE_MAGIC = b"KMSCACHE"
# The layout of the cache file itself (header, index, blob area), bumped by hand when ScanCache's
# own layout changes. The records' version is not in it: each file carries the version of the
# records it holds (the ``schema`` of :class:`ScanCache`, e.g. module.RECORD_VERSION) and is
# discarded when it differs. 4: index apart from the records; 8: the record version in the index.
CACHE_FORMAT = 8

StatKey = tuple[int, int, int, int]  # (size, mtime_ns, ctime_ns, inode): module.stat_key_of
# What a warm run shows without reading a record: a scan's (name, exports, imports); depmod's ().
Summary = tuple[str | int, ...]
# path -> (key, summary, offset, length, crc32) as loaded, or (key, summary, record) as put
Entry = tuple[StatKey, Summary, int, int, int] | tuple[StatKey, Summary, bytes]


def stat_key(path: str) -> StatKey | None:
    """The cache key of ``path`` (:func:`kmodsim.module.stat_key_of`), None if it cannot be stat'ed."""
    try:
        return stat_key_of(os.stat(path))
    except OSError:
        return None



def default_cache_dir() -> str:
    return os.path.join(cache_root(), "scan")


def file_fingerprint(paths: Iterable[str]) -> list[tuple[str, StatKey | None]]:
    """(path, stat key) of each path that exists, for cache keys of derived results."""
    return [(p, stat_key(p)) for p in paths]


class ScanCache:
    """One file per scanned root: a checked index, then the records (module records, or those
    ``schema`` names: kmodsim depmod keeps libkmod's view of each module in one too).

    Layout: ``CACHE_MAGIC``, the format (u32), the index length (u64) and its crc32 (u32), the
    index — marshalled ``(root, schema, blob area length, {path: (stat key, summary, offset,
    length, crc32)})`` — then the blob area: each module's marshalled record at its offset. A file
    whose ``schema`` (the records' version, derived from their field names) is not the reader's
    is discarded; the file's name carries a digest of it, so two versions do not evict each other. Loading reads
    and checks the index only (a warm scan needs just the summaries); a record is read and its
    crc32 checked when it is used (:meth:`blob`), and a record that fails the check is reported
    as missing, so its module is read again. An index that fails any check, or a file whose size
    does not match it, is discarded whole (and rebuilt by the next save).
    """

    def __init__(self, root: str, cache_dir: str | None = None, schema: tuple[int, tuple[str, ...]] = RECORD_VERSION) -> None:
        self.root = os.path.realpath(root)
        self.schema = schema
        d = cache_dir or default_cache_dir()
        # a name from the root (the file also records the root: a collision only costs a rebuild)
        raw = self.root.encode("utf-8", "surrogateescape")
        h = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"
        v = zlib.crc32(repr(schema).encode())
        self.file = os.path.join(d, f"{h}.v{CACHE_FORMAT}-{v:08x}")
        self.entries: dict[str, Entry] = {}
        self.dirty = False
        self.problem = ""  # why a cache file was discarded, if it was
        self._map: mmap | None = None  # the loaded file, mapped: blobs are read from it on demand
        # made before any module of this run is read: entries whose files changed since are racy
        self.cutoff = racy_cutoff()

    _HEAD = len(CACHE_MAGIC) + 16

    def load(self) -> None:
        import mmap

        try:
            with open(self.file, "rb") as f:
                head = f.read(self._HEAD)
                if len(head) < self._HEAD or not head.startswith(CACHE_MAGIC):
                    self._discard("not a kmodsim cache file")
                    return
                n = len(CACHE_MAGIC)
                fmt = int.from_bytes(head[n:n + 4], "little")
                if fmt != CACHE_FORMAT:
                    self._discard(f"format {fmt}, expected {CACHE_FORMAT}")
                    return
                size = int.from_bytes(head[n + 4:n + 12], "little")
                crc = int.from_bytes(head[n + 12:n + 16], "little")
                index = f.read(size)
                if len(index) != size or zlib.crc32(index) != crc:
                    self._discard("checksum mismatch (torn or corrupted file)")
                    return
                try:
                    root, schema, area, entries = marshal.loads(index)
                except (ValueError, EOFError, TypeError):
                    self._discard("unreadable payload")
                    return
                if root != self.root or not isinstance(entries, dict):
                    self._discard("belongs to another tree")
                    return
                if schema != self.schema:
                    self._discard(f"records of version {schema!r}, expected {self.schema!r}")
                    return
                if os.fstat(f.fileno()).st_size != self._HEAD + size + area:
                    self._discard("file size does not match its index (torn file)")
                    return
                if area:
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                self._base = self._HEAD + size
        except OSError:
            return
        self.entries = entries

    def _discard(self, why: str) -> None:
        self.problem = why
        self.entries = {}
        self.dirty = True

    def summary(self, path: str, key: StatKey | None) -> Summary | None:
        """The summary of ``path`` if it is cached with this stat key (its record is not read)."""
        e = self.entries.get(path)
        if e is None or key is None or e[0] != key:
            return None
        return e[1]

    def blob(self, path: str) -> bytes | None:
        """The marshalled record of ``path``; None if absent or if it fails its checksum."""
        e = self.entries.get(path)
        if e is None:
            return None
        if len(e) == 3:
            return e[2]
        _key, _summ, off, length, crc = e
        if self._map is None:
            return None
        data = self._map[self._base + off:self._base + off + length]
        if len(data) != length or zlib.crc32(data) != crc:
            self.problem = f"{path}: record fails its checksum"
            del self.entries[path]
            self.dirty = True
            return None
        return data

    def get(self, path: str, key: StatKey | None) -> tuple[bytes, Summary] | None:
        """(marshalled record, summary) if ``path`` is cached with this stat key."""
        summ = self.summary(path, key)
        if summ is None:
            return None
        blob = self.blob(path)
        return None if blob is None else (blob, summ)

    def put(self, path: str, key: StatKey, blob: bytes, summary: Summary) -> None:
        """Cache a marshalled record (``ModuleRecord.dumps()`` for a scan)."""
        self.entries[path] = (key, summary, blob)
        self.dirty = True

    def prune(self, keep: set[str]) -> None:
        stale = [p for p in self.entries if p not in keep]
        for p in stale:
            del self.entries[p]
        if stale:
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        index: dict[str, tuple[StatKey, Summary, int, int, int]] = {}
        blobs: list[bytes] = []
        off = 0
        for path in list(self.entries):
            e = self.entries[path]
            if not is_trusted(e[0], self.cutoff):
                continue  # racily clean: read again next time (see the module docstring)
            blob = e[2] if len(e) == 3 else self.blob(path)  # an unchanged record: copied (checked)
            if blob is None:
                continue
            blob = bytes(blob)
            index[path] = (e[0], e[1], off, len(blob), zlib.crc32(blob))
            blobs.append(blob)
            off += len(blob)
        payload = marshal.dumps((self.root, self.schema, off, index))
        head = (CACHE_MAGIC + CACHE_FORMAT.to_bytes(4, "little") + len(payload).to_bytes(8, "little")
                + zlib.crc32(payload).to_bytes(4, "little"))
        try:
            write_atomic(self.file, b"".join([head, payload, *blobs]))
        except OSError as exc:  # a cache that cannot be written only costs time
            warnings.warn(KmodsimWarning(f"cannot write cache {self.file}: {exc.strerror or exc}"), stacklevel=2)
        self.dirty = False
