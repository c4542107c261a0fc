"""depmod, re-implemented: module dependencies, modules.* files byte-identical to kmod 30's, cycles
with the symbols behind each edge, and answers to "why does A need B".

The rules are kmod 30's (``tools/depmod.c`` and ``libkmod/libkmod-elf.c``), re-stated here:

* Discovery: a recursive walk of ``<basedir>/lib/modules/<kver>`` in ``readdir`` order, skipping
  ``.``, ``..``, ``build``, ``source`` and the ``exclude`` directories of depmod.d, keeping files
  that end in ``.ko``, ``.ko.xz`` or ``.ko.zst`` (kmod as Debian builds it: ``+XZ +ZSTD -ZLIB``).
  The module name is the file name up to its first ``.``, with ``-`` turned into ``_``. Two files
  with one name: the one in the higher-priority ``search`` directory wins (default: ``updates``
  over everything else), ``override`` lines first; on a tie the first one found stays. (This
  discovery, :mod:`kmodsim.discovery`, is the one every kmodsim command uses.)
* Order of modules (the line order of modules.dep, .alias, .softdep, .devname): kmod's hash table of
  names (512 buckets, Paul Hsieh's SuperFastHash, names sorted by ``strcmp`` inside a bucket), then
  a stable sort that puts the modules of ``modules.order`` first, in that file's order (the last
  line naming a module counts). Without a (well-formed) modules.order the hash order stays.
* Exports, as libkmod reads them: every ``__crc_<S>`` symbol, with its CRC (an absolute value, or a
  u32 in the section it points into); a module with no ``__crc_`` symbol exports every string of
  its ``__ksymtab_strings`` (CRC 0). Names and CRCs go into one table (2048 buckets, same hash), in
  module order, after the kernel's symbols of ``-E``/``-F``: a later exporter replaces an earlier
  one, so of two modules exporting a name the *last* in modules.dep order owns it.
* Imports: the named undefined symbols of ``.symtab`` in table order (weak ones included: a weak
  import that resolves still makes a dependency), then the ``__versions`` entries no symbol matched
  (``module_layout``). The dependencies of a module are the distinct owners, in first-use order.
* A topological sort (a LIFO of the modules nobody uses, in module order) numbers the modules; a
  modules.dep line lists every module reachable from its module, sorted by that number. A cycle
  stops depmod before it writes anything (exit 1); its report is reproduced line for line, and
  kmodsim adds every elementary cycle with the symbols behind each edge.
* modules.symbols lists the owned symbols in the symbol table's bucket order; modules.alias and
  modules.softdep the ``alias=``/``softdep=`` strings of ``.modinfo`` in file order; modules.devname
  pairs a ``devname:`` alias with a ``char-major-M-m``/``block-major-M-m`` one.
* The .bin indexes (on request) are kmod's radix trees of the same keys and values
  (:class:`Index`), plus modules.builtin and modules.builtin.modinfo.

See docs/depmod.md for the details and the commands.

Reading is parallel and cached (:class:`kmodsim.tree.ScanCache`, one file per tree under
``$KMODSIM_CACHE/depmod-v<N>``), keyed like kmodsim's scan cache by path, size, mtime, ctime and
inode. The cached record is kmod's view of the module, not kmodsim's general one (see
:func:`kmod_view`), so that outputs are byte-identical to depmod's also on odd modules.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from array import array
from collections.abc import Callable
from itertools import compress, repeat
from operator import itemgetter
from typing import NamedTuple

from .cache import is_trusted, racy_cutoff, write_atomic
from .discovery import (  # noqa: F401 - re-exported: kmodsim.deps names them too
    DEFAULT_CFG_PATHS,
    KMOD_EXTENSIONS,
    Config,
    Discovery,
    Found,
    depmod_order,
    modname,
    superfasthash,
)
from .errors import Error
from .module import DEFAULT_MAX_SIZE, ModuleError, read_image
from .tree import ScanCache, default_cache_dir, parallel_map, stat_key

RECORD_VERSION = 1
SYMBOL_BUCKETS = 2048  # hash_new(2048, ...) in depmod_init

HEADERS = {
    "modules.alias": b"# Aliases extracted from modules themselves.\n",
    "modules.softdep": b"# Soft dependencies extracted from modules themselves.\n",
    "modules.symbols": b"# Aliases for symbols, used by symbol_request().\n",
    "modules.devname": b"# Device nodes to trigger on-demand module loading.\n",
}
TEXT_FILES = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols", "modules.devname")


class DepmodError(Error):
    """A problem that stops the run; ``str()`` is ``<file>: <problem>``, and ``depmod`` what kmod
    30's depmod prints when it stops there (its ``ERROR``/``FATAL`` lines, tools/depmod.c), for
    ``kmodsim depmod``, which exits 1 with it as depmod does."""

    def __init__(self, message: str, depmod: str = "") -> None:
        super().__init__(message)
        self.depmod = depmod or f"depmod: FATAL: {message}\n"


# ---------------------------------------------------------------------------------------------
# kmod's view of one module
# ---------------------------------------------------------------------------------------------
#
# A record is a marshal-able tuple (stored as is in the cache):
#   (exports, export_crcs, export_hashes, imports, import_weak, import_crcs, aliases, softdeps,
#    problem)
# exports/imports/aliases/softdeps: NUL-terminated byte strings joined; *_crcs: array('Q') bytes;
# hashes: array('I') bytes (superfasthash of each export name); import_weak: one byte per import;
# aliases/softdeps: the values of .modinfo's ``alias``/``softdep`` keys in file order (a string
# without '=' is its own key and value, as libkmod reads it); problem: "" or why the file is
# unreadable.

EMPTY_RECORD = (b"", b"", b"", b"", b"", b"", b"", b"", "")
R_EXPORTS, R_EXCRCS, R_EXHASH, R_IMPORTS, R_IMWEAK, R_IMCRCS, R_ALIASES, R_SOFTDEPS, R_PROBLEM = range(9)
_WEAK = bytes(1 if c >> 4 == 2 else 0 for c in range(256))  # st_info -> STB_WEAK?


class _Bad(Exception):
    pass


def _join(items: list[bytes]) -> bytes:
    return b"\0".join(items) + b"\0" if items else b""


def split0(b: bytes) -> list[bytes]:
    return b.split(b"\0")[:-1] if b else []


def _u64s(raw: bytes) -> list[int]:
    a = array("Q")
    a.frombytes(raw)
    return a.tolist()


def _u32s(raw: bytes) -> list[int]:
    a = array("I")
    a.frombytes(raw)
    return a.tolist()


def kmod_view(buf, crcs: bool = True) -> tuple:
    """What libkmod reads from a module image (decompressed): see the module docstring. Without
    ``crcs`` the CRCs imports expect are left out (zero): only ``-e -E`` compares them, and a
    record without them is never cached."""
    size = len(buf)
    head = bytes(buf[:64])
    if size <= 16 or head[:4] != b"\x7fELF":
        raise _Bad("not an ELF file")
    cls, data = head[4], head[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise _Bad(f"unknown ELF class {cls} / data encoding {data}")
    is64 = cls == 2
    e = "<" if data == 1 else ">"
    swap = (data == 1) != (sys.byteorder == "little")
    if size <= (64 if is64 else 52):
        raise _Bad("file too short for an ELF header")
    machine = struct.unpack_from(e + "H", head, 0x12)[0]
    if is64:
        shoff = struct.unpack_from(e + "Q", head, 0x28)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", head, 0x3A)
    else:
        shoff = struct.unpack_from(e + "I", head, 0x20)[0]
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", head, 0x2E)
    shdr = 64 if is64 else 40
    if shentsize != shdr:
        raise _Bad(f"unexpected section header size {shentsize}")
    if shoff + shnum * shdr > size:
        raise _Bad("file too short to hold its section headers")
    table = bytes(buf[shoff:shoff + shnum * shdr])
    if is64:  # Elf64_Shdr: name u32, type u32, flags u64, addr u64, offset u64, size u64, ...
        w = array("I")
        w.frombytes(table)
        q = array("Q")
        q.frombytes(table)
        if swap:
            w.byteswap()
            q.byteswap()
        sh_names, sh_off, sh_size = w[0::16].tolist(), q[3::8].tolist(), q[4::8].tolist()
    else:  # Elf32_Shdr: ten u32, offset and size fifth and sixth
        w = array("I")
        w.frombytes(table)
        if swap:
            w.byteswap()
        sh_names, sh_off, sh_size = w[0::10].tolist(), w[4::10].tolist(), w[5::10].tolist()
    if shstrndx == 0 or shstrndx >= shnum:
        raise _Bad(f"bad section name table index {shstrndx}")
    o, z = sh_off[shstrndx], sh_size[shstrndx]
    if o + z > size or z == 0 or buf[o + z - 1] != 0:
        raise _Bad("section name table out of bounds or not NUL-terminated")
    shstr = bytes(buf[o:o + z])

    def section(name: bytes) -> bytes | None:
        """The first section (from index 1) whose name is ``name`` and whose data is in the file."""
        pat = name + b"\0"
        p = shstr.find(pat)
        best = None
        while p >= 0:
            i = 0
            while True:
                try:
                    i = sh_names.index(p, i + 1)
                except ValueError:
                    break
                if (best is None or i < best) and sh_off[i] + sh_size[i] <= size:
                    best = i
                    break
            p = shstr.find(pat, p + 1)
        if best is None:
            return None
        return bytes(buf[sh_off[best]:sh_off[best] + sh_size[best]])

    symtab, strtab = section(b".symtab"), section(b".strtab")
    symlen = 24 if is64 else 16
    ok = symtab is not None and strtab is not None and len(symtab) % symlen == 0
    strlen = len(strtab) if strtab is not None else 0
    if ok and not strtab.endswith(b"\0"):
        strtab += b"\0"
    nsym = len(symtab) // symlen if ok else 0
    shndx_off = 6 if is64 else 14
    names = None  # st_name of every symbol, as an array
    if ok:
        names = array("I")
        names.frombytes(symtab)
        if swap:
            names.byteswap()
        names = names[0::symlen // 4]

    # -- exports (kmod_elf_get_symbols) --
    ex_names: list[bytes] = []
    ex_crcs: list[int] = []
    use_crcs = False
    if ok and nsym > 1:
        offs = []
        p = strtab.find(b"__crc_")
        while p >= 0:
            offs.append(p)
            p = strtab.find(b"__crc_", p + 1)
        if offs and max(names) < strlen:
            # the symbols named by those strings, in table order: a few searches of the st_name
            # column for a few names, one pass over it for many
            if len(offs) <= 4:
                col = names.tobytes()
                hits = []
                for p in offs:
                    pat = array("I", (p,)).tobytes()
                    j = col.find(pat, 4)
                    while j >= 0:
                        if not j & 3:
                            hits.append(j >> 2)
                        j = col.find(pat, j + 1)
            else:
                hits = list(compress(range(nsym), map(set(offs).__contains__, names)))
                if hits and hits[0] == 0:
                    hits.pop(0)
            if hits:
                use_crcs = True
                hits.sort()
                get = itemgetter(*hits) if len(hits) > 1 else (lambda col: (col[hits[0]],))
                find = strtab.index
                ex_names = [strtab[p + 6:find(b"\0", p)] for p in get(names)]
                values = array("Q" if is64 else "I")
                values.frombytes(symtab)
                shx = array("H")
                shx.frombytes(symtab)
                if swap:
                    values.byteswap()
                    shx.byteswap()
                vals = get(values[1::3] if is64 else values[1::4])
                where = get(shx[3::12] if is64 else shx[7::8])
                ex_crcs = _crcs(buf, sh_off, sh_size, vals, where, e)
    if not use_crcs:
        ks = section(b"__ksymtab_strings")
        if ks:
            ex_names = [x for x in ks.split(b"\0") if x]
            ex_crcs = [0] * len(ex_names)

    # -- imports (kmod_elf_get_dependency_symbols) --
    im_names: list[bytes] = []
    im_weak: bytes = b""
    im_crcs: list[int] = []
    if ok:
        # undefined: st_shndx == 0, i.e. both of its bytes zero (either byte order)
        b0 = symtab[shndx_off::symlen]
        b1 = symtab[shndx_off + 1::symlen]
        idx = []
        i = b0.find(0, 1)
        while i >= 0:
            if not b1[i]:
                idx.append(i)
            i = b0.find(0, i + 1)
        info = symtab[(4 if is64 else 12)::symlen]
        if machine in (2, 43):  # SPARC: STT_REGISTER symbols are not really undefined
            idx = [i for i in idx if info[i] & 0xF != 13]
        if len(idx) > 1:
            get = itemgetter(*idx)
            offs = list(get(names))
            weak = bytes(get(info))
        else:
            offs = [names[i] for i in idx]
            weak = bytes([info[i] for i in idx])
        if not offs or max(offs) < strlen:
            find = strtab.index
            im_names = [strtab[o:find(b"\0", o)] for o in offs]
            if b"" in im_names:  # nameless undefined symbols are skipped
                keep = [k for k, n in enumerate(im_names) if n]
                weak = bytes([weak[k] for k in keep])
                im_names = [im_names[k] for k in keep]
            im_weak = weak.translate(_WEAK)
            vers = section(b"__versions")
            if vers and len(vers) % 64 == 0:
                crclen = 8 if is64 else 4
                try:
                    vindex = vers.index
                    vnames = [vers[o:vindex(b"\0", o)] for o in range(crclen, len(vers), 64)]
                except ValueError:  # the last name runs to the end of the section
                    vnames = [vers[o:].split(b"\0", 1)[0] for o in range(crclen, len(vers), 64)]
                if not crcs and len(set(vnames)) == len(vnames):
                    # only the entries no symbol matched (module_layout) are wanted
                    have = set(im_names)
                    extra_names = [n for n in vnames if n not in have]
                    im_names += extra_names
                    im_weak += bytes(len(extra_names))
                    im_crcs = [0] * len(im_names)
                else:
                    words = array("Q" if is64 else "I")
                    words.frombytes(vers)
                    if swap:
                        words.byteswap()
                    vcrc = words[0::64 // crclen].tolist()
                    first = dict(zip(reversed(vnames), range(len(vnames) - 1, -1, -1), strict=True))
                    vidx = list(map(first.get, im_names, repeat(-1)))
                    vcrc.append(0)  # index -1: no __versions entry, CRC 0
                    im_crcs = list(map(vcrc.__getitem__, vidx))
                    seen = set(vidx)
                    seen.discard(-1)
                    if len(seen) < len(vnames):  # entries no symbol matched: module_layout
                        extra = [i for i in range(len(vnames)) if i not in seen]
                        im_names += [vnames[i] for i in extra]
                        im_weak += bytes(len(extra))
                        im_crcs += [vcrc[i] for i in extra]
            else:
                im_crcs = [0] * len(im_names)

    # -- .modinfo (kmod_elf_get_strings): keep what depmod writes out --
    aliases: list[bytes] = []
    softdeps: list[bytes] = []
    mi = section(b".modinfo")
    if mi:
        aliases = [v[1:] if v else b"alias" for v in _ALIAS.findall(mi)]
        if b"softdep" in mi:
            softdeps = [v[1:] if v else b"softdep" for v in _SOFTDEP.findall(mi)]

    return (_join(ex_names), array("Q", ex_crcs).tobytes(), array("I", map(superfasthash, ex_names)).tobytes(),
            _join(im_names), im_weak, array("Q", im_crcs).tobytes(), _join(aliases), _join(softdeps), "")


# a .modinfo string (NUL or the start before it, NUL or the end after it) with the key alias or
# softdep: "=value", or "" for the bare key (libkmod then takes the key as the value too)
_ALIAS = re.compile(rb"(?<![^\0])alias(=[^\0]*|(?![^\0]))")
_SOFTDEP = re.compile(rb"(?<![^\0])softdep(=[^\0]*|(?![^\0]))")


def _crcs(buf, sh_off: list[int], sh_size: list[int], values, where, e: str) -> list[int]:
    """kmod_elf_resolve_crc() of each (st_value, st_shndx): an absolute CRC is the value itself,
    a CRC in a section is the u32 at that offset in it (-1 as u64 when out of bounds)."""
    bad = 0xFFFFFFFFFFFFFFFF
    out = []
    cache: dict[int, bytes] = {}
    u32 = struct.Struct(e + "I").unpack_from
    for v, sh in zip(values, where, strict=True):
        if sh in (0, 0xFFF1):
            out.append(v)
            continue
        data = cache.get(sh)
        if data is None:
            if sh >= len(sh_off) or sh_off[sh] + sh_size[sh] > len(buf):
                out.append(bad)
                continue
            data = cache[sh] = bytes(buf[sh_off[sh]:sh_off[sh] + sh_size[sh]])
        out.append(u32(data, v)[0] if v <= (len(data) - 4) % (1 << 64) and v + 4 <= len(data) else bad)
    return out


def read_record(path: str, max_size: int = DEFAULT_MAX_SIZE, crcs: bool = True) -> tuple:
    """kmod's view of one module file; a file that cannot be read gives an empty record naming
    the problem (depmod keeps such a module, with no symbols and no dependencies)."""
    try:
        buf, _fmt, _size = read_image(path, max_size)  # a read-only map, or the decompressed bytes
    except ModuleError as exc:
        return EMPTY_RECORD[:-1] + (exc.problem,)
    try:
        return kmod_view(buf, crcs)
    except _Bad as exc:
        return EMPTY_RECORD[:-1] + (str(exc),)
    except Exception as exc:  # anything a hostile file provokes is reported, never raised
        return EMPTY_RECORD[:-1] + (f"unreadable module ({type(exc).__name__}: {exc})",)
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def read_records(paths: list[str], jobs: int | None = None, max_size: int = DEFAULT_MAX_SIZE,
                 crcs: bool = True, progress: bool | None = False) -> dict[str, tuple]:
    """Records of ``paths``, read by ``jobs`` processes (default: all cores), shared out in
    discovery order by :func:`kmodsim.tree.parallel_map` (the parent takes a share too).
    ``progress``: the bar ``scan`` shows (None: on a terminal only)."""
    from .tree import _progress

    return dict(zip(paths, parallel_map(lambda p: read_record(p, max_size, crcs), paths, jobs,
                                        _progress(progress, len(paths))), strict=True))


# ---------------------------------------------------------------------------------------------
# Kernel symbols (-E / -F)
# ---------------------------------------------------------------------------------------------

def _strtoull16(s: str) -> tuple[int, str]:
    """strtoull(s, &end, 16): (value, rest)."""
    m = re.match(r"\s*([+-]?)(0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)", s)
    digits = m.group(3)
    if not digits:
        return 0, s
    v = min(int(digits, 16), (1 << 64) - 1)
    if m.group(1) == "-":
        v = (-v) % (1 << 64)
    return v, s[m.end():]


def load_symvers(path: str, prefix: str, messages: list[str]) -> list[tuple[bytes, int]]:
    """depmod_load_symvers(): the ``vmlinux`` rows of a Module.symvers, (name, crc)."""
    out = []
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "surrogateescape")
            toks = [t for t in re.split(r"[ \t]+", line) if t]
            if len(toks) < 3 or toks[2] != "vmlinux":
                continue
            crc, rest = _strtoull16(toks[0])
            if rest:
                messages.append(f"depmod: ERROR: {path}:{no} Invalid symbol version {toks[0]}: Success\n")
                continue
            name = toks[1]
            if prefix and name.startswith(prefix):
                name = name[1:]
            out.append((os.fsencode(name), crc))
    return out


def load_system_map(path: str, prefix: str, messages: list[str]) -> list[tuple[bytes, int]]:
    """depmod_load_system_map(): the ``__ksymtab_<S>`` lines of a System.map, (S, 0)."""
    out = []
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            a = raw.find(b" ")
            b = raw.find(b" ", a + 1) if a >= 0 else -1
            if b < 0:
                messages.append(f"depmod: ERROR: {path}:{no}: invalid line: "
                                f"{raw.decode('utf-8', 'surrogateescape')}\n")
                continue
            p = raw[b + 1:]
            if prefix and p[:1] == prefix.encode():
                p = p[1:]
            if not p.startswith(b"__ksymtab_"):
                continue
            p = p.split(b"\n", 1)[0]
            out.append((p[10:], 0))
    return out


# ---------------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------------

class Mod:
    __slots__ = ("name", "path", "relpath", "rec", "idx", "bname", "bpath")

    def __init__(self, name: str, path: str, relpath: str | None, rec: tuple, idx: int = 0) -> None:
        self.name = name
        self.path = path
        self.relpath = relpath
        self.rec = rec
        self.idx = idx
        self.bname = name.encode("utf-8", "surrogateescape")  # as the files spell them
        self.bpath = (relpath if relpath is not None else path).encode("utf-8", "surrogateescape")

    @property
    def shown_path(self) -> str:
        """What modules.dep prints: the path below the tree, else the full path."""
        return self.relpath if self.relpath is not None else self.path


class Depmod:
    """One depmod run. Build with :func:`run`; then :meth:`outputs` or the graph queries."""

    def __init__(self, dirname: str, mods: list[Mod], ksyms: list[tuple[bytes, int]] | None,
                 owner: dict[bytes, int], warnings: list[str], errors: list[tuple[str, str]],
                 prefix: str = "") -> None:
        self.dirname = dirname
        self.mods = mods
        self.ksyms = ksyms  # the kernel's (name, CRC), from -E/-F
        self.owner = owner  # name -> owning module, module-owned names only
        self._symbols: dict[bytes, tuple[int | None, int]] | None = None
        self.deps: list[list[int]] = []  # distinct owners of each module's imports, first use first
        self.dep_sort: list[int] | None = None  # topological numbers; None: there are cycles
        self.users_left: list[int] = []  # after the sort: >0 for modules on or below a cycle
        self.warnings = warnings  # depmod's stderr lines (-e, cycles, config), in its order
        self.errors = errors  # (file, problem): unreadable inputs
        self.prefix = prefix
        self.cycle_lines: list[str] = []
        self._by_name: dict[str, int] | None = None

    # -- lookups ------------------------------------------------------------------------------
    @property
    def symbols(self) -> dict[bytes, tuple[int | None, int]]:
        """depmod's symbol table: name -> (owning module, or None for the kernel; CRC). The
        kernel's names first (with depmod's fake ones), then each module's exports in module
        order, a later exporter replacing an earlier one. Built on first use (-e, why, deps)."""
        if self._symbols is None:
            symbols: dict[bytes, tuple[int | None, int]] = {}
            if self.ksyms is not None:
                symbols.update((n, (None, c)) for n, c in self.ksyms)
                symbols[b"__this_module"] = (None, 0)
                symbols[b"_GLOBAL_OFFSET_TABLE_"] = (None, 0)
                if b"TOC." not in symbols:
                    symbols[b"TOC."] = (None, 0)
            pre = self.prefix.encode()
            for m in self.mods:
                rec = m.rec
                if rec[R_EXPORTS]:
                    names = split0(rec[R_EXPORTS])
                    if pre:
                        names = [n[1:] if n[:1] == pre else n for n in names]
                    symbols.update(zip(names, [(m.idx, c) for c in _u64s(rec[R_EXCRCS])], strict=True))
            self._symbols = symbols
        return self._symbols

    def index_of(self, name_or_path: str) -> int | None:
        if self._by_name is None:
            self._by_name = {m.name: m.idx for m in self.mods}
        i = self._by_name.get(name_or_path)
        if i is None:
            i = self._by_name.get(modname(os.path.basename(name_or_path)))
            if i is not None and os.sep in name_or_path and \
                    os.path.realpath(self.mods[i].path) != os.path.realpath(name_or_path):
                i = None
        return i

    def find(self, name: bytes) -> tuple[int | None, int] | None:
        if name[:1] == b".":
            name = name[1:]
        if self.prefix and name[:1] == self.prefix.encode():
            name = name[1:]
        return self.symbols.get(name)

    def edge_symbols(self, a: int, b: int) -> list[tuple[str, bool]]:
        """(symbol, weak) of ``a``'s imports that ``b`` owns, in import order."""
        rec = self.mods[a].rec
        out = []
        for n, w in zip(split0(rec[R_IMPORTS]), rec[R_IMWEAK], strict=True):
            s = self.find(n)
            if s is not None and s[0] == b:
                out.append((n.decode("utf-8", "surrogateescape"), bool(w)))
        return out

    def closure(self, i: int) -> list[int]:
        """Every module ``i`` needs, directly or not, in modules.dep order."""
        seen: dict[int, None] = {}
        stack = list(reversed(self.deps[i]))
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen[d] = None
            stack.extend(reversed(self.deps[d]))
        out = list(seen)
        if self.dep_sort is not None:
            out.sort(key=self.dep_sort.__getitem__)
        return out

    # -- outputs -------------------------------------------------------------------------------
    def output_dep(self) -> bytes:
        paths = [m.bpath for m in self.mods]
        sort = self.dep_sort
        assert sort is not None
        deps = self.deps
        memo: list = [None] * len(self.mods)
        # closures, leaves first (highest topological number first)
        for i in sorted(range(len(self.mods)), key=sort.__getitem__, reverse=True):
            ds = deps[i]
            if not ds:
                memo[i] = ()
                continue
            s = set(ds)
            for d in ds:
                s.update(memo[d])
            memo[i] = s
        key = sort.__getitem__
        out = []
        for i, p in enumerate(paths):
            ds = memo[i]
            if ds:
                out.append(p + b": " + b" ".join([paths[d] for d in sorted(ds, key=key)]) + b"\n")
            else:
                out.append(p + b":\n")
        return b"".join(out)

    def output_alias(self) -> bytes:
        out = [HEADERS["modules.alias"]]
        for m in self.mods:
            v = m.rec[R_ALIASES]
            if v:
                tail = b" " + m.bname + b"\n"
                out.append(b"alias " + v[:-1].replace(b"\0", tail + b"alias ") + tail)
        return b"".join(out)

    def output_softdep(self) -> bytes:
        out = [HEADERS["modules.softdep"]]
        for m in self.mods:
            v = m.rec[R_SOFTDEPS]
            if v:
                head = b"softdep " + m.bname + b" "
                out.append(head + v[:-1].replace(b"\0", b"\n" + head) + b"\n")
        return b"".join(out)

    def output_symbols(self) -> bytes:
        """The owned names in kmod's hash-table order: by bucket, then by name."""
        mask = SYMBOL_BUCKETS - 1
        owned: dict[bytes, tuple[int, int]] = {}  # name -> (bucket, owner); the last exporter wins
        pre = self.prefix.encode()
        for m in self.mods:
            rec = m.rec
            if not rec[R_EXPORTS]:
                continue
            names = split0(rec[R_EXPORTS])
            buckets = [h & mask for h in _u32s(rec[R_EXHASH])]
            if pre and any(n[:1] == pre for n in names):  # -P: the table holds the names without it
                names = [n[1:] if n[:1] == pre else n for n in names]
                buckets = [superfasthash(n) & mask for n in names]
            owned.update(zip(names, zip(buckets, repeat(m.idx)), strict=True))
        rows = sorted([(b, n, o) for n, (b, o) in owned.items()])
        mods = self.mods
        return HEADERS["modules.symbols"] + b"".join(
            [b"alias symbol:" + n + b" " + mods[o].bname + b"\n" for _b, n, o in rows])

    def output_devname(self, messages: list[str] | None = None) -> bytes:
        out = []
        for m in self.mods:
            aliases = m.rec[R_ALIASES]
            if b"devname:" not in aliases:
                continue
            devname = None
            typ = ""
            major = minor = 0
            for v in split0(aliases):
                if v.startswith(b"devname:"):
                    devname = v[8:]
                else:
                    for t, pre in (("c", b"char-major-"), ("b", b"block-major-")):
                        mm = _scan_major_minor(v, pre)
                        if mm is not None:
                            typ, (major, minor) = t, mm
                            break
                if typ and devname is not None:
                    break
            if devname is None:
                continue
            if typ:
                out.append(b"%s %s %s%d:%d\n" % (m.bname, devname, typ.encode(), major, minor))
            elif messages is not None:
                messages.append(f"depmod: ERROR: Module '{m.name}' has devname "
                                f"({devname.decode('utf-8', 'surrogateescape')}) but lacks major and minor "
                                f"information. Ignoring.\n")
        return HEADERS["modules.devname"] + b"".join(out) if out else b""

    def outputs(self, messages: list[str] | None = None, bins: bool = False, warn_dups: bool = False,
                show: bool = False) -> dict[str, bytes]:
        """The files, in the order depmod writes them; with ``bins`` the .bin indexes too. The
        messages depmod prints while writing them go to ``messages``, in its order: aliases it
        cannot index (and with -w duplicates) unless -n, the builtin files with ``bins``, devnames
        without a major/minor."""
        msgs: list[str] = []
        out = {"modules.dep": self.output_dep()}
        if bins:
            out["modules.dep.bin"] = self.dep_index(out["modules.dep"])
        out["modules.alias"] = self.output_alias()
        if bins:
            out["modules.alias.bin"] = self.alias_index(msgs, warn_dups)
        elif not show:
            msgs.extend(self.alias_warnings(warn_dups))
        out["modules.softdep"] = self.output_softdep()
        out["modules.symbols"] = self.output_symbols()
        if bins:
            out["modules.symbols.bin"] = self.symbols_index(out["modules.symbols"])
        if not show:  # the built-in indexes are small: read them for depmod's messages even without bins
            for name, make in (("modules.builtin.bin", _builtin_index),
                               ("modules.builtin.alias.bin", _builtin_alias_index)):
                data = make(self.dirname, msgs)
                if bins:
                    out[name] = b"" if data is None else data  # depmod leaves an empty file
        out["modules.devname"] = self.output_devname(msgs)
        if messages is not None:
            messages.extend(msgs)
        return out

    def dep_index(self, dep: bytes) -> bytes:
        idx = Index()
        for m, line in zip(self.mods, dep.split(b"\n"), strict=False):
            idx.insert(m.bname, line, m.idx)
        return idx.to_bytes()

    def alias_index(self, messages: list[str], warn_dups: bool) -> bytes:
        """modules.alias.bin (normalised aliases); an alias with an unmatched bracket is reported
        and left out, and with -w one a module declares twice."""
        idx = Index()
        for m in self.mods:
            aliases = m.rec[R_ALIASES]
            if not aliases:
                continue
            for v in split0(aliases):
                norm = _alias_normalize(v)
                if norm is None:
                    messages.append(f"depmod: WARNING: Unmatched bracket in {v.decode('utf-8', 'surrogateescape')}\n")
                    continue
                if idx.insert(norm, m.bname, m.idx) and warn_dups:
                    messages.append(f"depmod: WARNING: duplicate module alias:\n"
                                    f"{norm.decode('utf-8', 'surrogateescape')} {m.name}\n")
        return idx.to_bytes()

    def alias_warnings(self, warn_dups: bool) -> list[str]:
        """alias_index()'s messages without building the index."""
        out = []
        for m in self.mods:
            aliases = m.rec[R_ALIASES]
            if not aliases or (not warn_dups and b"[" not in aliases and b"]" not in aliases):
                continue
            seen: set[bytes] = set()
            for v in split0(aliases):
                norm = _alias_normalize(v)
                if norm is None:
                    out.append(f"depmod: WARNING: Unmatched bracket in {v.decode('utf-8', 'surrogateescape')}\n")
                    continue
                if norm in seen and warn_dups:
                    out.append(f"depmod: WARNING: duplicate module alias:\n"
                               f"{norm.decode('utf-8', 'surrogateescape')} {m.name}\n")
                seen.add(norm)
        return out

    def symbols_index(self, symbols: bytes) -> bytes:
        idx = Index()
        by_name = {m.bname: m.idx for m in self.mods}
        for line in symbols.split(b"\n")[1:-1]:
            _alias, key, owner = line.split(b" ")
            idx.insert(key, owner, by_name[owner])
        return idx.to_bytes()

    # -- cycles ---------------------------------------------------------------------------------
    def cycles(self, limit: int = 1000) -> list[list[int]]:
        """Every elementary cycle (Johnson's algorithm on each strongly connected component),
        each rotated to start at its first module in module order; at most ``limit``."""
        out: list[list[int]] = []
        for comp in _sccs(self.deps):
            if len(comp) == 1 and comp[0] not in self.deps[comp[0]]:
                continue
            out.extend(_elementary_cycles(self.deps, sorted(comp), limit - len(out)))
            if len(out) >= limit:
                break
        out.sort(key=lambda c: (len(c), c))
        return out


def _scan_major_minor(v: bytes, prefix: bytes) -> tuple[int, int] | None:
    """sscanf(v, "<prefix>%u-%u"): two unsigned decimals, the rest ignored."""
    if not v.startswith(prefix):
        return None
    m = re.match(rb"\s*([+-]?\d+)-\s*([+-]?\d+)", v[len(prefix):])
    if m is None:
        return None
    return int(m.group(1)) % (1 << 32), int(m.group(2)) % (1 << 32)


def _alias_normalize(v: bytes) -> bytes | None:
    """alias_normalize(): '-' becomes '_' outside brackets; None for an unmatched bracket."""
    if b"[" not in v and b"]" not in v:
        return v.replace(b"-", b"_")
    out = bytearray()
    i = 0
    while i < len(v):
        c = v[i]
        if c == 0x2D:  # '-'
            out.append(0x5F)
        elif c == 0x5D:  # ']'
            return None
        elif c == 0x5B:  # '['
            j = v.find(b"]", i)
            if j < 0:
                return None
            out += v[i:j + 1]
            i = j
        else:
            out.append(c)
        i += 1
    return bytes(out)


def _sccs(deps: list[list[int]]) -> list[list[int]]:
    """Tarjan's strongly connected components, iteratively."""
    n = len(deps)
    index = [-1] * n
    low = [0] * n
    on = [False] * n
    stack: list[int] = []
    out = []
    counter = 0
    for root in range(n):
        if index[root] >= 0:
            continue
        work = [(root, 0)]
        while work:
            v, pi = work.pop()
            if pi == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on[v] = True
            recurse = False
            for k in range(pi, len(deps[v])):
                w = deps[v][k]
                if index[w] < 0:
                    work.append((v, k + 1))
                    work.append((w, 0))
                    recurse = True
                    break
                if on[w]:
                    low[v] = min(low[v], index[w])
            if recurse:
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on[w] = False
                    comp.append(w)
                    if w == v:
                        break
                out.append(comp)
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
    return out


def _elementary_cycles(deps: list[list[int]], comp: list[int], limit: int) -> list[list[int]]:
    """Johnson's algorithm restricted to one component (cycles through its smallest members)."""
    out: list[list[int]] = []
    members = set(comp)
    for start in comp:
        if len(out) >= limit:
            break
        allowed = {v for v in members if v >= start}
        blocked: set[int] = set()
        bmap: dict[int, set[int]] = {}
        path = [start]
        blocked.add(start)
        stack = [(start, iter([w for w in deps[start] if w in allowed]))]
        closed = [False]
        while stack and len(out) < limit:
            v, it = stack[-1]
            w = next(it, None)
            if w is not None:
                if w == start:
                    out.append(list(path))
                    closed[-1] = True
                elif w not in blocked:
                    path.append(w)
                    blocked.add(w)
                    closed.append(False)
                    stack.append((w, iter([x for x in deps[w] if x in allowed])))
                continue
            stack.pop()
            path.pop()
            done = closed.pop()
            if done:
                _unblock(v, blocked, bmap)
            else:
                for x in deps[v]:
                    if x in allowed:
                        bmap.setdefault(x, set()).add(v)
            if closed:
                closed[-1] = closed[-1] or done
    return out


def _unblock(v: int, blocked: set[int], bmap: dict[int, set[int]]) -> None:
    todo = [v]
    while todo:
        u = todo.pop()
        if u in blocked:
            blocked.discard(u)
            todo.extend(bmap.pop(u, ()))


# ---------------------------------------------------------------------------------------------
# Building a run
# ---------------------------------------------------------------------------------------------

def tree_dirname(basedir: str | None, kver: str) -> str:
    """``<basedir>/lib/modules/<kver>``, spelled as depmod spells it (the base made absolute
    against the working directory, nothing normalised)."""
    root = ""
    if basedir:
        root = basedir if basedir.startswith("/") else f"{os.getcwd()}/{basedir}"
    return f"{root}/lib/modules/{kver}"


def cache_dir_for(cache_dir: str | None) -> str:
    if cache_dir:
        return cache_dir
    return os.path.join(os.path.dirname(default_cache_dir()), f"depmod-v{RECORD_VERSION}")


class Plan(NamedTuple):
    """What a run reads, known before any module is opened: the tree, the modules chosen (in
    discovery order) and the stat keys of every input."""

    dirname: str
    kver: str
    found: list[Found]
    keys: dict[str, tuple | None]
    cfg: Config | None
    ksrc: tuple[str, str] | None  # ("symvers" | "system_map", path)
    errors: list[tuple[str, str]]
    files_mode: bool

    @property
    def cache_root(self) -> str:
        return self.dirname if not self.files_mode else os.path.join(self.dirname, ".files")


def plan(basedir: str | None = None, kver: str | None = None, *, files: list[str] | None = None,
         symvers: str | None = None, system_map: str | None = None, config_paths: list[str] | None = None,
         dirname: str | None = None, stat: bool = True) -> Plan:
    """Configuration and discovery (and, with ``stat``, the stat keys the cache needs). Raises
    :class:`DepmodError` when the run cannot start."""
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
                              f"depmod: FATAL: could not load {ksrc[1]}: {exc.strerror or exc}\n") from None
    errors: list[tuple[str, str]] = []
    cfg = None
    if files is None:
        try:  # depmod_modules_search_path()'s opendir() of the tree, then do_depmod()'s CRIT
            os.scandir(dirname).close()
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise DepmodError(f"{dirname}: cannot read directory: {why}",
                              f"depmod: ERROR: could not open directory {dirname}: {why}\n"
                              f"depmod: FATAL: could not search modules: {why}\n") from None
        cfg = Config.load(config_paths, kver)
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
                raise DepmodError(f"{p}: not an absolute path", f"depmod: FATAL: {p}: not absolute path.\n")
            try:  # kmod_module_new_from_path() stat()s the file
                os.stat(p)
            except OSError as exc:
                why = exc.strerror or str(exc)
                raise DepmodError(f"{p}: {why}", f"depmod: FATAL: could not create module {p}: {why}\n") from None
            rel = p[dl + 1:] if p.startswith(dirname) and p[dl:dl + 1] == "/" else None
            n = modname(os.path.basename(p))
            if n in names:
                if names[n] == p:  # the same kmod_module again: depmod_module_add()'s hash refuses it
                    lines = (f"depmod: ERROR: hash_add_unique {n}: File exists\n"
                             f"depmod: FATAL: could not add module {p}: File exists\n")
                else:  # libkmod's pool refuses a second path for one name (its ERR names its source line)
                    lines = (f"depmod: ERROR: ../libkmod/libkmod-module.c:428 kmod_module_new_from_path() "
                             f"kmod_module '{n}' already exists with different path: new-path='{p}' "
                             f"old-path='{names[n]}'\n"
                             f"depmod: FATAL: could not create module {p}: File exists\n")
                raise DepmodError(f"{p}: a module named {n} was given already", lines)
            names[n] = p
            found.append(Found(p, rel, n))
    keys = {f.path: stat_key(f.path) for f in found} if stat else {}
    return Plan(dirname, kver, found, keys, cfg, ksrc, errors, files is not None)


def _keys(pl: Plan) -> dict[str, tuple | None]:
    if len(pl.keys) != len(pl.found):
        pl.keys.update((f.path, stat_key(f.path)) for f in pl.found)
    return pl.keys


def load_records(pl: Plan, jobs: int | None = None, use_cache: bool = True, cache_dir: str | None = None,
                 max_size: int = DEFAULT_MAX_SIZE, crcs: bool = True,
                 progress: bool | None = False) -> dict[str, tuple]:
    """Records of every found module, from the cache when its file is unchanged. Without the cache
    and without ``crcs`` (no ``-e``) the CRCs imports expect are not read. ``progress``: a bar
    while the others are read (None: on a terminal only, as ``scan``)."""
    recs: dict[str, tuple] = {}
    cache = None
    todo = []
    if use_cache:
        import marshal

        keys = _keys(pl)
        cache = ScanCache(pl.cache_root, cache_dir_for(cache_dir))
        cache.load()
        for f in pl.found:
            hit = cache.get(f.path, keys[f.path])
            if hit is not None:
                recs[f.path] = marshal.loads(hit[0])
            else:
                todo.append(f.path)
    else:
        todo = [f.path for f in pl.found]
    if todo:
        recs.update(read_records(todo, jobs, max_size, crcs or use_cache, progress))
    if cache is not None:
        for p in todo:
            if keys[p] is not None:
                cache.put(p, keys[p], marshal.dumps(recs[p]), ())
        cache.prune(set(keys))
        cache.save()
    return recs


def compute(pl: Plan, recs: dict[str, tuple], *, errsyms: bool = False, prefix: str = "") -> Depmod:
    """Everything depmod computes, from a plan and the records of its modules."""
    warnings: list[str] = []
    errors = list(pl.errors)
    # kernel symbols first: modules' exports replace them
    ksyms: list[tuple[bytes, int]] | None = None
    if pl.ksrc is not None:
        loader = load_symvers if pl.ksrc[0] == "symvers" else load_system_map
        try:
            ksyms = loader(pl.ksrc[1], prefix, warnings)
        except IsADirectoryError:
            ksyms = []  # as plan() says: an empty file to depmod
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise DepmodError(f"{pl.ksrc[1]}: {why}", f"depmod: FATAL: could not load {pl.ksrc[1]}: {why}\n") from None
    check_crcs = pl.ksrc is not None and pl.ksrc[0] == "symvers"
    if errsyms and ksyms is None:
        warnings.append("depmod: WARNING: -e needs -E or -F\n")
        errsyms = False
    if pl.cfg is not None:
        warnings.extend(pl.cfg.messages)
    for f in pl.found:
        if recs[f.path][R_PROBLEM]:
            errors.append((f.path, recs[f.path][R_PROBLEM]))

    mods = [Mod(f.name, f.path, f.relpath, recs[f.path]) for f in pl.found]
    mods = _depmod_order(mods, pl.dirname, warnings)
    for i, m in enumerate(mods):
        m.idx = i

    # who owns each name a module exports (the full table, kernel's names and CRCs included, is
    # built only when needed: Depmod.symbols)
    pre = prefix.encode()
    owner: dict[bytes, int] = {}
    for m in mods:
        rec = m.rec
        if not rec[R_EXPORTS]:
            continue
        names_ = split0(rec[R_EXPORTS])
        if pre:
            names_ = [n[1:] if n[:1] == pre else n for n in names_]
        owner.update(zip(names_, repeat(m.idx)))

    dm = Depmod(pl.dirname, mods, ksyms, owner, warnings, errors, prefix)
    dm.deps = _dependencies(dm, errsyms, check_crcs)
    dm.dep_sort = _topo_sort(dm)
    if dm.dep_sort is None:
        dm.cycle_lines = _depmod_cycle_report(dm)
        warnings.extend(dm.cycle_lines)
    return dm


def run(basedir: str | None = None, kver: str | None = None, *, files: list[str] | None = None,
        symvers: str | None = None, system_map: str | None = None, errsyms: bool = False,
        config_paths: list[str] | None = None, prefix: str = "", jobs: int | None = None,
        use_cache: bool = True, cache_dir: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
        dirname: str | None = None) -> Depmod:
    """Read a tree (or the given module ``files``) and compute everything depmod computes.

    Raises :class:`DepmodError` when the run cannot start (tree or symbol file unreadable)."""
    pl = plan(basedir, kver, files=files, symvers=symvers, system_map=system_map,
              config_paths=config_paths, dirname=dirname, stat=use_cache)
    recs = load_records(pl, jobs, use_cache, cache_dir, max_size, crcs=errsyms)
    return compute(pl, recs, errsyms=errsyms, prefix=prefix)


# ---------------------------------------------------------------------------------------------
# What ``kmodsim depmod`` prints and writes, memoised
# ---------------------------------------------------------------------------------------------

class Result(NamedTuple):
    files: dict[str, bytes] | None  # None: a cycle stopped the run, nothing is written
    stderr: str
    status: int  # 0 written, 1 cycles, 2 unreadable input


MEMO_MAGIC = b"KMSDEPMO"


def depmod_result(pl: Plan, *, errsyms: bool = False, prefix: str = "", warn: bool = False,
                  show: bool = False, bins: bool = False, cycles_limit: int = 1000, jobs: int | None = None,
                  use_cache: bool = True, cache_dir: str | None = None,
                  max_size: int = DEFAULT_MAX_SIZE, explain_cycles: bool = False,
                  progress: bool | None = False) -> Result:
    """The files, stderr and exit status of ``kmodsim depmod``. With the cache, the whole result
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
    err += [f"kmodsim: {p}: {problem}\n" for p, problem in dm.errors]
    if dm.dep_sort is None:
        if explain_cycles:
            err += cycle_report(dm, cycles_limit)
        res = Result(None, "".join(err), 1)
    else:
        messages: list[str] = []
        files = dm.outputs(messages, bins=bins and not show, warn_dups=warn, show=show)
        res = Result(files, "".join(err + messages), 2 if dm.errors else 0)
    if key is not None:
        _memo_save(pl, cache_dir, key, res)
    return res


def cycle_report(dm: Depmod, limit: int) -> list[str]:
    """kmodsim's report: every elementary cycle, then each edge with the symbols behind it."""
    cycles = dm.cycles(limit)
    out = []
    for k, c in enumerate(cycles, 1):
        names = [dm.mods[i].name for i in c]
        out.append(f"kmodsim: cycle {k} of {len(cycles)}{'+' if len(cycles) >= limit else ''}: "
                   f"{' -> '.join(names + names[:1])}\n")
        for a, b in zip(c, c[1:] + c[:1], strict=True):
            syms = dm.edge_symbols(a, b)
            shown = ", ".join(s + (" (weak)" if wk else "") for s, wk in syms)
            out.append(f"kmodsim:   {dm.mods[a].name} needs {dm.mods[b].name}: {shown}\n")
    return out


def _memo_key(pl: Plan, options: tuple) -> bytes:
    """The memo's key; empty (never memoise) when an input cannot be stat'ed or its stat key cannot
    be trusted yet (:func:`kmodsim.tree.is_trusted`). Stat keys in ``options`` count as inputs."""
    import hashlib
    import marshal

    cutoff = racy_cutoff()  # before the modules are read (load_records)
    cfg = pl.cfg
    keys = _keys(pl)
    me = stat_key(__file__)
    ksrc_key = None if pl.ksrc is None else stat_key(pl.ksrc[1])
    order_key = stat_key(os.path.join(pl.dirname, "modules.order"))
    parts = (
        RECORD_VERSION, me, pl.dirname, pl.kver, pl.files_mode, options,
        None if cfg is None else (cfg.searches, cfg.overrides, cfg.externals, cfg.excludes, cfg.messages),
        None if pl.ksrc is None else (pl.ksrc, ksrc_key),
        order_key,
        pl.errors,
        [(f.path, f.relpath, f.name, keys[f.path]) for f in pl.found],
    )
    if any(not is_trusted(k, cutoff) for k in keys.values()):
        return b""  # a module vanished, cannot be stat'ed, or is racily clean
    others = [me, ksrc_key, order_key, *(k for k in options if isinstance(k, tuple))]
    if any(k is not None and not is_trusted(k, cutoff) for k in others):
        return b""  # a file missing today may appear; one changed this second is racy
    return hashlib.blake2b(marshal.dumps(parts), digest_size=20).digest()


def _memo_file(pl: Plan, cache_dir: str | None) -> str:
    import hashlib

    h = hashlib.blake2b(pl.cache_root.encode("utf-8", "surrogateescape"), digest_size=10).hexdigest()
    return os.path.join(cache_dir_for(cache_dir), f"{h}.result")


def _memo_load(pl: Plan, cache_dir: str | None, key: bytes) -> Result | None:
    import marshal
    import zlib

    if not key:
        return None
    try:
        with open(_memo_file(pl, cache_dir), "rb") as f:
            blob = f.read()
    except OSError:
        return None
    head = len(MEMO_MAGIC) + 4
    if len(blob) < head + len(key) or blob[:len(MEMO_MAGIC)] != MEMO_MAGIC or blob[head:head + len(key)] != key:
        return None
    payload = memoryview(blob)[head:]
    if zlib.crc32(payload) != int.from_bytes(blob[len(MEMO_MAGIC):head], "little"):
        return None
    try:
        _key, files, stderr, status = marshal.loads(payload[len(key):])
    except (ValueError, EOFError, TypeError):
        return None
    return Result(files, stderr, status)


def _memo_save(pl: Plan, cache_dir: str | None, key: bytes, res: Result) -> None:
    import marshal
    import zlib

    if not key:
        return
    payload = key + marshal.dumps((key, res.files, res.stderr, res.status))
    try:
        write_atomic(_memo_file(pl, cache_dir), MEMO_MAGIC + zlib.crc32(payload).to_bytes(4, "little") + payload)
    except OSError:
        pass  # a memo that cannot be written only costs time


def _depmod_order(mods: list[Mod], dirname: str, warnings: list[str]) -> list[Mod]:
    """The hash order of names, then modules.order first (depmod_modules_sort, shared with every
    command's discovery: :func:`kmodsim.discovery.depmod_order`)."""
    order = depmod_order([m.name for m in mods], [m.relpath for m in mods], dirname, warnings)
    return [mods[i] for i in order]


def _dependencies(dm: Depmod, errsyms: bool, check_crcs: bool) -> list[list[int]]:
    """depmod_load_dependencies(): each module's distinct owners in first-use order, and the
    -e lines (``needs unknown symbol``, ``disagrees about version``)."""
    owner_get = dm.owner.get
    out: list[list[int]] = []
    warn = dm.warnings
    simple = not dm.prefix and not errsyms
    fromkeys = dict.fromkeys
    for m in dm.mods:
        rec = m.rec
        imports = rec[R_IMPORTS]
        if not imports:
            out.append([])
            continue
        if simple and b"\0." not in imports and imports[:1] != b".":
            owners = fromkeys(map(owner_get, imports[:-1].split(b"\0")))
            owners.pop(None, None)
            out.append([*owners])
            continue
        names = split0(imports)
        weak = rec[R_IMWEAK]
        crcs = _u64s(rec[R_IMCRCS])
        seen: dict[int, None] = {}
        for k, n in enumerate(names):
            s = dm.find(n)
            w = weak[k]
            if s is None:
                if errsyms and not w:
                    warn.append(f"depmod: WARNING: {m.path} needs unknown symbol "
                                f"{n.decode('utf-8', 'surrogateescape')}\n")
                continue
            if check_crcs and s[1] != crcs[k] and not w and errsyms:
                warn.append(f"depmod: WARNING: {m.path} disagrees about version of symbol "
                            f"{n.decode('utf-8', 'surrogateescape')}\n")
            if s[0] is not None:
                seen[s[0]] = None
        out.append(list(seen))
    return out


def _topo_sort(dm: Depmod) -> list[int] | None:
    """depmod_calculate_dependencies(): a LIFO of the unused modules; None when a cycle is left."""
    n = len(dm.mods)
    deps = dm.deps
    users = [0] * n
    for ds in deps:
        for d in ds:
            users[d] += 1
    stack = [i for i in range(n) if users[i] == 0]
    order = [0x7FFFFFFF] * n
    k = 0
    while stack:
        i = stack.pop()
        order[i] = k
        k += 1
        for d in deps[i]:
            users[d] -= 1
            if users[d] == 0:
                stack.append(d)
    dm.users_left = users
    return order if k == n else None


def _remove_rotating(roots: list[int], m: int) -> list[int]:
    """depmod_list_remove_data() on depmod's circular list of roots: kmod_list_remove_data()
    (libkmod/libkmod-list.c) returns the node after the removed one, which becomes the list's
    head — the remaining roots, rotated to start after ``m``. Unchanged if ``m`` is not there."""
    try:
        k = roots.index(m)
    except ValueError:
        return roots
    return roots[k + 1:] + roots[:k]


def _depmod_cycle_report(dm: Depmod) -> list[str]:
    """depmod_report_cycles(), line for line: the walks it makes from each module left over by
    the sort, and the count of modules named in the cycles it prints."""
    users = dm.users_left
    deps = dm.deps
    roots = [i for i in range(len(dm.mods)) if users[i] > 0]
    limit = len(roots)
    visited = [False] * len(dm.mods)
    in_loops: set[str] = set()
    lines = []
    # depmod may walk forever on some graphs (a walk that enters a cycle without its root goes
    # round it for ever, printing ever longer lines) or abort (its stack is as deep as the
    # roots are many); kmodsim stops after so many steps and printed names, and says so
    budget = 100_000
    while roots:
        root = roots.pop(0)
        stack: list[tuple[int, tuple | None]] = [(root, None)]
        while stack and budget > 0:
            budget -= 1
            m, parent = stack.pop()
            vertex = (m, parent)
            if visited[m] and m == root:
                chain = []
                v = parent
                while v is not None:
                    chain.append(v[0])
                    in_loops.add(dm.mods[v[0]].name)
                    v = v[1]
                chain.reverse()
                budget -= len(chain)
                for c in chain:
                    roots = _remove_rotating(roots, c)
                lines.append("depmod: ERROR: Cycle detected: "
                             + " -> ".join([dm.mods[c].name for c in chain] + [dm.mods[m].name]) + "\n")
                continue
            visited[m] = True
            if not deps[m]:
                roots = _remove_rotating(roots, m)
                continue
            if len(stack) + len(deps[m]) > limit:
                budget = 0
                break
            for d in deps[m]:
                stack.append((d, vertex))
    if budget <= 0:
        lines.append("kmodsim: depmod's cycle report does not end on this graph (its walk goes round a "
                     "cycle for ever, or overflows its stack): cut here\n")
    lines.append(f"depmod: ERROR: Found {len(in_loops)} modules in dependency cycles!\n")
    return lines


# ---------------------------------------------------------------------------------------------
# The .bin indexes (kmod's index format: libkmod/libkmod-index.c describes it)
# ---------------------------------------------------------------------------------------------

INDEX_HEADER = b"\xb0\x07\xf4\x57\x00\x02\x00\x01"  # magic 0xB007F457, version 2.1, big-endian
NODE_PREFIX, NODE_VALUES, NODE_CHILDS = 0x80000000, 0x40000000, 0x20000000


class Index:
    """A key -> values map written as kmod's radix-tree index. Values are kept in the order
    depmod's index_add_value() leaves them: by priority, a later value before an earlier one of
    the same priority."""

    def __init__(self) -> None:
        self.entries: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self.seq = 0

    def insert(self, key: bytes, value: bytes, priority: int) -> bool:
        """Add a value; True if the key already had this very value (depmod's 'duplicate')."""
        vals = self.entries.setdefault(key, [])
        dup = any(v == value for _p, _s, v in vals)
        self.seq += 1
        vals.append((priority, -self.seq, value))
        return dup

    def to_bytes(self) -> bytes:
        """The file. The tree is built from the sorted keys (a node's prefix is what its keys
        share past the branch character, as depmod's node splitting leaves it) and written in
        post-order, children first, as index_write() does; the root keeps an empty prefix."""
        import bisect

        keys = sorted(self.entries)
        out = bytearray(INDEX_HEADER + b"\0\0\0\0")
        entries = self.entries
        u32 = struct.Struct(">I").pack

        def node(lo: int, hi: int, d: int, root: bool) -> int:
            a, b = keys[lo], keys[hi - 1]
            n = 0
            if not root:  # common prefix length of a[d:] and b[d:], by bisection
                top = min(len(a), len(b)) - d
                while n < top:
                    mid = (n + top + 1) >> 1
                    if a[d:d + mid] == b[d:d + mid]:
                        n = mid
                    else:
                        top = mid - 1
            d2 = d + n
            has_value = len(a) == d2
            k = lo + 1 if has_value else lo
            children: dict[int, int] = {}
            while k < hi:
                key = keys[k]
                c = key[d2]
                end = bisect.bisect_left(keys, key[:d2] + bytes((c + 1,)), k, hi) if c < 255 else hi
                children[c] = node(k, end, d2 + 1, False)
                k = end
            off = len(out)
            if n:
                out.extend(a[d:d2] + b"\0")
                off |= NODE_PREFIX
            if children:
                first, last = min(children), max(children)
                out.extend(bytes((first, last)))
                out.extend(b"".join([u32(children.get(c, 0)) for c in range(first, last + 1)]))
                off |= NODE_CHILDS
            if has_value:
                vals = sorted(entries[a])
                out.extend(u32(len(vals)))
                for prio, _s, v in vals:
                    out.extend(u32(prio) + v + b"\0")
                off |= NODE_VALUES
            return off

        # an empty index still has its root node: nothing is written for it, and the header
        # points at the offset where it would be (index_write__node() returns ftell() = 12)
        root = node(0, len(keys), 0, True) if keys else len(out)
        out[8:12] = u32(root)
        return bytes(out)


def _builtin_index(dirname: str, messages: list[str]) -> bytes | None:
    """modules.builtin.bin: the module name of each modules.builtin line (None: no such file)."""
    try:
        with open(os.path.join(dirname, "modules.builtin"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as exc:
        messages.append(f"depmod: WARNING: could not open modules.builtin at {dirname}: {exc.strerror}\n")
        return None
    idx = Index()
    for line in lines:
        if not line[:1].isalpha():
            messages.append(f"depmod: ERROR: Invalid modules.builtin line: {line.decode('utf-8', 'surrogateescape')}\n")
            continue
        base = line.rsplit(b"/", 1)[-1]
        idx.insert(re.split(rb"[.\0]", base, maxsplit=1)[0].replace(b"-", b"_"), b"", 0)
    return idx.to_bytes()


def _builtin_alias_index(dirname: str, messages: list[str]) -> bytes | None:
    """modules.builtin.alias.bin: the ``<module>.alias=<value>`` strings of modules.builtin.modinfo,
    read with depmod's stream rules (a field ends at its delimiter or at a NUL)."""
    try:
        with open(os.path.join(dirname, "modules.builtin.modinfo"), "rb") as f:
            data = f.read()
    except OSError as exc:
        messages.append(f"depmod: WARNING: could not open modules.builtin.modinfo at {dirname}: "
                        f"{exc.strerror}\n")
        return None
    idx = Index()
    pos, size = 0, len(data)

    def field(end: int) -> tuple[bytes, bool]:
        nonlocal pos
        j = data.find(b"\0", pos)
        if end:
            k = data.find(bytes((end,)), pos, j if j >= 0 else size)
            if k >= 0:
                j = k
        if j < 0:
            text, pos = data[pos:], size
            return text, False
        text, stop = data[pos:j], data[j]
        pos = j + 1
        return text, stop == end

    while pos < size:
        name, ok = field(0x2E)  # '.'
        if not ok or not name:
            continue
        key, ok = field(0x3D)  # '='
        if not ok or key != b"alias":
            field(0)  # depmod skips to the next NUL (past the following string if the key had none)
            continue
        value, ok = field(0)
        if not ok or not value:
            continue
        norm = _alias_normalize(value)
        if norm is None:
            messages.append(f"depmod: WARNING: Unmatched bracket in {value.decode('utf-8', 'surrogateescape')}\n")
            continue
        idx.insert(norm, name, 0)
    return idx.to_bytes()


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

def write_outputs(dirname: str, files: dict[str, bytes]) -> None:
    """Each file through a temporary name and a rename, as depmod does (mode 0644 less umask)."""
    import time

    stamp = f"{os.getpid()}.{int(time.time() * 1e6) % 1000000}.{int(time.time())}"
    for name, data in files.items():
        tmp = os.path.join(dirname, f"{name}.{stamp}")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(dirname, name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def up_to_date(dirname: str, messages: list[str] | None = None) -> bool:
    """depfile_up_to_date() for -A: modules.dep exists and no module file is newer (in whole
    seconds). depmod's complaints go to ``messages``; when in doubt the work is done."""
    import stat as _st

    try:
        mtime = int(os.stat(os.path.join(dirname, "modules.dep")).st_mtime)
    except OSError as exc:
        if messages is not None:
            if not os.path.isdir(dirname):
                messages.append(f"depmod: ERROR: could not open directory {dirname}: {exc.strerror}\n")
            else:
                messages.append(f"depmod: ERROR: could not fstatat({dirname}, modules.dep): {exc.strerror}\n")
        return False

    def walk(d: str) -> bool:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return True
        for e in entries:
            if e.name in ("build", "source"):
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            if _st.S_ISDIR(st.st_mode):
                if not walk(e.path):
                    return False
            elif _st.S_ISREG(st.st_mode) and e.name.endswith(KMOD_EXTENSIONS) and e.name not in KMOD_EXTENSIONS:
                if int(st.st_mtime) > mtime:
                    return False
        return True

    return walk(dirname)


def is_version_number(v: str) -> bool:
    """sscanf(v, "%u.%u") == 2."""
    return re.match(r"\s*[+-]?\d+\.\s*[+-]?\d+", v) is not None


# ---------------------------------------------------------------------------------------------
# why / deps
# ---------------------------------------------------------------------------------------------

def chains(dm: Depmod, a: int, b: int, limit: int = 50) -> list[list[int]]:
    """Every simple path from ``a`` to ``b`` along dependencies (at most ``limit``), shortest first."""
    # only modules that can reach b are worth visiting
    rev: dict[int, list[int]] = {}
    for i, ds in enumerate(dm.deps):
        for d in ds:
            rev.setdefault(d, []).append(i)
    reach = {b}
    todo = [b]
    while todo:
        for u in rev.get(todo.pop(), ()):
            if u not in reach:
                reach.add(u)
                todo.append(u)
    out: list[list[int]] = []
    if a not in reach or a == b:
        return out
    path = [a]
    onpath = {a}
    stack = [iter([d for d in dm.deps[a] if d in reach])]
    while stack and len(out) < limit:
        d = next(stack[-1], None)
        if d is None:
            stack.pop()
            onpath.discard(path.pop())
            continue
        if d == b:
            out.append(path + [b])
        elif d not in onpath:
            path.append(d)
            onpath.add(d)
            stack.append(iter([x for x in dm.deps[d] if x in reach]))
    out.sort(key=lambda c: (len(c), c))
    return out


def why(dm: Depmod, a: int, b: int) -> dict:
    """Which symbols make ``a`` need ``b``: the chains and the symbols of each edge on them."""
    cs = chains(dm, a, b)
    edges: dict[tuple[int, int], list[tuple[str, bool]]] = {}
    for c in cs:
        for x, y in zip(c, c[1:], strict=False):
            if (x, y) not in edges:
                edges[(x, y)] = dm.edge_symbols(x, y)
    name = lambda i: dm.mods[i].name  # noqa: E731
    return {
        "module": name(a), "needs": name(b), "path": dm.mods[a].path, "needs_path": dm.mods[b].path,
        "direct": b in dm.deps[a],
        "chains": [[name(i) for i in c] for c in cs],
        "edges": [{"from": name(x), "to": name(y),
                   "symbols": [s for s, w in syms if not w], "weak": [s for s, w in syms if w]}
                  for (x, y), syms in edges.items()],
    }


def dep_tree(dm: Depmod, root: int, with_symbols: bool = True) -> dict:
    """The dependency tree of ``root`` (each module expanded once; later mentions are marked
    ``"seen": true``, a module met again on its own path ``"cycle": true``)."""
    expanded: set[int] = set()

    def node(i: int, via: int | None, path: frozenset) -> dict:
        m = dm.mods[i]
        d: dict = {"name": m.name, "path": m.shown_path}
        if via is not None and with_symbols:
            syms = dm.edge_symbols(via, i)
            d["symbols"] = [s for s, w in syms if not w]
            d["weak"] = [s for s, w in syms if w]
        if i in path:
            d["cycle"] = True
            return d
        if i in expanded:
            d["seen"] = True
            return d
        expanded.add(i)
        d["deps"] = [node(x, i, path | {i}) for x in dm.deps[i]]
        return d

    return node(root, None, frozenset())


def render_tree(t: dict, out: Callable[[str], None], symbols: bool) -> None:
    def label(d: dict) -> str:
        s = f"{d['name']}  {d['path']}"
        if "symbols" in d:
            n = len(d["symbols"]) + len(d["weak"])
            s += f"  ({n} symbol{'s' if n != 1 else ''}{', weak' if d['weak'] and not d['symbols'] else ''})"
        if d.get("cycle"):
            s += "  [cycle]"
        elif d.get("seen"):
            s += "  [see above]"
        return s

    def walk(d: dict, prefix: str) -> None:
        kids = d.get("deps") or []
        for k, c in enumerate(kids):
            last = k == len(kids) - 1
            out(prefix + ("└── " if last else "├── ") + label(c))
            if symbols and "symbols" in c:
                pad = prefix + ("    " if last else "│   ")
                for s in c["symbols"]:
                    out(pad + "· " + s)
                for s in c["weak"]:
                    out(pad + "· " + s + " (weak)")
            walk(c, prefix + ("    " if last else "│   "))

    out(label(t))
    walk(t, "")
