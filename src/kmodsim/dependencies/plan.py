"""What a depmod run reads, decided before any module is opened (configuration, discovery, the
kernel symbol file, stat keys), and the records of its modules (read in parallel, cached)."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..discovery import Config, Discovery, Found, modname
from ..errors import Error
from ..messages import DepmodMessage
from ..module import DEFAULT_MAX_SIZE
from ..scan_cache import ScanCache, StatKey, default_cache_dir, stat_key
from .kmod_versions import KmodVersion, kmod_version
from .kmod_view import RECORD_VERSION, KmodRecord, read_records

# The directory of the depmod caches (a name only: each file is checked against RECORD_VERSION,
# the derived version of kmod_view.KmodRecord, and carries a digest of it in its name).
CACHE_DIRNAME = "depmod-v1"


class DepmodError(Error):
    """A problem that stops the run; ``str()`` is ``<file>: <problem>``, and ``depmod`` what kmod
    30's depmod prints when it stops there (its ``ERROR``/``FATAL`` lines, tools/depmod.c), for
    ``kmodsim depmod``, which exits 1 with it as depmod does."""

    def __init__(self, message: str, *depmod: DepmodMessage) -> None:
        super().__init__(message)
        self.depmod: tuple[DepmodMessage, ...] = depmod or (DepmodMessage("fatal", (message,)),)



# ---------------------------------------------------------------------------------------------
# Building a run
# ---------------------------------------------------------------------------------------------


def tree_dirname(basedir: str | None, kver: str, moduledir: str | None = None) -> str:
    """``<basedir>/lib/modules/<kver>``, spelled as depmod spells it (the base made absolute
    against the working directory, nothing normalised). ``moduledir`` (kmod 34's ``-m``, c36ddb6,
    a9e69c0) replaces ``lib/modules``: always below the base, its leading ``/`` dropped. kmod 34's
    ``-o OUTDIR`` names the output tree the same way, OUTDIR in place of the base."""
    root = ""
    if basedir:
        root = basedir if basedir.startswith("/") else f"{os.getcwd()}/{basedir}"
    return f"{root}/{'lib/modules' if moduledir is None else moduledir.lstrip('/')}/{kver}"


def cache_dir_for(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    return os.path.join(os.path.dirname(default_cache_dir()), CACHE_DIRNAME)


class Plan(NamedTuple):
    """What a run reads, known before any module is opened: the tree, the modules chosen (in
    discovery order) and the stat keys of every input."""

    dirname: str
    kver: str
    found: list[Found]
    keys: dict[str, StatKey | None]
    cfg: Config | None
    ksrc: tuple[str, str] | None  # ("symvers" | "system_map", path)
    errors: list[tuple[str, str]]
    files_mode: bool
    kmod: KmodVersion  # the kmod whose depmod is mirrored (kmod_versions)

    @property
    def cache_root(self) -> str:
        return self.dirname if not self.files_mode else os.path.join(self.dirname, ".files")


def plan(basedir: str | None = None, kver: str | None = None, *, files: list[str] | None = None,
         symvers: str | None = None, system_map: str | None = None, config_paths: list[str] | None = None,
         dirname: str | None = None, stat: bool = True, kmod: KmodVersion | None = None) -> Plan:
    """Configuration and discovery (and, with ``stat``, the stat keys the cache needs) as the
    depmod of ``kmod`` (default: :func:`kmod_version`'s) does them. Raises :class:`DepmodError`
    when the run cannot start."""
    kmod = kmod or kmod_version()
    kver = kver or os.uname().release
    dirname = dirname or tree_dirname(basedir, kver)
    ksrc = ("symvers", symvers) if symvers else ("system_map", system_map) if system_map else None
    if ksrc is not None:
        try:
            with open(ksrc[1], "rb"):
                pass
        except IsADirectoryError:
            pass  # depmod's fopen() takes a directory; its first fgets() ends the (empty) file
        except OSError as exc:
            raise DepmodError(f"{ksrc[1]}: {exc.strerror or exc}",
                              DepmodMessage("load-kernel-symbols", (ksrc[1], str(exc.strerror or exc)))) from None
    errors: list[tuple[str, str]] = []
    cfg = None
    if files is None:
        try:  # depmod_modules_search_path()'s opendir() of the tree, then do_depmod()'s CRIT
            os.scandir(dirname).close()
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise DepmodError(f"{dirname}: cannot read directory: {why}", DepmodMessage("open-directory", (dirname, why)),
                              DepmodMessage("search-modules", (why,))) from None
        cfg = Config.load(list(kmod.cfg_paths) if config_paths is None else config_paths, kver)
        disc = Discovery(dirname, cfg)
        disc.run()
        if disc.errors and disc.errors[0][0] == dirname:
            raise DepmodError(f"{dirname}: {disc.errors[0][1]}")
        errors.extend(disc.errors)
        found = list(disc.by_name.values())
    else:
        found = []
        names: dict[str, str] = {}
        dl = len(dirname)
        for p in files:  # do_depmod(): each argument in turn, the first failure stops the run
            if not p.startswith("/"):
                raise DepmodError(f"{p}: not an absolute path", DepmodMessage("not-absolute", (p,)))
            try:  # kmod_module_new_from_path() stat()s the file
                os.stat(p)
            except OSError as exc:
                why = exc.strerror or str(exc)
                raise DepmodError(f"{p}: {why}", DepmodMessage("create-module", (p, why))) from None
            rel = p[dl + 1:] if p.startswith(dirname) and p[dl:dl + 1] == "/" else None
            n = modname(os.path.basename(p))
            if n in names:
                if names[n] == p:  # the same kmod_module again: depmod_module_add()'s hash refuses it
                    lines = (DepmodMessage("hash-add-unique", (n,)), DepmodMessage("add-module", (p,)))
                else:  # libkmod's pool refuses a second path for one name (its ERR names its source line)
                    where = "../libkmod/libkmod-module.c:428 kmod_module_new_from_path() "
                    lines = (DepmodMessage("module-exists", (where if kmod.libkmod_log_location else "", n, p, names[n])),
                             DepmodMessage("create-module", (p, "File exists")))
                raise DepmodError(f"{p}: a module named {n} was given already", *lines)
            names[n] = p
            found.append(Found(p, rel, n))
    keys = {f.path: stat_key(f.path) for f in found} if stat else {}
    return Plan(dirname, kver, found, keys, cfg, ksrc, errors, files is not None, kmod)


def plan_keys(pl: Plan) -> dict[str, StatKey | None]:
    if len(pl.keys) != len(pl.found):
        pl.keys.update((f.path, stat_key(f.path)) for f in pl.found)
    return pl.keys


def load_records(pl: Plan, jobs: int | None = None, use_cache: bool = True, cache_dir: str | None = None,
                 max_size: int = DEFAULT_MAX_SIZE, crcs: bool = True,
                 progress: bool | None = False) -> dict[str, KmodRecord]:
    """Records of every found module, from the cache when its file is unchanged. Without the cache
    and without ``crcs`` (no ``-e``) the CRCs imports expect are not read. ``progress``: a bar
    while the others are read (None: on a terminal only, as ``scan``)."""
    recs: dict[str, KmodRecord] = {}
    cache = None
    todo = []
    if use_cache:
        keys = plan_keys(pl)
        cache = ScanCache(pl.cache_root, cache_dir_for(cache_dir), RECORD_VERSION)
        cache.load()
        hits: list[str] = []
        blobs: list[bytes] = []
        for f in pl.found:
            hit = cache.get(f.path, keys[f.path])
            if hit is not None:
                hits.append(f.path)
                blobs.append(hit[0])
            else:
                todo.append(f.path)
        try:
            loaded = KmodRecord.loads_all(blobs)
        except (ValueError, EOFError, TypeError):  # an unreadable blob: each read on its own
            loaded = []
            for b in blobs:
                try:
                    loaded.append(KmodRecord.loads(b))
                except (ValueError, EOFError, TypeError):
                    loaded.append(None)
        for p, rec in zip(hits, loaded, strict=True):
            if rec is not None:
                recs[p] = rec
            else:
                todo.append(p)
    else:
        todo = [f.path for f in pl.found]
    if todo:
        recs.update(read_records(todo, jobs, max_size, crcs or use_cache, progress))
    if cache is not None:
        for p in todo:
            k = keys[p]
            if k is not None:
                cache.put(p, k, recs[p].dumps(), ())
        cache.prune(set(keys))
        cache.save()
    return recs
