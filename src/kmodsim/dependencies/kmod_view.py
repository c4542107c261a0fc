"""libkmod's view of one module, as kmod 30's depmod reads it (``libkmod/libkmod-elf.c``):
exports with their CRCs, imports, ``.modinfo`` aliases and softdeps. A record
(:class:`KmodRecord`) is what the depmod cache stores for each file.

This is an interpretation, not a decoder: the ELF header, the section table and the symbol table
come from :class:`kmodsim.elf.ElfFile` (read with ``strict=False``, which leaves the checks to
the caller), and this module applies libkmod's rules to them — kmod_elf_new()'s checks in its
own words, sections looked up by name (the first whose bytes lie in the file), symbols from the
sections named ``.symtab``/``.strtab``, exports from ``__crc_`` symbols else
``__ksymtab_strings``, imports including weak ones and the ``__versions`` entries no symbol
matched, ``alias``/``softdep`` strings as kmod_elf_get_strings() splits ``.modinfo``."""

from __future__ import annotations

import marshal
import re
import struct
import sys
from array import array
from collections.abc import Iterable
from itertools import compress, repeat
from operator import itemgetter
from typing import NamedTuple

from ..discovery import superfasthash
from ..elf import ELFMAG, ElfError, ElfFile, ImageBytes
from ..module import DEFAULT_MAX_SIZE, ModuleError, open_image, record_of
from ..parallel import parallel_map

# ---------------------------------------------------------------------------------------------
# kmod's view of one module
# ---------------------------------------------------------------------------------------------


class KmodRecord(NamedTuple):
    """libkmod's view of one module, as depmod uses it: what workers send and the depmod cache
    stores (marshalled as a plain tuple: :meth:`dumps`, :meth:`loads`, :meth:`of`). Fields are read
    by name only; :data:`RECORD_VERSION` is derived from their names, so adding one (and filling
    it in :func:`kmod_view`) is all a new field takes: every cache of older records is rebuilt."""

    exports: bytes  # NUL-terminated names, joined
    export_crcs: bytes  # array('Q')
    export_hashes: bytes  # array('I'): superfasthash of each export name
    imports: bytes  # NUL-terminated names, joined
    import_weak: bytes  # one byte per import: 1 if STB_WEAK
    import_crcs: bytes  # array('Q')
    aliases: bytes  # the values of .modinfo's alias keys in file order, NUL-terminated, joined (a
    softdeps: bytes  # string without '=' is its own key and value, as libkmod reads it); softdep's
    weakdeps: bytes  # ... and weakdep's (MODULE_WEAKDEP(), read by kmod 33+'s depmod: 05828b4)
    problem: str  # "" or why the file is unreadable

    def dumps(self) -> bytes:
        return marshal.dumps(tuple(self))

    @classmethod
    def loads(cls, blob: bytes) -> KmodRecord:
        return cls.of(marshal.loads(blob))

    @classmethod
    def loads_all(cls, blobs: list[bytes]) -> list[KmodRecord | None]:
        """:meth:`loads` of many blobs at C speed (a warm run loads thousands): None for each
        blob that is not a record of this version."""
        ts = list(map(marshal.loads, blobs))
        if set(map(len, ts)) <= {len(cls._fields)} and set(map(type, ts)) <= {tuple}:
            return list(map(tuple.__new__, repeat(cls), ts))
        out: list[KmodRecord | None] = []
        for t in ts:
            try:
                out.append(cls.of(t))
            except ValueError:
                out.append(None)
        return out

    @classmethod
    def of(cls, t: tuple[object, ...]) -> KmodRecord:
        """A record from its plain tuple; ValueError if it is not one of this version."""
        return record_of(cls, t, f"depmod record of version {RECORD_SCHEMA}")


# The record's version: a schema number (bumped by hand only when what a field means changes) and
# the field names (a change of the layout changes it by itself). The depmod cache and memo key on it.
RECORD_SCHEMA = 1
RECORD_VERSION = (RECORD_SCHEMA, KmodRecord._fields)
EMPTY_RECORD = KmodRecord(b"", b"", b"", b"", b"", b"", b"", b"", b"", "")
_WEAK = bytes(1 if c >> 4 == 2 else 0 for c in range(256))  # st_info -> STB_WEAK?
_HOST_LITTLE = sys.byteorder == "little"


class _Bad(Exception):
    pass


def _join(items: list[bytes]) -> bytes:
    return b"\0".join(items) + b"\0" if items else b""


def split0(b: bytes) -> list[bytes]:
    return b.split(b"\0")[:-1] if b else []


def u64s(raw: bytes) -> list[int]:
    a = array("Q")
    a.frombytes(raw)
    return a.tolist()


def u32s(raw: bytes) -> list[int]:
    a = array("I")
    a.frombytes(raw)
    return a.tolist()


def kmod_view(buf: ImageBytes, crcs: bool = True) -> KmodRecord:
    """What libkmod reads from a module image (decompressed): see the module docstring. Without
    ``crcs`` the CRCs imports expect are left out (zero): only ``-e -E`` compares them, and a
    record without them is never cached.

    The image is read by :class:`kmodsim.elf.ElfFile` (``strict=False``: the header, then the
    section table as columns); what follows is libkmod's reading of it (libkmod-elf.c):
    kmod_elf_new()'s checks, sections found by name (the first whose bytes lie in the file,
    whatever its type), symbols from the sections *named* ``.symtab`` and ``.strtab``."""
    elf = _header(buf)
    size = elf.size
    if elf.shentsize != (64 if elf.is64 else 40):
        raise _Bad(f"unexpected section header size {elf.shentsize}")
    if elf.shoff + elf.shnum * elf.shentsize > size:
        raise _Bad("file too short to hold its section headers")
    elf.read_table()
    if elf.shstrndx == 0 or elf.shstrndx >= elf.shnum:
        raise _Bad(f"bad section name table index {elf.shstrndx}")
    if not elf.in_file(elf.shstrndx) or elf.sh_size[elf.shstrndx] == 0 or not elf.section_names_table.endswith("\0"):
        raise _Bad("section name table out of bounds or not NUL-terminated")

    def section(name: str) -> bytes | None:
        """The first section (from index 1) whose name is ``name`` and whose data is in the file."""
        for i in elf.indices(name):
            if i and elf.in_file(i):
                return elf.raw(i)
        return None

    symtab_sec, strtab_sec = section(".symtab"), section(".strtab")
    symlen = 24 if elf.is64 else 16
    ok = symtab_sec is not None and strtab_sec is not None and len(symtab_sec) % symlen == 0
    symtab, strtab = symtab_sec or b"", strtab_sec or b""
    strlen = len(strtab)
    if ok and not strtab.endswith(b"\0"):
        strtab += b"\0"
    names = shndx = array("I")
    info = b""
    if ok:
        names, info, shndx, _values = elf.symbol_columns(symtab, values=False)
    nsym = len(names)

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
                ex_crcs = _crcs(elf, get(elf.symbol_columns(symtab)[3]), get(shndx))
    if not use_crcs:
        ks = section("__ksymtab_strings")
        if ks:
            ex_names = [x for x in ks.split(b"\0") if x]
            ex_crcs = [0] * len(ex_names)

    # -- imports (kmod_elf_get_dependency_symbols) --
    im_names: list[bytes] = []
    im_weak: bytes = b""
    im_crcs: list[int] = []
    if ok:
        idx = _zeros(shndx)  # undefined: st_shndx == 0
        if elf.machine in (2, 43):  # SPARC: STT_REGISTER symbols are not really undefined
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
            vers = section("__versions")
            if vers and len(vers) % 64 == 0:
                crclen = 8 if elf.is64 else 4
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
                    words = array("Q" if elf.is64 else "I")
                    words.frombytes(vers)
                    if elf.little != _HOST_LITTLE:
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
    weakdeps: list[bytes] = []
    mi = section(".modinfo")
    if mi:
        aliases = [v[1:] if v else b"alias" for v in _ALIAS.findall(mi)]
        if b"softdep" in mi:
            softdeps = [v[1:] if v else b"softdep" for v in _SOFTDEP.findall(mi)]
        if b"weakdep" in mi:  # kmod 33+, 05828b4 "libkmod: add weak dependecies"
            weakdeps = [v[1:] if v else b"weakdep" for v in _WEAKDEP.findall(mi)]

    return KmodRecord(
        exports=_join(ex_names), export_crcs=array("Q", ex_crcs).tobytes(),
        export_hashes=array("I", map(superfasthash, ex_names)).tobytes(),
        imports=_join(im_names), import_weak=im_weak, import_crcs=array("Q", im_crcs).tobytes(),
        aliases=_join(aliases), softdeps=_join(softdeps), weakdeps=_join(weakdeps), problem="")


def _zeros(shndx: array[int]) -> list[int]:
    """Indices (from 1) of the zeros of the u16 column ``shndx``: a zero first byte found with
    ``bytes.find``, then the second byte looked at."""
    raw = shndx.tobytes()
    b0, b1 = raw[0::2], raw[1::2]
    out = []
    i = b0.find(0, 1)
    while i >= 0:
        if not b1[i]:
            out.append(i)
        i = b0.find(0, i + 1)
    return out


def _header(buf: ImageBytes) -> ElfFile:
    """The ELF header as kmod_elf_new() accepts it, in its words: more than 16 bytes with the
    magic, a known class and byte order, longer than the ELF header."""
    try:
        elf = ElfFile(buf, strict=False)
    except ElfError:
        head = bytes(buf[0:6])
        if len(buf) <= 16 or head[:4] != ELFMAG:
            raise _Bad("not an ELF file") from None
        if head[4] not in (1, 2) or head[5] not in (1, 2):
            raise _Bad(f"unknown ELF class {head[4]} / data encoding {head[5]}") from None
        raise _Bad("file too short for an ELF header") from None
    if elf.size <= 16:
        raise _Bad("not an ELF file")
    if elf.size <= elf.header_size:
        raise _Bad("file too short for an ELF header")
    return elf


# a .modinfo string (NUL or the start before it, NUL or the end after it) with the key alias or
# softdep: "=value", or "" for the bare key (libkmod then takes the key as the value too)
_ALIAS = re.compile(rb"(?<![^\0])alias(=[^\0]*|(?![^\0]))")
_SOFTDEP = re.compile(rb"(?<![^\0])softdep(=[^\0]*|(?![^\0]))")
_WEAKDEP = re.compile(rb"(?<![^\0])weakdep(=[^\0]*|(?![^\0]))")


def _crcs(elf: ElfFile, values: Iterable[int], where: Iterable[int]) -> list[int]:
    """kmod_elf_resolve_crc() of each (st_value, st_shndx): an absolute CRC is the value itself,
    a CRC in a section is the u32 at that offset in it (-1 as u64 when out of bounds)."""
    bad = 0xFFFFFFFFFFFFFFFF
    out = []
    cache: dict[int, bytes] = {}
    u32 = struct.Struct(elf.e + "I").unpack_from
    for v, sh in zip(values, where, strict=True):
        if sh in (0, 0xFFF1):
            out.append(v)
            continue
        data = cache.get(sh)
        if data is None:
            if sh >= elf.shnum or not elf.in_file(sh):
                out.append(bad)
                continue
            data = cache[sh] = elf.raw(sh)
        out.append(u32(data, v)[0] if v <= (len(data) - 4) % (1 << 64) and v + 4 <= len(data) else bad)
    return out


def read_record(path: str, max_size: int = DEFAULT_MAX_SIZE, crcs: bool = True) -> KmodRecord:
    """kmod's view of one module file; a file that cannot be read gives an empty record naming
    the problem (depmod keeps such a module, with no symbols and no dependencies)."""
    try:
        buf, _fmt, _size, _key = open_image(path, max_size)  # read on demand, or the decompressed bytes
    except ModuleError as exc:
        return EMPTY_RECORD._replace(problem=exc.problem)
    try:
        return kmod_view(buf, crcs)
    except _Bad as exc:
        return EMPTY_RECORD._replace(problem=str(exc))
    except Exception as exc:  # anything a hostile file provokes is reported, never raised
        return EMPTY_RECORD._replace(problem=f"unreadable module ({type(exc).__name__}: {exc})")
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def read_records(paths: list[str], jobs: int | None = None, max_size: int = DEFAULT_MAX_SIZE,
                 crcs: bool = True, progress: bool | None = False) -> dict[str, KmodRecord]:
    """Records of ``paths``, read by ``jobs`` processes (default: all cores), shared out in
    discovery order by :func:`kmodsim.parallel.parallel_map` (the parent takes a share too).
    ``progress``: the bar ``scan`` shows (None: on a terminal only)."""
    from ..parallel import Progress

    # workers send plain tuples (marshal takes no tuple subclass)
    res = parallel_map(lambda p: tuple(read_record(p, max_size, crcs)), paths, jobs,
                       Progress(progress, len(paths)))
    return dict(zip(paths, map(KmodRecord.of, res), strict=True))
