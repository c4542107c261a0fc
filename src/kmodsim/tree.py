"""Finding and reading every module of a tree: depmod's discovery, worker processes, a cache.

A tree's modules are the ones kmod's depmod takes (:mod:`kmodsim.discovery`, shared with
``kmodsim depmod``): a recursive walk that skips ``build``, ``source`` and depmod.d's ``exclude``
directories, follows symbolic links, keeps ``.ko``, ``.ko.xz`` and ``.ko.zst`` files (Debian 12's
kmod 30 reads no ``.ko.gz``), one file per module name by depmod's priorities (depmod.d
``override`` and ``search``, ``updates/`` first by default), plus the ``external`` directories;
in modules.dep order (``modules.order`` first, then kmod's hash order of names).

The cache (:class:`ScanCache`) maps a path to the parsed module, keyed by size, mtime_ns, ctime_ns
and inode. It is one file per tree, written atomically (temporary file + rename), carrying a format
version and a digest of its payload: a torn, truncated or tampered cache is detected and rebuilt,
an entry whose file changed is re-read. The cache can only make a scan faster, never different.

An entry is kept only under git's racy-clean rule (:mod:`kmodsim.cache`, where every cache's
shared pieces live): a module changed in the second its run started to read is read again next time.
"""

from __future__ import annotations

import marshal
import os
import sys
import zlib
from collections.abc import Callable, Iterable
from typing import NamedTuple

from .cache import cache_root, is_trusted, racy_cutoff, write_atomic
from .module import (
    DEFAULT_MAX_SIZE,
    MODULE_SUFFIXES,
    RECORD_VERSION,
    Module,
    ModuleError,
    ModuleRecord,
    open_image,
    parse_record,
    stat_key_of,
)

CACHE_MAGIC = b"KMSCACHE"
# The layout of the cache file itself (header, index, blob area), bumped by hand when ScanCache's
# own layout changes. The records' version is not in it: each file carries the version of the
# records it holds (the ``schema`` of :class:`ScanCache`, e.g. module.RECORD_VERSION) and is
# discarded when it differs. 4: index apart from the records; 8: the record version in the index.
CACHE_FORMAT = 8


class ScanProblem(NamedTuple):
    """An input a scan could not read (a record, not an exception: the scan goes on)."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class ScanResult:
    """Modules found by a scan, in discovery order, and the problems met.

    Cached modules stay marshalled until used: :attr:`summaries` (name, export and import
    counts) needs no decoding at all, :attr:`records` and :attr:`modules` decode on first use.
    (A plain class, not a dataclass: ``dataclasses`` costs a warm scan ~7 ms of imports.)
    """

    def __init__(self, root: str, cached: int = 0, parsed: int = 0) -> None:
        self.root = root
        self.items: list[tuple[str, _Cached | bytes, tuple[str, int, int]]] = []
        self.keys: dict[str, tuple | None] = {}  # path -> stat key (size, mtime_ns, ctime_ns, ino)
        self.errors: list[ScanProblem] = []
        self.ignored: list[str] = []  # .ko.gz files of the trees, which depmod passes over
        self.cached = cached
        self.parsed = parsed
        self._records: list[ModuleRecord] | None = None
        self._modules: list[Module] | None = None

    @property
    def summaries(self) -> list[tuple[str, str, int, int]]:
        """(path, name, number of exports, number of imports) per module."""
        return [(path, *summ) for path, _r, summ in self.items]

    @property
    def records(self) -> list[ModuleRecord]:
        if self._records is None:
            self._records = [r.record() if isinstance(r, _Cached) else ModuleRecord.loads(r)
                             for _p, r, _s in self.items]
            for c in {id(r.cache): r.cache for _p, r, _s in self.items if isinstance(r, _Cached)}.values():
                c.save()  # records found damaged were read again: write them back
        return self._records

    @property
    def modules(self) -> list[Module]:
        if self._modules is None:
            self._modules = [Module.from_record(r) for r in self.records]
        return self._modules


class _Cached:
    """A module whose record is in a scan cache: read (and checked) when first used; a record that
    fails its checksum is replaced by reading the module again."""

    __slots__ = ("cache", "path", "max_size")

    def __init__(self, cache: ScanCache, path: str, max_size: int) -> None:
        self.cache, self.path, self.max_size = cache, path, max_size

    def record(self) -> ModuleRecord:
        blob = self.cache.blob(self.path)
        if blob is not None:
            try:
                return ModuleRecord.loads(blob)
            except (ValueError, EOFError, TypeError):
                pass
        ok, val = _read_one(self.path, self.max_size)
        if not ok:
            raise ModuleError(self.path, val)
        self.cache.put(self.path, val[2], val[0], val[1])  # repaired at the next save
        return ModuleRecord.loads(val[0])


def record_summary(rec: ModuleRecord) -> tuple[str, int, int]:
    """(name, number of exports, number of imports): what a warm scan shows without a record."""
    return (rec.name, rec.export_names.count("\0"), rec.import_names.count("\0"))


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------

def module_root(path: str) -> str:
    """The directory depmod would scan for ``path``: ``<path>/lib/modules/<kver>`` when ``path``
    is a root file system holding exactly one kernel version, else ``path`` itself."""
    lm = os.path.join(path, "lib", "modules")
    if os.path.isdir(lm):
        kvers = sorted(d for d in os.listdir(lm) if os.path.isdir(os.path.join(lm, d)))
        if len(kvers) == 1:
            return os.path.join(lm, kvers[0])
        if len(kvers) > 1:
            raise ValueError(f"{lm}: holds several kernel versions ({', '.join(kvers)}); name one")
    return path


def is_module_file(name: str) -> bool:
    return name.endswith(MODULE_SUFFIXES)


def find_modules(root: str, errors: list[ScanProblem] | None = None, config_paths: Iterable[str] | None = None,
                 ignored: list[str] | None = None) -> list[str]:
    """The modules depmod takes from the tree ``root``, in modules.dep order
    (:func:`kmodsim.discovery.discover`: depmod.d ``search``/``override``/``external``/``exclude``,
    one file per module name, ``.ko.gz`` passed over and listed in ``ignored``)."""
    from .discovery import discover

    d = discover(root, config_paths)
    if errors is not None:
        errors.extend(ScanProblem(p, problem) for p, problem in d.errors)
    if ignored is not None:
        ignored.extend(d.ignored)
    return d.paths


def expand_paths(paths: Iterable[str], errors: list[ScanProblem], config_paths: Iterable[str] | None = None,
                 ignored: list[str] | None = None) -> list[tuple[str, str]]:
    """(root, file) for every module named on a command line: files as given, directories by
    depmod's discovery (:func:`find_modules`)."""
    out: list[tuple[str, str]] = []
    for p in paths:
        if os.path.isdir(p):
            try:
                root = module_root(p)
            except ValueError as exc:
                errors.append(ScanProblem(p, str(exc)))
                continue
            found = find_modules(root, errors, config_paths, ignored)
            if not found:  # a mistyped path must not pass as a clean tree
                errors.append(ScanProblem(p, "no modules found (*.ko, *.ko.xz, *.ko.zst)"))
            out.extend((root, f) for f in found)
        else:
            out.append((os.path.dirname(p) or ".", p))
    return out


IGNORED_NOTE = "not a module to Debian 12's depmod and modprobe (kmod 30 is built without zlib): left out"


# ---------------------------------------------------------------------------------------------
# Reading, in parallel
# ---------------------------------------------------------------------------------------------

def stat_key(path: str) -> tuple[int, int, int, int] | None:
    """The cache key of ``path`` (:func:`kmodsim.module.stat_key_of`), None if it cannot be stat'ed."""
    try:
        return stat_key_of(os.stat(path))
    except OSError:
        return None


def _read_one(path: str, max_size: int) -> tuple[bool, object]:
    """(True, (marshalled record, summary, stat key of the file read)) or (False, problem); never
    raises for bad input.

    The record travels marshalled — the cache's own format — so the parent process only moves bytes
    (decoded on use, see ScanResult): unpickling ~25 MB of records in the parent cost more wall time
    than it saved, the parent competing with the workers for the cores."""
    try:
        buf, fmt, fsize, key = open_image(path, max_size)
    except ModuleError as exc:
        return False, exc.problem
    try:
        rec = parse_record(buf, path, fmt, fsize)
        return True, (rec.dumps(), record_summary(rec), key)
    except Exception as exc:  # ElfError, and anything a hostile file provokes: reported, not raised
        from .elf import ElfError

        if isinstance(exc, ElfError):
            return False, str(exc)
        return False, f"unreadable module ({type(exc).__name__}: {exc})"
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def parallel_map(func: Callable[[object], object], items: list, jobs: int | None = None,
                 progress: _progress | None = None) -> list:
    """``[func(x) for x in items]`` in ``jobs`` processes (default: all cores); results must be
    marshal-able (tuples of builtins).

    The items are cut into chunks of a few dozen, whose numbers wait in a pipe: every process —
    the parent and ``jobs - 1`` forked children — takes the next number from the pipe when it is
    free (a 2-byte read: atomic), so the work balances itself even when one core is slowed down
    (as on a shared virtual machine) and callers only order the items largest first. No process
    sits idle collecting results while the cores are busy: a child sends its results back
    marshalled through a pipe once the queue is empty, and a byte per chunk on a shared progress
    pipe. A child that fails only costs time: its chunks are then done by the parent. Children are
    forked before the progress display starts its thread (fork and threads do not mix)."""
    import gc
    import marshal
    import select

    # The work makes ~10^6 short-lived acyclic objects: the cyclic collector would only walk them.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _parallel_map(func, items, jobs, progress, marshal, select)
    finally:
        if enabled:
            gc.enable()


def _run_chunks(func, items: list, size: int, queue: int, prog: int | None) -> list[tuple[int, list]]:
    """Take chunk numbers from the ``queue`` pipe until it is empty; [(number, results)]."""
    done = []
    while True:
        b = os.read(queue, 2)
        if len(b) < 2:
            return done
        n = int.from_bytes(b, "little")
        chunk = items[n * size:(n + 1) * size]
        done.append((n, [func(x) for x in chunk]))
        if prog is not None:
            prog(len(chunk))


def _parallel_map(func, items, jobs, progress, marshal, select) -> list:
    jobs = min(jobs or os.cpu_count() or 1, max(1, len(items) // 32))
    if jobs <= 1 or not hasattr(os, "fork"):
        with progress or _progress(False, 0) as advance:
            out = []
            for x in items:
                out.append(func(x))
                if advance:
                    advance(1)
            return out
    # chunks of 16 to 255 items (a progress byte counts one), at most 16384 of them (their numbers,
    # 2 bytes each, fit a pipe's 64 KiB buffer: written whole before any process starts)
    size = min(255, max(16, -(-len(items) // 16384)))
    count = -(-len(items) // size)
    q_r, q_w = os.pipe()
    os.write(q_w, b"".join(n.to_bytes(2, "little") for n in range(count)))
    os.close(q_w)
    prog_r, prog_w = os.pipe()
    children: dict[int, int] = {}  # result pipe -> pid
    for _ in range(1, jobs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: work, send, leave without running the parent's exit handlers
            status = 1
            try:
                os.close(r)
                os.close(prog_r)
                for other in children:
                    os.close(other)
                done = _run_chunks(func, items, size, q_r, lambda k: os.write(prog_w, bytes((k,))))
                with os.fdopen(w, "wb") as f:
                    f.write(marshal.dumps(done))
                status = 0
            except BaseException:  # noqa: BLE001 - reported by the parent redoing the chunks
                pass
            finally:
                os._exit(status)
        os.close(w)
        children[r] = pid
    os.close(prog_w)
    os.set_blocking(prog_r, False)
    out: list = [None] * len(items)
    got = [False] * count
    with progress or _progress(False, 0) as advance:

        def drain() -> None:
            try:
                data = os.read(prog_r, 4096)
            except BlockingIOError:
                return
            if data and advance:
                advance(sum(data))

        def mine(k: int) -> None:
            if advance:
                advance(k)
                drain()

        chunks = _run_chunks(func, items, size, q_r, mine if advance else None)
        os.close(q_r)
        bufs = {r: bytearray() for r in children}
        open_fds = set(children) | {prog_r}
        while open_fds:  # the progress pipe ends when the last child has exited
            ready, _, _ = select.select(list(open_fds), [], [])
            for fd in ready:
                if fd == prog_r:
                    try:
                        data = os.read(prog_r, 4096)
                    except BlockingIOError:
                        continue
                    if not data:
                        open_fds.discard(prog_r)
                        os.close(prog_r)
                    elif advance:
                        advance(sum(data))
                    continue
                data = os.read(fd, 1 << 20)
                if data:
                    bufs[fd] += data
                    continue
                open_fds.discard(fd)
                os.close(fd)
                _, status = os.waitpid(children[fd], 0)
                if status == 0:
                    try:
                        theirs = marshal.loads(bufs.pop(fd))
                    except (ValueError, EOFError, TypeError):
                        theirs = []
                    if isinstance(theirs, list):
                        chunks += theirs
        for n, res in chunks:
            if isinstance(res, list) and 0 <= n < count and len(res) == len(items[n * size:(n + 1) * size]):
                out[n * size:n * size + len(res)] = res
                got[n] = True
        for n in range(count):  # a child that failed: its chunks are done here
            if not got[n]:
                lo = n * size
                out[lo:lo + size] = [func(x) for x in items[lo:lo + size]]
    return out


def read_many(paths: list[str], jobs: int | None = None, max_size: int = DEFAULT_MAX_SIZE,
              progress: _progress | None = None,
              keys: dict[str, tuple | None] | None = None) -> dict[str, tuple[bool, object]]:
    """Parse ``paths`` in ``jobs`` processes (default: all cores): path -> (True, (marshalled
    record, summary, stat key)) or (False, problem). ``keys`` (stat keys, as a scan with a cache
    has them) spares a second stat of every file."""
    # Largest files first, dealt out in turn (longest-processing-time first): a big .ko.xz never
    # ends up alone at the tail of one process's share. Only the size of compressed files is worth
    # a stat here (decompression dominates their cost); plain ones keep discovery order.
    def size(p: str) -> int:
        key = keys.get(p) if keys is not None else None
        if key is None and not p.endswith(".ko"):
            key = stat_key(p)
        return key[0] if key else 0

    ordered = sorted(paths, key=size, reverse=True) if len(paths) >= 64 else list(paths)
    res = parallel_map(lambda p: _read_one(p, max_size), ordered, jobs, progress)
    return dict(zip(ordered, res, strict=True))


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------

def default_cache_dir() -> str:
    return os.path.join(cache_root(), "scan")


def file_fingerprint(paths: Iterable[str]) -> list[tuple[str, tuple | None]]:
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

    def __init__(self, root: str, cache_dir: str | None = None, schema: tuple = RECORD_VERSION) -> None:
        self.root = os.path.realpath(root)
        self.schema = schema
        d = cache_dir or default_cache_dir()
        # a name from the root (the file also records the root: a collision only costs a rebuild)
        raw = self.root.encode("utf-8", "surrogateescape")
        h = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}"
        v = zlib.crc32(repr(schema).encode())
        self.file = os.path.join(d, f"{h}.v{CACHE_FORMAT}-{v:08x}")
        self.entries: dict[str, tuple] = {}  # path -> (key, summary, offset, length, crc) or (key, summary, blob)
        self.dirty = False
        self.problem = ""  # why a cache file was discarded, if it was
        self._map = None  # the loaded file, mapped: blobs are read from it on demand
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

    def summary(self, path: str, key: tuple | None) -> tuple | None:
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

    def get(self, path: str, key: tuple | None) -> tuple[bytes, tuple] | None:
        """(marshalled record, summary) if ``path`` is cached with this stat key."""
        summ = self.summary(path, key)
        if summ is None:
            return None
        blob = self.blob(path)
        return None if blob is None else (blob, summ)

    def put(self, path: str, key: tuple, blob: bytes, summary: tuple) -> None:
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
        index: dict[str, tuple] = {}
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
            print(f"kmodsim: warning: cannot write cache {self.file}: {exc.strerror or exc}", file=sys.stderr)
        self.dirty = False


# ---------------------------------------------------------------------------------------------
# Scan
# ---------------------------------------------------------------------------------------------

def scan(paths: Iterable[str], *, jobs: int | None = None, use_cache: bool = True,
         cache_dir: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
         progress: bool | None = None, config_paths: Iterable[str] | None = None) -> ScanResult:
    """Read every module named by ``paths`` (files, or trees as depmod finds their modules with
    the depmod.d configuration of ``config_paths``). Problems are collected, not raised."""
    errors: list[ScanProblem] = []
    ignored: list[str] = []
    files = expand_paths(paths, errors, config_paths, ignored)
    roots = sorted({r for r, _ in files})
    caches: dict[str, ScanCache] = {}
    if use_cache:
        for r in roots:
            c = ScanCache(r, cache_dir)
            c.load()
            caches[r] = c

    items: dict[str, tuple] = {}
    todo: list[tuple[str, str, tuple | None]] = []
    order: list[str] = []  # discovery order; a file named twice is read once
    seen: set[str] = set()
    keys: dict[str, tuple | None] = {}
    for root, f in files:
        if f in seen:
            continue
        seen.add(f)
        order.append(f)
        key = keys[f] = stat_key(f) if use_cache else None  # without a cache: the readers' fstat
        summ = caches[root].summary(f, key) if use_cache else None
        if summ is not None:
            items[f] = (f, _Cached(caches[root], f, max_size), summ)
        else:
            todo.append((root, f, key))

    result = ScanResult(root=roots[0] if len(roots) == 1 else "", cached=len(items), parsed=len(todo))
    if todo:
        parsed = read_many([f for _, f, _ in todo], jobs, max_size, _progress(progress, len(todo)), keys)
        for root, f, key in todo:
            ok, val = parsed[f]
            if ok:
                blob, summ, key = val  # the key of the content read (the stat above may be older)
                keys[f] = key
                items[f] = (f, blob, summ)
                if use_cache:
                    caches[root].put(f, key, blob, summ)
            else:
                errors.append(ScanProblem(f, val))
    if use_cache:
        for r, c in caches.items():
            c.prune({f for root, f in files if root == r})
            c.save()
    result.items = [items[f] for f in order if f in items]
    result.keys = keys
    result.errors = errors
    result.ignored = ignored
    return result


class _progress:
    """A rich progress bar on a terminal; nothing when piped (or when ``enabled`` is False)."""

    def __init__(self, enabled: bool | None, total: int) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.enabled = self.enabled and total >= 200
        self.total = total
        self._p = None

    def __enter__(self) -> Callable[[int], None] | None:
        if not self.enabled:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        # on stderr, the terminal it checked: stdout may carry the output (scan --json, depmod -n)
        self._p = Progress(TextColumn("reading modules"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), transient=True, console=Console(stderr=True))
        self._p.start()
        task = self._p.add_task("scan", total=self.total)
        return lambda n: self._p.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.stop()
