"""libkmod's view of one module, as kmod 30's depmod reads it (``libkmod/libkmod-elf.c``):
exports with their CRCs, imports, ``.modinfo`` aliases and softdeps. A record is what the depmod
cache stores for each file."""

from __future__ import annotations

import re
import struct
import sys
from array import array
from itertools import compress, repeat
from operator import itemgetter

from ..discovery import superfasthash
from ..module import DEFAULT_MAX_SIZE, ModuleError, read_image
from ..tree import parallel_map

# ---------------------------------------------------------------------------------------------
# kmod's view of one module
# ---------------------------------------------------------------------------------------------
#
# A record is a marshal-able tuple (stored as is in the cache):
#   (exports, export_crcs, export_hashes, imports, import_weak, import_crcs, aliases, softdeps,
#    weakdeps, problem)
# exports/imports/aliases/softdeps/weakdeps: NUL-terminated byte strings joined; *_crcs: array('Q') bytes;
# hashes: array('I') bytes (superfasthash of each export name); import_weak: one byte per import;
# aliases/softdeps/weakdeps: the values of .modinfo's ``alias``/``softdep``/``weakdep`` keys in
# file order (weakdep: MODULE_WEAKDEP(), read by kmod 33+'s depmod) (a string
# without '=' is its own key and value, as libkmod reads it); problem: "" or why the file is
# unreadable.

EMPTY_RECORD = (b"", b"", b"", b"", b"", b"", b"", b"", b"", "")
R_EXPORTS, R_EXCRCS, R_EXHASH, R_IMPORTS, R_IMWEAK, R_IMCRCS, R_ALIASES, R_SOFTDEPS, R_WEAKDEPS, R_PROBLEM = range(10)
_WEAK = bytes(1 if c >> 4 == 2 else 0 for c in range(256))  # st_info -> STB_WEAK?


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
    weakdeps: list[bytes] = []
    mi = section(b".modinfo")
    if mi:
        aliases = [v[1:] if v else b"alias" for v in _ALIAS.findall(mi)]
        if b"softdep" in mi:
            softdeps = [v[1:] if v else b"softdep" for v in _SOFTDEP.findall(mi)]
        if b"weakdep" in mi:  # kmod 33+, 05828b4 "libkmod: add weak dependecies"
            weakdeps = [v[1:] if v else b"weakdep" for v in _WEAKDEP.findall(mi)]

    return (_join(ex_names), array("Q", ex_crcs).tobytes(), array("I", map(superfasthash, ex_names)).tobytes(),
            _join(im_names), im_weak, array("Q", im_crcs).tobytes(), _join(aliases), _join(softdeps),
            _join(weakdeps), "")


# a .modinfo string (NUL or the start before it, NUL or the end after it) with the key alias or
# softdep: "=value", or "" for the bare key (libkmod then takes the key as the value too)
_ALIAS = re.compile(rb"(?<![^\0])alias(=[^\0]*|(?![^\0]))")
_SOFTDEP = re.compile(rb"(?<![^\0])softdep(=[^\0]*|(?![^\0]))")
_WEAKDEP = re.compile(rb"(?<![^\0])weakdep(=[^\0]*|(?![^\0]))")


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
    from ..tree import _progress

    return dict(zip(paths, parallel_map(lambda p: read_record(p, max_size, crcs), paths, jobs,
                                        _progress(progress, len(paths))), strict=True))
