"""Struct layouts of a built kernel, from its BTF (the ``.BTF`` section of vmlinux).

The oracle asks the real kernel for fields of ``struct module`` (the sizes of a module's memory,
read by a kprobe on ``do_init_module()``), and the offsets of those fields depend on the kernel's
configuration. A kernel built with CONFIG_DEBUG_INFO_BTF (Debian's are) describes its own types in
``.BTF``: this module reads that, as ``include/uapi/linux/btf.h`` lays it out, far enough to answer
"at which byte of struct S is the field a.b[i].c, and how wide is it".

Type records (``struct btf_type``: name_off, info, size_or_type) are followed by kind-specific
data whose length depends on the kind and on ``vlen`` (info bits 0-15); kind is info bits 24-28,
and ``kind_flag`` (bit 31) on a struct or union means member offsets carry a bitfield size in their
top 8 bits. Type ids start at 1 (0 is void).
"""

from __future__ import annotations

import re
import struct
from typing import Any

from .errors import Error

BTF_MAGIC = 0xEB9F

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19

# bytes of kind-specific data: fixed, or per vlen item
_FIXED = {KIND_INT: 4, KIND_ARRAY: 12, KIND_VAR: 4, KIND_DECL_TAG: 4}
_PER_ITEM = {KIND_STRUCT: 12, KIND_UNION: 12, KIND_ENUM: 8, KIND_FUNC_PROTO: 8, KIND_DATASEC: 12,
             KIND_ENUM64: 12}
_QUALIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)
_PLAIN = frozenset((KIND_PTR, KIND_FWD, KIND_FUNC, KIND_FLOAT, *_QUALIFIERS, *_FIXED, *_PER_ITEM))  # known kinds


class BtfError(Error):
    pass


class Btf:
    """The types of one ``.BTF`` blob: ``type(id) = (kind, name, size_or_type, extra)`` where
    ``extra`` is, by kind: the member list of a struct/union ``[(name, type, bit offset, bitfield
    size)]``; for an array ``(element type, count)``; an enum's ``[(name, value)]``; a function
    prototype's parameters ``[(name, type)]`` (the type 0 of a last, nameless one: ``...``); an
    int's encoding word (``BTF_INT_ENCODING``/offset/bits); a function's or variable's linkage; for
    a forward declaration, whether it declares a union; else None.

    A module's ``.BTF`` is *split* BTF (``base``: the vmlinux it was built against, whose types it
    refers to by id): its own type ids start after the base's last, and its string offsets after
    the base's string section (``btf_parse_hdr()``/``btf__new_split()`` in libbpf)."""

    def __init__(self, data: bytes, base: Btf | None = None) -> None:
        if len(data) < 24:
            raise BtfError("BTF data too short for its header")
        for e in ("<", ">"):
            magic, _version, _flags, hdr_len = struct.unpack_from(e + "HBBI", data, 0)
            if magic == BTF_MAGIC:
                break
        else:
            raise BtfError("not BTF data (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from(e + "IIII", data, 8)
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if tstart + type_len > len(data) or sstart + str_len > len(data):
            raise BtfError("BTF sections extend past the end of the data")
        self.base = base
        self._strings: bytes = b""
        self._str_base: int = 0
        self.first_id = 1 if base is None else base.last_id + 1
        self._str_base = 0 if base is None else base._str_base + len(base._strings)
        self._strings = data[sstart:sstart + str_len]
        self._data = data
        self._e = e
        # where each type record starts: own types only, decoded on first use (a base's list
        # starts with id 0, void)
        pos_list: list[int] = [-1] if base is None else []
        head = struct.Struct(e + "III").unpack_from
        fixed, per_item, plain = _FIXED.get, _PER_ITEM.get, _PLAIN
        pos, end = tstart, tstart + type_len
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"truncated type record at {pos - tstart:#x}")
            info = head(data, pos)[1]
            kind = (info >> 24) & 0x1F
            n = fixed(kind, 0) + per_item(kind, 0) * (info & 0xFFFF)
            if not n and kind not in plain:
                raise BtfError(f"unknown BTF kind {kind} (type {self.first_id + len(pos_list) - (base is None)})")
            if pos + 12 + n > end:
                raise BtfError(f"truncated type record at {pos - tstart:#x}")
            pos_list.append(pos)
            pos += 12 + n
        self._pos = pos_list
        self._types: list[tuple[Any, ...] | None] = [None] * len(pos_list)
        self._named: dict[tuple[int, str], list[int]] | None = None

    def _decode(self, i: int) -> tuple[Any, ...]:
        data, e, pos = self._data, self._e, self._pos[i]
        name_off, info, size_or_type = struct.unpack_from(e + "III", data, pos)
        pos += 12
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        extra: Any = None
        if kind in (KIND_STRUCT, KIND_UNION):
            raw = struct.unpack_from(f"{e}{3 * vlen}I", data, pos)
            if kflag:
                extra = [(self._str(raw[k]), raw[k + 1], raw[k + 2] & 0xFFFFFF, raw[k + 2] >> 24)
                         for k in range(0, 3 * vlen, 3)]
            else:
                extra = [(self._str(raw[k]), raw[k + 1], raw[k + 2], 0) for k in range(0, 3 * vlen, 3)]
        elif kind == KIND_ARRAY:
            elem, _index, count = struct.unpack_from(e + "III", data, pos)
            extra = (elem, count)
        elif kind == KIND_ENUM:
            raw = struct.unpack_from(f"{e}{2 * vlen}I", data, pos)
            extra = [(self._str(raw[k]), raw[k + 1] - ((raw[k + 1] >> 31) << 32) if kflag else raw[k + 1])
                     for k in range(0, 2 * vlen, 2)]
        elif kind == KIND_ENUM64:
            raw = struct.unpack_from(f"{e}{3 * vlen}I", data, pos)
            extra = []
            for k in range(0, 3 * vlen, 3):
                v = raw[k + 2] << 32 | raw[k + 1]
                extra.append((self._str(raw[k]), v - (1 << 64) if kflag and v >> 63 else v))
        elif kind == KIND_FUNC_PROTO:
            raw = struct.unpack_from(f"{e}{2 * vlen}I", data, pos)
            extra = [(self._str(raw[k]), raw[k + 1]) for k in range(0, 2 * vlen, 2)]
        elif kind in (KIND_INT, KIND_VAR):
            extra = struct.unpack_from(e + "I", data, pos)[0]
        elif kind == KIND_FUNC:
            extra = vlen
        elif kind == KIND_FWD:
            extra = bool(kflag)
        t = (kind, self._str(name_off), size_or_type, extra)
        self._types[i] = t
        return t

    @property
    def named(self) -> dict[tuple[int, str], list[int]]:
        """(kind, name) -> the ids of this BTF's own structs, unions, functions and variables of
        that name (built on first use)."""
        if self._named is None:
            named: dict[tuple[int, str], list[int]] = {}
            data, unpack = self._data, struct.Struct(self._e + "II").unpack_from
            first = self.first_id - (1 if self.base is None else 0)
            wanted = (KIND_STRUCT, KIND_UNION, KIND_FUNC, KIND_VAR)
            for i, pos in enumerate(self._pos):
                if pos < 0:
                    continue
                name_off, info = unpack(data, pos)
                kind = (info >> 24) & 0x1F
                if name_off and kind in wanted:
                    named.setdefault((kind, self._str(name_off)), []).append(first + i)
            self._named = named
        return self._named

    def type(self, tid: int) -> tuple[Any, ...] | None:
        """The type record of id ``tid`` (None: void); a split BTF answers its base's ids from its base."""
        if self.base is None:
            i = tid
        elif tid < self.first_id:
            return self.base.type(tid)
        else:
            i = tid - self.first_id
        if not 0 <= i < len(self._types):
            raise BtfError(f"type id {tid} out of range (last: {self.last_id})")
        t = self._types[i]
        if t is None and self._pos[i] >= 0:
            return self._decode(i)
        return t

    @property
    def last_id(self) -> int:
        """The highest type id (of a split BTF: its own)."""
        return self.first_id + len(self._pos) - (2 if self.base is None else 1)

    def _str(self, off: int) -> str:
        if off < self._str_base:
            assert self.base is not None
            return self.base._str(off)
        off -= self._str_base
        if off >= len(self._strings):
            raise BtfError(f"string offset {off + self._str_base:#x} past the string section")
        end = self._strings.find(b"\0", off)
        if end < 0:
            raise BtfError(f"string at {off:#x} is not NUL-terminated")
        return self._strings[off:end].decode("utf-8", "replace")

    def _resolve(self, tid: int) -> int:
        t = self.type(tid)
        for _ in range(256):  # a chain of typedefs and qualifiers; longer: a loop (malformed data)
            if t is None or t[0] not in _QUALIFIERS:
                return tid
            tid = t[2]
            t = self.type(tid)
        raise BtfError(f"type {tid}: typedefs and qualifiers loop")

    def size_of(self, tid: int) -> int:
        tid = self._resolve(tid)
        t = self.type(tid)
        if t is None:
            raise BtfError("void has no size")
        if t[0] == KIND_ARRAY:
            elem, count = t[3]
            return self.size_of(elem) * int(count)
        if t[0] == KIND_PTR:
            raise BtfError("pointer size is not recorded in BTF")
        return int(t[2])

    def struct_id(self, name: str) -> int:
        ids = self.named.get((KIND_STRUCT, name))
        if not ids:
            raise BtfError(f"struct {name}: not in this BTF")
        return ids[0]

    def offset_of(self, struct_name: str, path: str) -> tuple[int, int]:
        """(byte offset, byte size) of ``path`` — ``a.b``, ``mem[2].size`` — in ``struct_name``."""
        tid = self.struct_id(struct_name)
        off_bits = 0
        for part in path.split("."):
            m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part)
            if m is None:
                raise BtfError(f"bad field path {path!r}")
            t = self.type(self._resolve(tid))
            if t is None or t[0] not in (KIND_STRUCT, KIND_UNION):
                raise BtfError(f"{path}: {part} is not inside a struct")
            found = self._member(t, m.group(1))
            if found is None:
                raise BtfError(f"struct {struct_name}: no field {path}")
            mbits, tid = found
            off_bits += mbits
            if m.group(2) is not None:
                arr = self.type(self._resolve(tid))
                if arr is None or arr[0] != KIND_ARRAY:
                    raise BtfError(f"{path}: {m.group(1)} is not an array")
                elem, count = arr[3]
                i = int(m.group(2))
                if i >= count:
                    raise BtfError(f"{path}: index {i} out of range ({count} elements)")
                off_bits += 8 * i * self.size_of(elem)
                tid = elem
        if off_bits % 8:
            raise BtfError(f"{path}: a bitfield")
        return off_bits // 8, self.size_of(tid)

    def _member(self, t: tuple[Any, ...], name: str) -> tuple[int, int] | None:
        """(bit offset, type) of a member, looking into anonymous structs and unions too."""
        for m_name, m_type, m_off, _bits in t[3]:
            if m_name == name:
                return m_off, m_type
            if not m_name:
                inner = self.type(self._resolve(m_type))
                if inner is not None and inner[0] in (KIND_STRUCT, KIND_UNION):
                    found = self._member(inner, name)
                    if found is not None:
                        return m_off + found[0], found[1]
        return None

    def has_field(self, struct_name: str, path: str) -> bool:
        try:
            self.offset_of(struct_name, path)
        except BtfError:
            return False
        return True


def vmlinux_btf(vmlinuz_or_vmlinux: str, max_size: int = 1 << 30) -> Btf:
    """The BTF of a kernel image (a bzImage ``vmlinuz`` or a ``vmlinux`` ELF)."""
    from .elf import ElfError, ElfFile
    from .kernel import extract_vmlinux

    with open(vmlinuz_or_vmlinux, "rb") as f:
        data = f.read()
    if not data.startswith(b"\x7fELF"):
        payload = extract_vmlinux(data, max_size)
        if payload is None:
            raise BtfError(f"{vmlinuz_or_vmlinux}: no vmlinux found in the image")
        data = payload
    try:
        elf = ElfFile(data)
    except ElfError as exc:
        raise BtfError(f"{vmlinuz_or_vmlinux}: {exc}") from None
    sec = elf.section(".BTF")
    if sec is None:
        raise BtfError(f"{vmlinuz_or_vmlinux}: no .BTF section (kernel built without CONFIG_DEBUG_INFO_BTF)")
    return Btf(elf.data(sec))


def module_btf(path: str, base: Btf, max_size: int = 1 << 30) -> Btf | None:
    """The split BTF of a module file (plain or compressed: :func:`kmodsim.module.open_image`), on
    top of ``base`` (the vmlinux it was built against); None when it has no ``.BTF`` section.
    Raises :class:`BtfError` naming the file when it cannot be read."""
    from .elf import ElfError, ElfFile
    from .module import FileImage, ModuleError, open_image

    try:
        img, _fmt, _size, _key = open_image(path, max_size)
    except ModuleError as exc:
        raise BtfError(str(exc)) from None
    try:
        elf = ElfFile(img)
        sec = elf.section(".BTF")
        data = None if sec is None else bytes(elf.data(sec))
    except ElfError as exc:
        raise BtfError(f"{path}: {exc}") from None
    finally:
        if isinstance(img, FileImage):
            img.close()
    if data is None:
        return None
    try:
        return Btf(data, base)
    except BtfError as exc:
        raise BtfError(f"{path}: .BTF: {exc}") from None
