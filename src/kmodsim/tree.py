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

Past one machine (:func:`scan_groups` with a scheduler), each path is one task on a
dask.distributed cluster (:mod:`kmodsim.cluster`): discovered and read on its worker, through that
worker's cache, and sent back whole; the parts are merged into what one scan of every path gives.

An entry is kept only under git's racy-clean rule (:mod:`kmodsim.cache`, where every cache's
shared pieces live): a module changed in the second its run started to read is read again next time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from .module import (
    DEFAULT_MAX_SIZE,
    MODULE_SUFFIXES,
    Module,
    ModuleError,
    ModuleRecord,
    open_image,
    parse_record,
)
from .parallel import Progress, parallel_map
from .scan_cache import ScanCache, stat_key


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
        # (path, record — in the cache, marshalled, or a plain tuple —, summary)
        self.items: list[tuple[str, _Cached | bytes | tuple, tuple[str, int, int]]] = []
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
            self._records = [ModuleRecord.loads(r) if isinstance(r, bytes) else ModuleRecord.of(r)
                             if isinstance(r, tuple) else r.record() for _p, r, _s in self.items]
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
                 ignored: list[str] | None = None, trees: set[str] | None = None) -> list[tuple[str, str]]:
    """(root, file) for every module named on a command line: files as given (their root, their
    directory), directories by depmod's discovery (:func:`find_modules`; their roots added to
    ``trees``)."""
    out: list[tuple[str, str]] = []
    for p in paths:
        if os.path.isdir(p):
            try:
                root = module_root(p)
            except ValueError as exc:
                errors.append(ScanProblem(p, str(exc)))
                continue
            if trees is not None:
                trees.add(root)
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

def _read_one(path: str, max_size: int, marshalled: bool = True) -> tuple[bool, Any]:
    """(True, (record, summary, stat key of the file read)) or (False, problem); never raises for
    bad input.

    With ``marshalled`` (a scan that fills its cache) the record travels marshalled — the cache's
    own format — so the parent process only moves bytes (decoded on use, see ScanResult):
    unpickling ~25 MB of records in the parent cost more wall time than it saved, the parent
    competing with the workers for the cores. Without a cache it is the record's plain tuple: the
    workers' results are marshalled once on their way anyway, and the parent's own are used as
    they are (no dumps and loads of half the tree)."""
    try:
        buf, fmt, fsize, key = open_image(path, max_size)
    except ModuleError as exc:
        return False, exc.problem
    try:
        rec = parse_record(buf, path, fmt, fsize)
        return True, (rec.dumps() if marshalled else tuple(rec), record_summary(rec), key)
    except Exception as exc:  # ElfError, and anything a hostile file provokes: reported, not raised
        from .elf import ElfError

        if isinstance(exc, ElfError):
            return False, str(exc)
        return False, f"unreadable module ({type(exc).__name__}: {exc})"
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def read_many(paths: list[str], jobs: int | None = None, max_size: int = DEFAULT_MAX_SIZE,
              progress: Progress | None = None,
              keys: dict[str, tuple | None] | None = None,
              meanwhile: Callable[[], object] | None = None,
              marshalled: bool = True) -> dict[str, tuple[bool, Any]]:
    """Parse ``paths`` in ``jobs`` processes (default: all cores): path -> (True, (record —
    marshalled, else its plain tuple —, summary, stat key)) or (False, problem). ``keys`` (stat
    keys, as a scan with a cache has them) spares a second stat of every file."""
    # Largest files first, dealt out in turn (longest-processing-time first): a big .ko.xz never
    # ends up alone at the tail of one process's share. Only the size of compressed files is worth
    # a stat here (decompression dominates their cost); plain ones keep discovery order.
    def size(p: str) -> int:
        key = keys.get(p) if keys is not None else None
        if key is None and not p.endswith(".ko"):
            key = stat_key(p)
        return key[0] if key else 0

    ordered = sorted(paths, key=size, reverse=True) if len(paths) >= 64 else list(paths)
    res = parallel_map(lambda p: _read_one(p, max_size, marshalled), ordered, jobs, progress, meanwhile)
    return dict(zip(ordered, res, strict=True))


# ---------------------------------------------------------------------------------------------
# Scan
# ---------------------------------------------------------------------------------------------

class _Part(NamedTuple):
    """What one scan of some paths found, before it is a :class:`ScanResult`: the unit a cluster
    task sends back (:func:`scan_groups`), and what :func:`_merge` joins."""

    files: list[str]  # every module file named, in discovery order, once
    read: dict[str, tuple]  # file -> (record, summary, came from the cache) of a module read
    failed: dict[str, str]  # file -> why it could not be read
    keys: dict[str, tuple | None]  # file -> stat key (of the content read, for a module read)
    errors: list[ScanProblem]  # what discovery met (a path it cannot use), in path order
    ignored: list[str]
    roots: list[str]

    def standalone(self) -> _Part:
        """The same part with every record in it (marshalled), none left in this host's scan
        cache: what another process can use."""
        if not any(isinstance(r, _Cached) for r, _s, _c in self.read.values()):
            return self
        read = {f: ((r.record().dumps() if isinstance(r, _Cached) else r), summ, hit)
                for f, (r, summ, hit) in self.read.items()}
        for cache in {id(r.cache): r.cache for r, _s, _h in self.read.values() if isinstance(r, _Cached)}.values():
            cache.save()  # records found damaged were read again: write them back
        return self._replace(read=read)


def _resolved(paths: Iterable[str], resolve: Callable[[str], str] | None, errors: list[ScanProblem]) -> list[str]:
    """``paths`` through ``resolve`` (e.g. :func:`kmodsim.debian.resolve_input`); a name it cannot
    resolve is an input problem naming it."""
    if resolve is None:
        return list(paths)
    from .errors import Error

    out = []
    for p in paths:
        try:
            out.append(resolve(p))
        except Error as exc:
            errors.append(ScanProblem(p, str(exc).removeprefix(f"{p}: ")))
    return out


def _scan_part(paths: Iterable[str], *, resolve: Callable[[str], str] | None, jobs: int | None, use_cache: bool,
               cache_dir: str | None, max_size: int, progress: bool | None, config_paths: Iterable[str] | None,
               meanwhile: Callable[[], object] | None) -> _Part:
    """Discover and read every module of ``paths`` (one parallel read of all their files)."""
    errors: list[ScanProblem] = []
    ignored: list[str] = []
    trees: set[str] = set()
    files = expand_paths(_resolved(paths, resolve, errors), errors, config_paths, ignored, trees)
    roots = sorted({r for r, _ in files})
    caches: dict[str, ScanCache] = {}
    if use_cache:
        for r in roots:
            c = ScanCache(r, cache_dir)
            c.load()
            caches[r] = c

    read: dict[str, tuple] = {}
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
            read[f] = (_Cached(caches[root], f, max_size), summ, True)
        else:
            todo.append((root, f, key))

    failed: dict[str, str] = {}
    if todo:
        parsed = read_many([f for _, f, _ in todo], jobs, max_size, Progress(progress, len(todo)), keys, meanwhile,
                           marshalled=use_cache)
        for root, f, _stat in todo:
            ok, val = parsed[f]
            if ok:
                blob, summ, read_key = val  # the key of the content read (the stat above may be older)
                keys[f] = read_key
                read[f] = (blob, summ, False)
                if use_cache:
                    caches[root].put(f, read_key, blob, summ)
            else:
                failed[f] = val
    if use_cache:
        for r, c in caches.items():
            if r in trees:  # a tree's cache holds its modules (and files of it named), no more
                c.prune({f for root, f in files if root == r})
            else:  # a directory only files were named in (other runs, other tasks: other files)
                c.prune({f for f in c.entries if f in seen or os.path.lexists(f)})
            c.save()
    return _Part(order, read, failed, keys, errors, ignored, roots)


def _merge(parts: Sequence[_Part]) -> ScanResult:
    """One result of parts in order, as one scan of all their paths gives it: a file found by two
    parts taken from the first, the discovery problems of every part before the modules that could
    not be read (in discovery order)."""
    roots = sorted({r for part in parts for r in part.roots})
    items: list[tuple[str, Any, tuple[str, int, int]]] = []
    unread: list[ScanProblem] = []
    keys: dict[str, tuple | None] = {}
    cached = parsed = 0
    for part in parts:
        for f in part.files:
            if f in keys:
                continue
            keys[f] = part.keys.get(f)
            if f in part.read:
                rec, summ, from_cache = part.read[f]
                items.append((f, rec, summ))
                cached += from_cache
                parsed += not from_cache
            else:
                unread.append(ScanProblem(f, part.failed[f]))
                parsed += 1
    result = ScanResult(root=roots[0] if len(roots) == 1 else "", cached=cached, parsed=parsed)
    result.items = items
    result.keys = keys
    result.errors = [e for part in parts for e in part.errors] + unread
    result.ignored = [p for part in parts for p in part.ignored]
    return result


def _scan_task(path: str, **kw: Any) -> _Part:
    """One path's scan as a cluster task: its modules read on the worker (its own scan cache), the
    result standing alone."""
    return _scan_part([path], progress=False, meanwhile=None, **kw).standalone()


def scan_groups(groups: Sequence[Sequence[str]], *, jobs: int | None = None, use_cache: bool = True,
                cache_dir: str | None = None, max_size: int = DEFAULT_MAX_SIZE, progress: bool | None = None,
                config_paths: Iterable[str] | None = None, meanwhile: Callable[[], object] | None = None,
                scheduler: str | None = None, resolve: Callable[[str], str] | None = None) -> list[ScanResult]:
    """:func:`scan` of each group of paths (``kmodsim check``: the modules checked, the ``--modules``
    tree), read together. Without ``scheduler``, one scan per group, in this process and its
    worker processes. With one (:func:`kmodsim.cluster.map_tasks`: ``tcp://HOST:PORT`` or
    ``local:N``), every path of every group is one task on the cluster, each discovering and
    reading its modules on its worker (its own scan cache, ``jobs`` processes, 1 unless given:
    the workers are the parallelism), then ``resolve`` there too; the tasks' results are merged
    in order into what the scan here gives (a file named twice is taken once, from the first
    path naming it). ``meanwhile`` is called here: while the worker processes read, or on a
    cluster once the first task is done, while the others run."""
    kw: dict[str, Any] = dict(resolve=resolve, use_cache=use_cache, cache_dir=cache_dir, max_size=max_size,
                              config_paths=None if config_paths is None else list(config_paths))
    groups = [list(g) for g in groups]
    flat = [p for g in groups for p in g]
    if not scheduler or not flat:
        return [_merge([_scan_part(g, jobs=jobs, progress=progress, meanwhile=meanwhile, **kw)]) for g in groups]
    from functools import partial

    from .cluster import map_tasks

    def finished(done: int, _n: int, _path: str) -> None:  # the caller's work while the other tasks run
        if done == 1 and meanwhile is not None:
            meanwhile()

    parts = map_tasks(partial(_scan_task, jobs=jobs or 1, **kw), flat, scheduler, finished)
    out = []
    for g in groups:
        out.append(_merge(parts[:len(g)]))
        parts = parts[len(g):]
    return out


def scan(paths: Iterable[str], *, jobs: int | None = None, use_cache: bool = True,
         cache_dir: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
         progress: bool | None = None, config_paths: Iterable[str] | None = None,
         meanwhile: Callable[[], object] | None = None, scheduler: str | None = None,
         resolve: Callable[[str], str] | None = None) -> ScanResult:
    """Read every module named by ``paths`` (files, or trees as depmod finds their modules with
    the depmod.d configuration of ``config_paths``). Problems are collected, not raised.
    ``meanwhile()``: the caller's other work, done while worker processes read modules (called
    only when some module is read: :func:`kmodsim.parallel.parallel_map`). ``resolve``: a path's
    name to the path (e.g. :func:`kmodsim.debian.resolve_input`; a name it cannot resolve is one
    of the problems). ``scheduler``: each path one task on a cluster (:func:`scan_groups`)."""
    return scan_groups([list(paths)], jobs=jobs, use_cache=use_cache, cache_dir=cache_dir, max_size=max_size,
                       progress=progress, config_paths=config_paths, meanwhile=meanwhile, scheduler=scheduler,
                       resolve=resolve)[0]
