"""depmod's discovery of a module tree, the one every command uses.

kmod 30's rules (``tools/depmod.c``: ``cfg_load``, ``depmod_modules_search``,
``depmod_modules_search_dir``, ``depmod_module_is_higher_priority``, ``depmod_modules_sort``):

* depmod.d (``/etc/depmod.d``, ``/run/depmod.d``, ``/usr/local/lib/depmod.d``, ``/lib/depmod.d``, or
  the paths of ``-C``/``--config``): ``search`` (priority of subdirectories; ``built-in`` is the
  rest of the tree, ``external`` the external directories; default ``updates`` first), ``override
  MODULE KVER SUBDIR``, ``external KVER DIR``, ``exclude DIR``.
* A recursive walk of ``<basedir>/lib/modules/<kver>`` in ``readdir`` order, then of each external
  directory, skipping ``.``, ``..``, ``build``, ``source`` and the ``exclude`` directories, keeping
  files that end in ``.ko``, ``.ko.xz`` or ``.ko.zst``. The module name is the file name up to its
  first ``.``, ``-`` turned into ``_``. Of two files with one name, the one ``override`` names wins,
  else the one in the higher-priority ``search`` directory (so ``updates/`` over ``kernel/`` and
  ``extra/``), else the first one found stays.
* ``.ko.gz``: Debian 12's kmod 30 is built ``+XZ +ZSTD -ZLIB`` (``depmod --version``), so its depmod
  never lists a gzip-compressed module and its modprobe cannot load one. kmodsim's discovery does
  the same (its outputs stay byte-identical to that depmod's) and keeps the files it passed over in
  :attr:`Discovery.ignored`, so that ``scan``, ``check``, ``ldd`` and ``load`` can say so. A
  ``.ko.gz`` named explicitly on a command line is still read (kmodsim decompresses gzip itself).
* The order of modules (the lines of modules.dep): kmod's hash table of names (512 buckets, Paul
  Hsieh's SuperFastHash, names sorted by ``strcmp`` inside a bucket), then a stable sort that puts
  the modules of ``modules.order`` first, in that file's order (the last line naming a module
  counts; a line matches a module by its path below the tree with the compression suffix cut).
  Without a (well-formed) modules.order the hash order stays.

``kmodsim depmod`` (:mod:`kmodsim.dependencies`) writes modules.dep from this discovery; ``scan``, ``check``,
``ldd --modules``, ``why``/``deps`` and the ``modprobe`` steps of ``load``/``verify`` take the very
same modules (:func:`discover`).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Iterable
from operator import itemgetter

from .messages import DepmodMessage

KMOD_EXTENSIONS = (".ko", ".ko.xz", ".ko.zst")  # kmod 30 built +XZ +ZSTD -ZLIB (Debian 12)
IGNORED_EXTENSIONS = (".ko.gz",)  # what a +ZLIB kmod would read too
DEFAULT_CFG_PATHS = ("/etc/depmod.d", "/run/depmod.d", "/usr/local/lib/depmod.d", "/lib/depmod.d")
MODULE_BUCKETS = 512   # hash_new(512, ...) in depmod_init


# ---------------------------------------------------------------------------------------------
# kmod's hash
# ---------------------------------------------------------------------------------------------

def superfasthash(key: bytes, _u16s: Callable[..., tuple[int, ...]] = struct.unpack_from) -> int:
    """``hash_superfast()`` of kmod's shared/hash.c on a little-endian host with signed ``char``
    (x86): 16-bit words read little-endian, the odd tail byte sign-extended. Arithmetic is mod
    2**32; the low bits never depend on the high ones, so masking can wait until a right shift."""
    n = len(key)
    h = n
    rem = n & 3
    end = n - rem
    if end:
        it = iter(_u16s(f"<{end >> 1}H", key))
        for lo in it:
            h += lo
            h = ((h << 16) ^ (next(it) << 11) ^ h) & 0xFFFFFFFF
            h += h >> 11
        h &= 0xFFFFFFFF
    if rem == 3:
        h += key[end] | key[end + 1] << 8
        h ^= h << 16
        c = key[end + 2]
        h ^= (c - 256 if c > 127 else c) << 18
        h &= 0xFFFFFFFF
        h += h >> 11
    elif rem == 2:
        h += key[end] | key[end + 1] << 8
        h ^= h << 11
        h &= 0xFFFFFFFF
        h += h >> 17
    elif rem == 1:
        c = key[end]
        h += c - 256 if c > 127 else c
        h ^= h << 10
        h &= 0xFFFFFFFF
        h += h >> 1
    h &= 0xFFFFFFFF
    h ^= h << 3
    h &= 0xFFFFFFFF
    h += h >> 5
    h &= 0xFFFFFFFF
    h ^= h << 4
    h &= 0xFFFFFFFF
    h += h >> 17
    h &= 0xFFFFFFFF
    h ^= h << 25
    h &= 0xFFFFFFFF
    return (h + (h >> 6)) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# Configuration (depmod.d) and the walk
# ---------------------------------------------------------------------------------------------

class Config:
    """depmod.d: ``search``, ``override``, ``external`` and ``exclude`` lines. Lists are kept in
    kmod's order: each new entry goes in front.

    (Plain classes here, not dataclasses: generating their methods costs milliseconds at import,
    and a warm ``kmodsim depmod`` is meant to take a few tens of them.)"""

    def __init__(self) -> None:
        self.searches: list[str] = []  # a path, or "built-in" / "external"
        self.overrides: list[str] = []  # "<subdir>/<modname>"
        self.externals: list[str] = []
        self.excludes: list[str] = []
        self.messages: list[DepmodMessage] = []  # what depmod says about the files

    @classmethod
    def load(cls, paths: Iterable[str] | None, kver: str) -> Config:
        cfg = cls()
        files: dict[str, str] = {}  # name -> path; the first directory naming a file wins
        for p in (DEFAULT_CFG_PATHS if paths is None else paths):
            try:
                if not os.path.isdir(p):
                    if os.path.exists(p):
                        files.setdefault(os.path.basename(p), p)
                    continue
                names = os.listdir(p)
            except OSError:
                continue
            for n in names:
                full = os.path.join(p, n)
                if n.startswith(".") or len(n) < 6 or not n.endswith(".conf") or os.path.isdir(full):
                    continue
                files.setdefault(n, full)
        for n in sorted(files, key=os.fsencode):
            cfg._parse(files[n], kver)
        if not cfg.searches:
            cfg.searches.insert(0, "updates")
        return cfg

    def _parse(self, path: str, kver: str) -> None:
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8", "surrogateescape")
        except OSError as exc:
            self.messages.append(DepmodMessage("config-parse", (path, str(exc.strerror))))
            return
        text = text.replace("\\\n", "")
        for no, line in enumerate(text.split("\n"), 1):
            if not line or line.startswith("#"):
                continue
            words = line.replace("\t", " ").split()
            if not words:
                continue
            cmd, args = words[0], words[1:]
            if cmd == "search":
                for a in args:
                    self.searches.insert(0, a)
            elif cmd == "override" and len(args) >= 3:
                if _kernel_matches(args[1], kver):
                    self.overrides.insert(0, f"{args[2]}/{args[0]}")
            elif cmd == "external" and len(args) >= 2:
                if _kernel_matches(args[0], kver):
                    self.externals.insert(0, args[1])
            elif cmd == "exclude":
                for a in args:
                    self.excludes.insert(0, a)
            elif cmd in ("include", "make_map_files"):
                pass
            else:
                self.messages.append(DepmodMessage("config-bad-line", (path, str(no), cmd)))


def _kernel_matches(pattern: str, kver: str) -> bool:
    if pattern == "*":
        return True
    try:
        return re.search(pattern, kver) is not None
    except re.error:
        return False


def modname(filename: str) -> str:
    """path_to_modname(): the file name up to its first '.', '-' replaced by '_'."""
    return filename.split(".", 1)[0].replace("-", "_")


class Found(tuple[str, str | None, str]):
    """One module file: ``(path, relpath, name)``. ``path`` as depmod spells it (dirname + "/" +
    relpath), ``relpath`` below the tree (None outside it), ``name`` the module's. (A tuple with
    named fields written out: a NamedTuple class costs a warm scan its creation at import.)"""

    __slots__ = ()

    def __new__(cls, path: str, relpath: str | None, name: str) -> Found:
        return tuple.__new__(cls, (path, relpath, name))

    path = property(itemgetter(0))
    relpath = property(itemgetter(1))
    name = property(itemgetter(2))


class Discovery:
    """depmod_modules_search(): the modules of a tree, one per name, by depmod's priorities."""

    def __init__(self, dirname: str, cfg: Config) -> None:
        self.dirname = dirname
        self.cfg = cfg
        # the modules picked, in discovery order, as three columns (see by_name)
        self.paths: list[str] = []
        self.relpaths: list[str | None] = []
        self.names: list[str] = []
        self.errors: list[tuple[str, str]] = []
        self.ignored: list[str] = []  # module files kmod as Debian builds it does not read (.ko.gz)

    @property
    def by_name(self) -> dict[str, Found]:
        """Module name -> the file picked for it, in discovery order."""
        return {n: Found(p, r, n) for p, r, n in zip(self.paths, self.relpaths, self.names, strict=True)}

    def run(self) -> None:
        self._skip = {"build", "source", *self.cfg.excludes}
        self._segments: list[tuple[str, str | None, list[str]]] = []
        self._walk(self.dirname, "", {os.path.realpath(self.dirname)}, top=True)
        dl = len(self.dirname)
        for ext in self.cfg.externals:
            base = ext[dl + 1:] + "/" if ext.startswith(self.dirname) and ext[dl:dl + 1] == "/" else None
            self._walk(ext, base, {os.path.realpath(ext)}, top=False)
        self._pick()

    def _walk(self, d: str, rel: str | None, ancestors: set[str], top: bool) -> None:
        """Every file name, in walk order: runs of a directory's files as ``(dir + "/", its path
        below the tree or None, names)``, cut where a subdirectory's walk comes between them (so
        that the walk order is depmod's). ``rel``: the directory below the tree ("" at its top,
        None outside it)."""
        try:
            entries = list(os.scandir(d))
        except OSError as exc:
            if top or not isinstance(exc, FileNotFoundError):
                self.errors.append((d, f"cannot read directory: {exc.strerror or exc}"))
            return
        skip = self._skip
        segments = self._segments
        d += "/"
        files: list[str] = []
        for ent in entries:
            name = ent.name
            if name in skip:
                continue
            try:
                is_dir = ent.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                files.append(name)
                continue
            if files:
                segments.append((d, rel, files))
                files = []
            sub = None if rel is None else rel + name + "/"
            if ent.is_symlink():  # a loop can only come through a link: depmod would recurse
                real = os.path.realpath(d + name)  # until the path is too long; kmodsim stops
                here = os.path.realpath(d)
                if real in ancestors or here == real or here.startswith(real + "/"):
                    continue
                self._walk(d + name, sub, ancestors | {real}, False)
            else:
                self._walk(d + name, sub, ancestors, False)
        if files:
            segments.append((d, rel, files))

    def _pick(self) -> None:
        """depmod_modules_search_file() on every file, in walk order: the module files (a name
        longer than, and ending with, one of kmod's extensions), one per module name by
        :meth:`_old_wins` (a later pick keeps the place of the name's first file); the ``.ko.gz``
        files to :attr:`ignored`. In bulk: on a tree where no two files share a module name,
        no file is compared with another."""
        paths: list[str] = []
        rels: list[str | None] = []
        names: list[str] = []
        exts = KMOD_EXTENSIONS
        for d, rel, files in self._segments:
            mods = [n for n in files if n.endswith(exts) and n not in exts]
            if mods:
                paths += [d + n for n in mods]
                rels += [None] * len(mods) if rel is None else [rel + n for n in mods]
                names += [n[:n.index(".")] for n in mods]
            if len(mods) < len(files):
                self.ignored += [d + n for n in files if n.endswith(IGNORED_EXTENSIONS) and n not in IGNORED_EXTENSIONS]
        if any("-" in n for n in names):
            names = [n.replace("-", "_") for n in names]
        if len(set(names)) < len(names):
            at: dict[str, int] = {}
            kp: list[str] = []
            kr: list[str | None] = []
            kn: list[str] = []
            for p, r, n in zip(paths, rels, names, strict=True):
                i = at.get(n)
                if i is None:
                    at[n] = len(kn)
                    kp.append(p)
                    kr.append(r)
                    kn.append(n)
                elif not self._old_wins(Found(kp[i], kr[i], n), p, n):
                    kp[i], kr[i] = p, r
            paths, rels, names = kp, kr, kn
        self.paths, self.relpaths, self.names = paths, rels, names

    def _old_wins(self, old: Found, newpath: str, name: str) -> bool:
        """depmod_module_is_higher_priority(); lengths count the name up to the module name."""
        cfg = self.cfg
        dl = len(self.dirname)

        def rel(p: str) -> str | None:
            if not p.startswith(self.dirname):
                return None
            base = p.rfind("/") + 1
            return p[dl + 1:base + len(name)]

        newrel, oldrel = rel(newpath), rel(old.path)
        for ov in cfg.overrides:
            if newrel == ov:
                return False
            if oldrel == ov:
                return True
        bprio = oldprio = newprio = -1
        i = 0
        newlen = newpath.rfind("/") + 1 + len(name)
        oldlen = old.path.rfind("/") + 1 + len(name)
        for se in cfg.searches:
            if se == "built-in":
                bprio = i
            elif se == "external":
                for ext in cfg.externals:
                    if _starts_with_dir(newpath[:newlen], ext):
                        newprio = i
                    if _starts_with_dir(old.path[:oldlen], ext):
                        oldprio = i
                    i += 1
            elif newrel is not None and len(newrel) > len(se) and newrel[len(se)] == "/" and \
                    newrel.startswith(se):
                newprio = i
            elif oldrel is not None and len(oldrel) > len(se) and oldrel[len(se)] == "/" and \
                    oldrel.startswith(se):
                oldprio = i
            i += 1
        if newprio < 0:
            newprio = bprio
        if oldprio < 0:
            oldprio = bprio
        return newprio <= oldprio


def _starts_with_dir(path: str, prefix: str) -> bool:
    return len(path) > len(prefix) and path[len(prefix)] == "/" and path.startswith(prefix)


# ---------------------------------------------------------------------------------------------
# Order (depmod_modules_sort) and the whole discovery
# ---------------------------------------------------------------------------------------------

def depmod_order(names: list[str], relpaths: list[str | None], dirname: str,
                 warnings: list[DepmodMessage] | None = None, first_line_wins: bool = False) -> list[int]:
    """The modules.dep order of modules given by name and path below the tree (None: outside it),
    as indices into those lists: the hash order of names, then modules.order first. depmod's
    messages about modules.order go to ``warnings``. (Names and paths as Python spells file names,
    undecodable bytes as surrogates; modules.order is read the same way, so matching text is
    matching bytes.) A module listed twice takes its last line (kmod 30), or its first with
    ``first_line_wins`` (kmod 34, a1186fa "depmod: Support modules.order with duplicate lines")."""
    mask = MODULE_BUCKETS - 1
    try:
        with open(os.path.join(dirname, "modules.order"), "rb") as f:
            lines = f.read().decode("utf-8", "surrogateescape").split("\n")
    except OSError as exc:
        lines = None
        if warnings is not None:
            warnings.append(DepmodMessage("order-open", (dirname, str(exc.strerror))))
    sort_idx: dict[int, int] = {}
    if lines is not None:
        if lines[-1]:  # the last line misses its '\n'
            if warnings is not None:
                warnings.append(DepmodMessage("order-corrupt", (dirname, str(len(lines)))))
            lines = None
        else:
            lines.pop()
    if lines is not None:
        # a module's key: its path below the tree, cut after the length of its name plus ".ko"
        # (depmod's uncrelpath: kernel/fs/foo.ko.xz -> kernel/fs/foo.ko; the name is the start of
        # the file name, so counting characters cuts where depmod's count of bytes does)
        by_unc = {rel[:rel.rfind("/") + 4 + len(n)]: i
                  for i, (n, rel) in enumerate(zip(names, relpaths, strict=True)) if rel is not None}
        total = len(lines) + 1
        for no, i in enumerate(map(by_unc.get, lines), 1):
            if i is not None and not (first_line_wins and i in sort_idx):
                sort_idx[i] = no - total
    ordered = sorted(sort_idx, key=sort_idx.__getitem__)
    if len(sort_idx) == len(names):  # every module in modules.order (Debian's trees)
        return ordered
    rest = [(n.encode("utf-8", "surrogateescape"), i) for i, n in enumerate(names) if i not in sort_idx]
    rest.sort(key=lambda bi: (superfasthash(bi[0]) & mask, bi[0]))  # bucket, then strcmp
    return ordered + [i for _b, i in rest]


class Discovered:
    """One tree as depmod sees it: its modules in modules.dep order (:attr:`paths`, and
    :attr:`found` with their names), what could not be read, the ``.ko.gz`` files passed over.
    (A plain class: a NamedTuple costs a warm scan its creation at import.)"""

    __slots__ = ("dirname", "cfg", "paths", "_found", "errors", "ignored")

    def __init__(self, dirname: str, cfg: Config, disc: Discovery, order: list[int]) -> None:
        self.dirname, self.cfg, self.errors, self.ignored = dirname, cfg, disc.errors, disc.ignored
        self.paths = [disc.paths[i] for i in order]
        self._found = (disc, order)

    @property
    def found(self) -> list[Found]:
        disc, order = self._found
        return [Found(disc.paths[i], disc.relpaths[i], disc.names[i]) for i in order]


def discover(dirname: str, config_paths: Iterable[str] | None = None, kver: str | None = None) -> Discovered:
    """depmod's modules of the tree ``dirname`` (``lib/modules/<kver>``; ``kver`` defaults to its last
    component), with the depmod.d configuration of ``config_paths`` (default: depmod's directories)."""
    if len(dirname) > 1:
        dirname = dirname.rstrip("/") or "/"
    kver = kver or os.path.basename(dirname)
    cfg = Config.load(None if config_paths is None else list(config_paths), kver)
    disc = Discovery(dirname, cfg)
    disc.run()
    return Discovered(dirname, cfg, disc, depmod_order(disc.names, disc.relpaths, dirname))
