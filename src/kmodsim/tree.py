"""Finding and reading every module of a tree: depmod's discovery, worker processes, a cache.

Discovery mirrors kmod's depmod (tools/depmod.c, ``depmod_modules_search_dir`` and
``should_exclude_dir``): a recursive walk that skips ``build``, ``source``, ``.`` and ``..``,
follows symbolic links, and keeps files ending in ``.ko``, ``.ko.xz``, ``.ko.zst`` or ``.ko.gz``.
Modules listed in ``modules.order`` come first, in that order (``depmod_modules_sort``), the rest
after them, by path.

The cache (:class:`ScanCache`) maps a path to the parsed module, keyed by size, mtime_ns, ctime_ns
and inode. It is one file per tree, written atomically (temporary file + rename), carrying a format
version and a digest of its payload: a torn, truncated or tampered cache is detected and rebuilt,
an entry whose file changed is re-read. The cache can only make a scan faster, never different.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .debian import cache_root
from .module import DEFAULT_MAX_SIZE, MODULE_SUFFIXES, Module, ModuleError, parse_record, read_image

CACHE_MAGIC = b"KMSCACHE"
# Bump when the parser or the record layout changes: older caches are then rebuilt.
CACHE_FORMAT = 2


@dataclass
class ScanError:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class ScanResult:
    """Modules found by a scan, in discovery order, and the problems met.

    Cached modules stay marshalled until used: :attr:`summaries` (name, export and import
    counts) needs no decoding at all, :attr:`records` and :attr:`modules` decode on first use.
    """

    root: str
    items: list[tuple[str, tuple | bytes, tuple[str, int, int]]] = field(default_factory=list)
    keys: dict[str, tuple | None] = field(default_factory=dict)  # path -> stat key (size, mtime_ns, ctime_ns, ino)
    errors: list[ScanError] = field(default_factory=list)
    cached: int = 0
    parsed: int = 0
    _records: list[tuple] | None = None
    _modules: list[Module] | None = None

    @property
    def summaries(self) -> list[tuple[str, str, int, int]]:
        """(path, name, number of exports, number of imports) per module."""
        return [(path, *summ) for path, _r, summ in self.items]

    @property
    def records(self) -> list[tuple]:
        if self._records is None:
            self._records = [marshal.loads(r) if isinstance(r, bytes) else r for _p, r, _s in self.items]
        return self._records

    @property
    def modules(self) -> list[Module]:
        if self._modules is None:
            self._modules = [Module.from_record(r) for r in self.records]
        return self._modules


def record_summary(rec: tuple) -> tuple[str, int, int]:
    return (rec[2], rec[3].count("\0"), rec[7].count("\0"))


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


def find_modules(root: str, errors: list[ScanError] | None = None) -> list[str]:
    """Module files under ``root``, in depmod's order (modules.order first)."""
    found: list[str] = []
    seen_dirs: set[tuple[int, int]] = set()

    def walk(d: str, via_link: bool) -> None:
        try:
            if via_link:  # only a symlink can close a loop: remember real directories reached by one
                st = os.stat(d)
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    return
                seen_dirs.add(key)
            entries = list(os.scandir(d))
        except OSError as exc:
            if errors is not None:
                errors.append(ScanError(d, f"cannot read directory: {exc.strerror or exc}"))
            return
        subdirs = []
        for e in entries:
            name = e.name
            if name.endswith(MODULE_SUFFIXES):
                try:
                    if not e.is_dir():  # follows symlinks, like depmod's fstatat()
                        found.append(e.path)
                        continue
                except OSError:
                    found.append(e.path)  # a dangling link: reported when it is read
                    continue
            elif name in ("build", "source"):
                continue
            try:
                if e.is_dir():
                    subdirs.append((e.path, via_link or e.is_symlink()))
            except OSError:
                pass
        for s, link in sorted(subdirs):
            walk(s, link)

    try:
        st = os.stat(root)
        seen_dirs.add((st.st_dev, st.st_ino))  # a link back to the root closes a loop too
    except OSError:
        pass
    walk(root, False)
    return order_modules(root, found)


def order_modules(root: str, paths: list[str]) -> list[str]:
    """Sort as depmod does: entries of ``modules.order`` (matched on the path relative to the root,
    with the compression suffix replaced by ``.ko``) first in file order, then the others by path."""
    order: dict[str, int] = {}
    try:
        with open(os.path.join(root, "modules.order"), encoding="utf-8", errors="surrogateescape") as f:
            for i, line in enumerate(f):
                line = line.rstrip("\n")
                if line:
                    order.setdefault(line, i)
    except OSError:
        pass
    big = len(order) + 1

    prefix = os.path.join(root, "")

    def key(p: str) -> tuple[int, str]:
        rel = p[len(prefix):] if p.startswith(prefix) else os.path.relpath(p, root)
        for suf in (".ko.xz", ".ko.zst", ".ko.gz"):
            if rel.endswith(suf):
                rel = rel[: -len(suf) + 3]
                break
        return (order.get(rel, big), rel)

    return sorted(paths, key=key)


def expand_paths(paths: Iterable[str], errors: list[ScanError]) -> list[tuple[str, str]]:
    """(root, file) for every module named on a command line: files as given, directories walked."""
    out: list[tuple[str, str]] = []
    for p in paths:
        if os.path.isdir(p):
            try:
                root = module_root(p)
            except ValueError as exc:
                errors.append(ScanError(p, str(exc)))
                continue
            out.extend((root, f) for f in find_modules(root, errors))
        else:
            out.append((os.path.dirname(p) or ".", p))
    return out


# ---------------------------------------------------------------------------------------------
# Reading, in parallel
# ---------------------------------------------------------------------------------------------

def _stat_key(path: str) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _read_one(path: str, max_size: int) -> tuple[bool, object]:
    """(True, (marshalled record, summary)) or (False, problem); never raises for bad input.

    The record travels marshalled — the cache's own format — so the parent process only moves bytes
    (decoded on use, see ScanResult): unpickling ~25 MB of records in the parent cost more wall time
    than it saved, the parent competing with the workers for the cores."""
    try:
        buf, fmt, fsize = read_image(path, max_size)
    except ModuleError as exc:
        return False, exc.problem
    try:
        rec = parse_record(buf, path, fmt, fsize)
        return True, (marshal.dumps(rec), record_summary(rec))
    except Exception as exc:  # ElfError, and anything a hostile file provokes: reported, not raised
        from .elf import ElfError

        if isinstance(exc, ElfError):
            return False, str(exc)
        return False, f"unreadable module ({type(exc).__name__}: {exc})"
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def _read_chunk(args: tuple[list[str], int]) -> list[tuple[str, bool, object]]:
    paths, max_size = args
    return [(p, *_read_one(p, max_size)) for p in paths]


def read_many(paths: list[str], jobs: int | None = None, max_size: int = DEFAULT_MAX_SIZE,
              progress: Callable[[int], None] | None = None) -> dict[str, tuple[bool, object]]:
    """Parse ``paths`` in ``jobs`` worker processes (default: all cores)."""
    jobs = jobs or os.cpu_count() or 1
    out: dict[str, tuple[bool, object]] = {}
    if jobs <= 1 or len(paths) < 64:
        for p in paths:
            out[p] = _read_one(p, max_size)
            if progress:
                progress(1)
        return out
    import multiprocessing as mp

    # Largest files first, in small chunks handed out as workers free up (longest-processing-time
    # first): a big .ko.xz never ends up alone at the tail of one worker's queue.
    def size(p: str) -> int:
        try:
            return os.stat(p).st_size
        except OSError:
            return 0

    ordered = sorted(paths, key=size, reverse=True)
    step = max(1, min(32, len(ordered) // (jobs * 16)))
    chunks = [(ordered[i:i + step], max_size) for i in range(0, len(ordered), step)]
    ctx = mp.get_context("fork")
    with ctx.Pool(jobs) as pool:
        for res in pool.imap_unordered(_read_chunk, chunks):
            for p, ok, val in res:
                out[p] = (ok, val)
            if progress:
                progress(len(res))
    return out


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------

def default_cache_dir() -> str:
    return os.path.join(cache_root(), "scan")


def file_fingerprint(paths: Iterable[str]) -> list[tuple[str, tuple | None]]:
    """(path, stat key) of each path that exists, for cache keys of derived results."""
    return [(p, _stat_key(p)) for p in paths]


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


class ScanCache:
    """One file per scanned root.

    Layout: ``CACHE_MAGIC``, the format (u32), the crc32 of the payload (u32), then the marshalled
    payload ``(root, {path: (stat key, crc32 of blob, summary, blob)})`` where ``blob`` is the
    marshalled module record, decoded only when the module is used. A file that fails any check is
    discarded whole (and rebuilt by the next save).
    """

    def __init__(self, root: str, cache_dir: str | None = None) -> None:
        self.root = os.path.realpath(root)
        d = cache_dir or default_cache_dir()
        h = hashlib.blake2b(self.root.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()
        self.file = os.path.join(d, f"{h}.v{CACHE_FORMAT}")
        self.entries: dict[str, tuple] = {}
        self.dirty = False
        self.problem = ""  # why a cache file was discarded, if it was

    def load(self) -> None:
        try:
            with open(self.file, "rb") as f:
                blob = f.read()
        except OSError:
            return
        head = len(CACHE_MAGIC) + 8
        if len(blob) < head or not blob.startswith(CACHE_MAGIC):
            self._discard("not a kmodsim cache file")
            return
        fmt = int.from_bytes(blob[len(CACHE_MAGIC):len(CACHE_MAGIC) + 4], "little")
        if fmt != CACHE_FORMAT:
            self._discard(f"format {fmt}, expected {CACHE_FORMAT}")
            return
        crc = int.from_bytes(blob[len(CACHE_MAGIC) + 4:head], "little")
        payload = memoryview(blob)[head:]
        if zlib.crc32(payload) != crc:
            self._discard("checksum mismatch (torn or corrupted file)")
            return
        try:
            root, entries = marshal.loads(payload)
        except (ValueError, EOFError, TypeError):
            self._discard("unreadable payload")
            return
        if root != self.root or not isinstance(entries, dict):
            self._discard("belongs to another tree")
            return
        self.entries = entries

    def _discard(self, why: str) -> None:
        self.problem = why
        self.entries = {}
        self.dirty = True

    def get(self, path: str, key: tuple | None) -> tuple[bytes, tuple] | None:
        """(marshalled record, summary) if ``path`` is cached with this stat key."""
        e = self.entries.get(path)
        if e is None or key is None or e[0] != key:
            return None
        return e[3], e[2]

    def put(self, path: str, key: tuple, blob: bytes, summary: tuple) -> None:
        """Cache a marshalled module record (``marshal.dumps(Module.to_record())``)."""
        self.entries[path] = (key, zlib.crc32(blob), summary, blob)
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
        payload = marshal.dumps((self.root, self.entries))
        try:
            write_atomic(self.file, CACHE_MAGIC + CACHE_FORMAT.to_bytes(4, "little")
                         + zlib.crc32(payload).to_bytes(4, "little") + payload)
        except OSError as exc:  # a cache that cannot be written only costs time
            print(f"kmodsim: warning: cannot write cache {self.file}: {exc.strerror or exc}", file=sys.stderr)
        self.dirty = False


# ---------------------------------------------------------------------------------------------
# Scan
# ---------------------------------------------------------------------------------------------

def scan(paths: Iterable[str], *, jobs: int | None = None, use_cache: bool = True,
         cache_dir: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
         progress: bool | None = None) -> ScanResult:
    """Read every module named by ``paths`` (files or trees). Problems are collected, not raised."""
    errors: list[ScanError] = []
    files = expand_paths(paths, errors)
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
        key = keys[f] = _stat_key(f)
        hit = caches[root].get(f, key) if use_cache else None
        if hit is not None:
            items[f] = (f, hit[0], hit[1])
        else:
            todo.append((root, f, key))

    result = ScanResult(root=roots[0] if len(roots) == 1 else "", cached=len(items), parsed=len(todo))
    if todo:
        with _progress(progress, len(todo)) as advance:
            parsed = read_many([f for _, f, _ in todo], jobs, max_size, advance)
        for root, f, key in todo:
            ok, val = parsed[f]
            if ok:
                blob, summ = val
                items[f] = (f, blob, summ)
                if use_cache and key is not None:
                    caches[root].put(f, key, blob, summ)
            else:
                errors.append(ScanError(f, val))
    if use_cache:
        for r, c in caches.items():
            c.prune({f for root, f in files if root == r})
            c.save()
    result.items = [items[f] for f in order if f in items]
    result.keys = keys
    result.errors = errors
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
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("reading modules"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), transient=True)
        self._p.start()
        task = self._p.add_task("scan", total=self.total)
        return lambda n: self._p.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._p is not None:
            self._p.stop()
