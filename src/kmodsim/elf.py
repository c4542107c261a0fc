"""A small, bounds-checked ELF reader: headers, sections, symbols, relocations.

This is kmodsim's hot path (every module of a tree goes through it), so it is written with
``struct`` over a ``bytes``/``mmap`` buffer instead of a general ELF library; pyelftools is used
only by the tests, as an independent oracle.

Structures are kept apart from meaning (as pyelftools does): this module knows ELF, not kernel
modules. Every offset read from the file is checked against the buffer length before use, and
every problem raises :class:`ElfError` with a message that names the structure at fault, so a
malformed file can never cause an ``IndexError``/``struct.error`` traceback or a hang.

Both classes (ELF32, ELF64) and both byte orders are supported; nothing assumes x86-64.
"""

from __future__ import annotations

import functools
import struct
import sys
from array import array
from collections.abc import Iterator
from itertools import repeat
from operator import add
from typing import NamedTuple, Protocol

from .errors import Error

ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2

ET_REL, ET_EXEC, ET_DYN = 1, 2, 3
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS, SHT_REL, SHT_SYMTAB_SHNDX = 8, 9, 18

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4

SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2

# e_machine values of the architectures Linux builds modules for (elf.h).
MACHINE_NAMES = {
    2: "SPARC", 3: "i386", 8: "MIPS", 15: "PA-RISC", 20: "PowerPC", 21: "PowerPC64",
    22: "S/390", 40: "ARM", 42: "SuperH", 43: "SPARC v9", 50: "IA-64", 62: "x86-64",
    183: "AArch64", 243: "RISC-V", 258: "LoongArch",
}


class ElfError(Error):
    """The buffer is not a well-formed ELF file; the message says what is wrong."""


class Section(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index, as pyelftools' names do
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    addralign: int
    entsize: int

    @property
    def file_size(self) -> int:
        """Bytes the section occupies in the file (NOBITS occupy none)."""
        return 0 if self.type == SHT_NOBITS else self.size


class Symbol(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index
    name: str
    value: int
    size: int
    bind: int
    type: int
    shndx: int


class Relocation(NamedTuple):
    offset: int
    sym: int
    type: int
    addend: int | None  # None for SHT_REL: the addend is in the relocated field


class ImageBytes(Protocol):
    """What :class:`ElfFile` reads from: ``len()`` and contiguous slices that are bytes-like —
    bytes, bytearray, mmap, memoryview, or :class:`kmodsim.module.FileImage` (read on demand)."""

    def __len__(self) -> int: ...

    def __getitem__(self, key: slice, /) -> bytes: ...


class ElfFile:
    """A parsed ELF header and section table over ``buf``: bytes, bytearray, mmap, or anything with
    ``len()`` whose slices are bytes (:class:`kmodsim.module.FileImage` reads them on demand).

    Section contents are read lazily with :meth:`data`.

    With ``strict=False`` only the ELF header is read and checked (magic, class, byte order,
    length); the caller applies its own rules to the header's fields (``shoff``, ``shentsize``,
    ``shnum`` as stored, ``shstrndx``) and then calls :meth:`read_table`, which checks nothing
    but that the table lies in the file: no section's bounds or name are checked, and
    :meth:`in_file`/:meth:`raw` read a section's bytes whatever its type. That is how libkmod
    reads a module (:mod:`kmodsim.dependencies.kmod_view` interprets this view as libkmod does).
    """

    __slots__ = (
        "buf", "size", "ei_class", "little", "e", "type", "machine", "shoff", "shnum", "shentsize", "shstrndx",
        "header_size", "sh_type", "sh_flags", "sh_addr", "sh_offset", "sh_size", "sh_link", "sh_info",
        "sh_addralign", "sh_entsize", "sh_name_off", "_name_col", "_shstr", "_names", "_sections", "_sym_fmt",
        "_sym_size", "_sh_fmt",
    )

    def __init__(self, buf: ImageBytes, strict: bool = True) -> None:
        self.buf = buf
        self.size = n = len(buf)
        head = bytes(buf[0:64])  # one read of the ELF header (``buf`` may read on demand)
        if n < 16 or head[:4] != ELFMAG:
            raise ElfError("not an ELF file (bad magic)")
        ei_class, ei_data = head[4], head[5]
        if ei_class not in (ELFCLASS32, ELFCLASS64):
            raise ElfError(f"invalid ELF class {ei_class}")
        if ei_data not in (ELFDATA2LSB, ELFDATA2MSB):
            raise ElfError(f"invalid ELF data encoding {ei_data}")
        self.ei_class = ei_class
        self.little = ei_data == ELFDATA2LSB
        e = self.e = "<" if self.little else ">"
        if ei_class == ELFCLASS64:
            hdr_fmt, sh_fmt = e + "HHIQQQIHHHHHH", e + "IIQQQQIIQQ"
            self._sym_fmt, self._sym_size = e + "IBBHQQ", 24
        else:
            hdr_fmt, sh_fmt = e + "HHIIIIIHHHHHH", e + "IIIIIIIIII"
            self._sym_fmt, self._sym_size = e + "IIIBBH", 16
        self._sh_fmt = sh_fmt
        hdr_size = self.header_size = 16 + _calcsize(hdr_fmt)
        if n < hdr_size:
            raise ElfError(f"truncated ELF header ({n} bytes, need {hdr_size})")
        (self.type, self.machine, _ver, _entry, _phoff, shoff, _flags, _ehsize, _phentsize,
         _phnum, shentsize, shnum, shstrndx) = struct.unpack_from(hdr_fmt, head, 16)
        self.shoff, self.shentsize, self.shnum, self.shstrndx = shoff, shentsize, shnum, shstrndx
        self._names: list[str] | None = None
        self._name_col: bytes | None = None
        self._sections: list[Section] | None = None
        if strict:
            self._strict_table()

    def _strict_table(self) -> None:
        """The section table, every section's name and bounds checked (the default reader)."""
        buf, n, shoff, shentsize, shnum, shstrndx = (self.buf, self.size, self.shoff, self.shentsize,
                                                    self.shnum, self.shstrndx)
        sh_fmt = self._sh_fmt
        sh_size = _calcsize(sh_fmt)
        if shoff == 0:
            raise ElfError("no section header table")
        if shentsize != sh_size:
            raise ElfError(f"section header entry size {shentsize}, expected {sh_size}")
        if shoff + sh_size > n:
            raise ElfError(f"section header table at {shoff:#x} is past the end of the file ({n:#x} bytes)")
        if shnum == 0 or shstrndx == SHN_XINDEX:  # over SHN_LORESERVE sections: see section 0
            first = struct.unpack(sh_fmt, bytes(buf[shoff:shoff + sh_size]))
            if shnum == 0:
                shnum = first[5]
            if shstrndx == SHN_XINDEX:
                shstrndx = first[6]
        end = shoff + shnum * sh_size
        if end > n:
            raise ElfError(
                f"section header table ({shnum} entries at {shoff:#x}) extends past the end of the file "
                f"({n:#x} bytes)")
        if not 0 < shstrndx < shnum:
            raise ElfError(f"section name string table index {shstrndx} out of range")
        self.shnum, self.shstrndx = shnum, shstrndx
        self._columns(bytes(buf[shoff:end]))
        shstr = self._shstr = self._checked(self.sh_offset[shstrndx], self.sh_size[shstrndx],
                                            f"section name string table (section {shstrndx})").decode("latin-1")
        name_offs = self.sh_name_off
        # names are decoded on first use; here only proven to be there (C-level max and endswith)
        if max(name_offs) >= len(shstr) or not shstr.endswith("\0"):
            for i, o in enumerate(name_offs):
                if shstr.find("\0", o) < 0:
                    raise ElfError(f"section {i} name at {o:#x} is outside the section name table")
        if max(map(add, self.sh_offset, self.sh_size)) > n:  # NOBITS (and NULL) may point anywhere
            for i, (t, o, z) in enumerate(zip(self.sh_type, self.sh_offset, self.sh_size, strict=True)):
                if o + z > n and t != SHT_NOBITS and t != SHT_NULL:
                    raise ElfError(
                        f"section {i} ({self.sh_names[i]}) at {o:#x} size {z:#x} extends past the end "
                        f"of the file ({n:#x} bytes)")

    def _columns(self, table: bytes) -> None:
        """The table as columns, decoded at C level (the hot path reads ~50 sections per module and
        needs only a few of them): no per-section Python work unless something is wrong."""
        words = array("I")
        words.frombytes(table)
        if self.little != _HOST_LITTLE:
            words.byteswap()
        if self.ei_class == ELFCLASS64:  # Elf64_Shdr: name, type u32; flags, addr, offset, size u64;
            quads = array("Q")           # link, info u32; addralign, entsize u64
            quads.frombytes(table)
            if self.little != _HOST_LITTLE:
                quads.byteswap()
            self.sh_name_off, self.sh_type, self.sh_link, self.sh_info = (
                words[0::16], words[1::16], words[10::16], words[11::16])
            (self.sh_flags, self.sh_addr, self.sh_offset, self.sh_size, self.sh_addralign,
             self.sh_entsize) = quads[1::8], quads[2::8], quads[3::8], quads[4::8], quads[6::8], quads[7::8]
        else:  # Elf32_Shdr: ten u32 in that order
            (self.sh_name_off, self.sh_type, self.sh_flags, self.sh_addr, self.sh_offset, self.sh_size,
             self.sh_link, self.sh_info, self.sh_addralign, self.sh_entsize) = (words[k::10] for k in range(10))

    def read_table(self) -> None:
        """For ``strict=False``: the section table of the header as stored (``shnum`` entries at
        ``shoff``, no extended numbering), which must lie in the file; the section name table is
        the ``shstrndx`` one when it does too (else empty). Nothing else is checked."""
        shsz = _calcsize(self._sh_fmt)
        end = self.shoff + self.shnum * shsz
        if self.shentsize != shsz or end > self.size:
            raise ElfError("section header table does not fit the file")
        self._columns(bytes(self.buf[self.shoff:end]))
        i = self.shstrndx
        self._shstr = self.raw(i).decode("latin-1") if i < self.shnum and self.in_file(i) else ""

    def in_file(self, index: int) -> bool:
        """Whether section ``index``'s bytes (offset, size: whatever its type) lie in the file."""
        return self.sh_offset[index] + self.sh_size[index] <= self.size

    def raw(self, index: int) -> bytes:
        """The file bytes section ``index`` points at, whatever its type (check :meth:`in_file`)."""
        o = self.sh_offset[index]
        return bytes(self.buf[o:o + self.sh_size[index]])

    @property
    def section_names_table(self) -> str:
        """The section name string table (latin-1: one character per byte, offsets are valid)."""
        return self._shstr

    @property
    def sh_names(self) -> list[str]:
        """The name of every section (decoded on first use)."""
        if self._names is None:
            shstr = self._shstr
            ends = map(shstr.find, repeat("\0"), self.sh_name_off)
            self._names = list(map(shstr.__getitem__, map(slice, self.sh_name_off, ends)))
        return self._names

    @property
    def sections(self) -> list[Section]:
        """Every section header, decoded (built on first use)."""
        if self._sections is None:
            self._sections = list(map(_new, repeat(Section), zip(
                range(self.shnum), self.sh_names, self.sh_type, self.sh_flags, self.sh_addr, self.sh_offset,
                self.sh_size, self.sh_link, self.sh_info, self.sh_addralign, self.sh_entsize, strict=True)))
        return self._sections

    def indices(self, name: str) -> list[int]:
        """Indices of every section called ``name`` (usually none or one), ascending.

        Found in the name table (``find``) and then in the column of name offsets (``index``),
        both at C level; a name can be the tail of a longer one (ld merges ".text" into
        ".rela.text"), so every occurrence of it counts."""
        pat = name + "\0"
        shstr = self._shstr
        out: list[int] = []
        p = shstr.find(pat)
        if p < 0:
            return out
        col = self._name_col
        if col is None:
            col = self._name_col = self.sh_name_off.tobytes()
        while p >= 0:
            word = _pack_u32(p)
            j = col.find(word)
            while j >= 0:
                if not j & 3:  # aligned: an entry, not two halves of neighbours
                    out.append(j >> 2)
                j = col.find(word, j + 1)
            p = shstr.find(pat, p + 1)
        if len(out) > 1:
            out.sort()
        return out

    # -- helpers -------------------------------------------------------------------------------
    def _checked(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfError(f"{what} at {offset:#x} size {size:#x} extends past the end of the file")
        return self.buf[offset:offset + size]

    @property
    def is64(self) -> bool:
        return self.ei_class == ELFCLASS64

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    def section(self, name: str) -> Section | None:
        """The first section called ``name``."""
        found = self.indices(name)
        return self.section_at(found[0]) if found else None

    def section_at(self, index: int) -> Section:
        if not 0 <= index < self.shnum:
            raise ElfError(f"section index {index} out of range")
        if self._sections is not None:
            return self._sections[index]
        if self._names is not None:
            name = self._names[index]
        else:  # the one name (the table was checked to hold a NUL after every name offset)
            shstr, off = self._shstr, self.sh_name_off[index]
            name = shstr[off:shstr.find("\0", off)]
        return _new(Section, (index, name, self.sh_type[index], self.sh_flags[index],
                              self.sh_addr[index], self.sh_offset[index], self.sh_size[index],
                              self.sh_link[index], self.sh_info[index], self.sh_addralign[index],
                              self.sh_entsize[index]))

    def data(self, sec: Section) -> bytes:
        """The section's bytes (empty for NOBITS); bounds were checked when the table was read."""
        if sec.type == SHT_NOBITS or sec.type == SHT_NULL:
            return b""
        return self.buf[sec.offset:sec.offset + sec.size]

    def u32(self, data: bytes, off: int) -> int:
        if off < 0 or off + 4 > len(data):
            raise ElfError(f"read of 4 bytes at {off:#x} is outside a {len(data):#x}-byte section")
        v: int = struct.unpack_from(self.e + "I", data, off)[0]  # typed without a cast call: per export
        return v

    # -- symbols -------------------------------------------------------------------------------
    def symtab(self) -> Section | None:
        try:
            return self.section_at(self.sh_type.index(SHT_SYMTAB))
        except ValueError:
            return None

    def _symtab_parts(self, symtab: Section) -> tuple[bytes, bytes]:
        if symtab.entsize != self._sym_size:
            raise ElfError(f"symbol table entry size {symtab.entsize}, expected {self._sym_size}")
        if symtab.size % self._sym_size:
            raise ElfError(f"symbol table size {symtab.size:#x} is not a multiple of its entry size")
        strtab = self.data(self.section_at(symtab.link))
        return self.data(symtab), strtab

    def symbol_columns(self, data: bytes, values: bool = True) -> tuple[array[int], bytes, array[int], array[int]]:
        """A symbol table's bytes (whole entries) as columns: (st_name, st_info, st_shndx,
        st_value), each one C-level array slice (st_info: one byte per symbol). Without
        ``values`` the last column is left empty (ELF64: not decoded)."""
        swap = self.little != _HOST_LITTLE
        words, halves = array("I"), array("H")
        words.frombytes(data)
        halves.frombytes(data)
        if swap:
            words.byteswap()
            halves.byteswap()
        if self.is64:  # Elf64_Sym: name u32, info u8, other u8, shndx u16, value u64, size u64
            col = array("Q")
            if values:
                col.frombytes(data)
                if swap:
                    col.byteswap()
                col = col[1::3]
            return words[0::6], data[4::24], halves[3::12], col
        # Elf32_Sym: name u32, value u32, size u32, info u8, other u8, shndx u16
        return words[0::4], data[12::16], halves[7::8], words[1::4]

    def symbol_arrays(self, symtab: Section | None = None) -> tuple[array[int], bytes, array[int], array[int], str]:
        """The symbol table as columns: (st_name, st_info, st_shndx, st_value, string table).

        The hot path of :mod:`kmodsim.module`: every column comes out of one C-level array slice,
        so callers select the symbols they need with ``itertools.compress`` and friends before
        anything is decoded one by one. The string table is decoded once as latin-1, which maps
        every byte to one character, so string offsets stay valid and no name is ever altered.
        """
        symtab = symtab or self.symtab()
        if symtab is None:
            return array("I"), b"", array("H"), array("I"), ""
        data, strtab = self._symtab_parts(symtab)
        return (*self.symbol_columns(data), strtab.decode("latin-1"))

    def symbol_at(self, data: bytes, i: int) -> tuple[int, int, int, int, int]:
        """(st_name, st_value, st_size, st_info, st_shndx) of symbol ``i`` of ``data``."""
        if self.is64:
            nm, info, _o, shndx, val, sz = struct.unpack_from(self._sym_fmt, data, i * 24)
        else:
            nm, val, sz, info, _o, shndx = struct.unpack_from(self._sym_fmt, data, i * 16)
        return nm, val, sz, info, shndx

    def symbols(self, symtab: Section | None = None) -> Iterator[Symbol]:
        """Every symbol, decoded (the general, slower interface)."""
        symtab = symtab or self.symtab()
        if symtab is None:
            return
        data, strtab = self._symtab_parts(symtab)
        for i in range(len(data) // self._sym_size):
            nm, val, sz, info, shndx = self.symbol_at(data, i)
            yield Symbol(i, _cstr(strtab, nm, "symbol name"), val, sz, info >> 4, info & 0xF, shndx)

    # -- relocations ---------------------------------------------------------------------------
    def relocation_sections(self, target: Section) -> list[Section]:
        """The SHT_REL/SHT_RELA sections that apply to ``target``."""
        return [s for s in self.sections if s.type in (SHT_REL, SHT_RELA) and s.info == target.index]

    def relocations(self, relsec: Section) -> Iterator[Relocation]:
        rela = relsec.type == SHT_RELA
        e = self.e
        if self.is64:
            fmt = e + ("QQq" if rela else "QQ")
        else:
            fmt = e + ("IIi" if rela else "II")
        size = struct.calcsize(fmt)
        if relsec.size % size:
            raise ElfError(f"relocation section {relsec.name} size is not a multiple of {size}")
        for row in struct.iter_unpack(fmt, self.data(relsec)):
            info = row[1]
            if self.is64:
                sym, typ = info >> 32, info & 0xFFFFFFFF
            else:
                sym, typ = info >> 8, info & 0xFF
            yield Relocation(row[0], sym, typ, row[2] if rela else None)


_HOST_LITTLE = sys.byteorder == "little"
_calcsize = functools.lru_cache(maxsize=None)(struct.calcsize)  # the few formats above, once each
_new = tuple.__new__
_pack_u32 = struct.Struct("=I").pack  # a u32 in host order, as array("I") holds it


def _cstr(table: bytes | str, offset: int, what: str) -> str:
    """The NUL-terminated string at ``offset`` of a string table."""
    if offset >= len(table):
        if offset == 0:
            return ""
        raise ElfError(f"{what} offset {offset:#x} is outside its string table ({len(table):#x} bytes)")
    if isinstance(table, str):
        end = table.find("\0", offset)
        if end < 0:
            raise ElfError(f"{what} at {offset:#x} is not NUL-terminated")
        return table[offset:end]
    end = table.find(b"\0", offset)
    if end < 0:
        raise ElfError(f"{what} at {offset:#x} is not NUL-terminated")
    return table[offset:end].decode("latin-1")


cstr = _cstr
