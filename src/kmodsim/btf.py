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


class BtfError(Error):
    pass


class Btf:
    """The types of one ``.BTF`` blob: ``types[id] = (kind, name, size_or_type, extra)`` where
    ``extra`` is the member list of a struct/union ``[(name, type, bit offset)]`` or, for an
    array, ``(element type, count)``."""

    def __init__(self, data: bytes) -> None:
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
        self._strings = data[sstart:sstart + str_len]
        self.types: list[tuple | None] = [None]  # id 0: void
        self._by_name: dict[tuple[int, str], int] = {}
        head = struct.Struct(e + "III")
        member = struct.Struct(e + "III")
        pos, end = tstart, tstart + type_len
        while pos < end:
            if pos + 12 > end:
                raise BtfError(f"truncated type record at {pos - tstart:#x}")
            name_off, info, size_or_type = head.unpack_from(data, pos)
            pos += 12
            kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            extra: list | tuple | None = None
            if kind in (KIND_STRUCT, KIND_UNION):
                members: list[tuple[str, int, int]] = []
                extra = members
                for k in range(vlen):
                    m_name, m_type, m_off = member.unpack_from(data, pos + 12 * k)
                    members.append((self._str(m_name), m_type, (m_off & 0xFFFFFF) if kflag else m_off))
            elif kind == KIND_ARRAY:
                elem, _index, count = struct.unpack_from(e + "III", data, pos)
                extra = (elem, count)
            n = _FIXED.get(kind, 0) + _PER_ITEM.get(kind, 0) * vlen
            if kind not in _FIXED and kind not in _PER_ITEM and kind not in (
                    KIND_PTR, KIND_FWD, KIND_FUNC, KIND_FLOAT, *_QUALIFIERS):
                raise BtfError(f"unknown BTF kind {kind} (type {len(self.types)})")
            pos += n
            name = self._str(name_off)
            tid = len(self.types)
            self.types.append((kind, name, size_or_type, extra))
            if name and kind in (KIND_STRUCT, KIND_UNION):
                self._by_name.setdefault((kind, name), tid)

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        if end < 0:
            raise BtfError(f"string at {off:#x} is not NUL-terminated")
        return self._strings[off:end].decode("utf-8", "replace")

    def _resolve(self, tid: int) -> int:
        t = self.types[tid]
        while t is not None and t[0] in _QUALIFIERS:
            tid = t[2]
            t = self.types[tid]
        return tid

    def size_of(self, tid: int) -> int:
        tid = self._resolve(tid)
        t = self.types[tid]
        if t is None:
            raise BtfError("void has no size")
        if t[0] == KIND_ARRAY:
            elem, count = t[3]
            return self.size_of(elem) * count
        if t[0] == KIND_PTR:
            raise BtfError("pointer size is not recorded in BTF")
        return t[2]

    def struct_id(self, name: str) -> int:
        tid = self._by_name.get((KIND_STRUCT, name))
        if tid is None:
            raise BtfError(f"struct {name}: not in this BTF")
        return tid

    def offset_of(self, struct_name: str, path: str) -> tuple[int, int]:
        """(byte offset, byte size) of ``path`` — ``a.b``, ``mem[2].size`` — in ``struct_name``."""
        tid = self.struct_id(struct_name)
        off_bits = 0
        for part in path.split("."):
            m = re.fullmatch(r"(\w+)(?:\[(\d+)\])?", part)
            if m is None:
                raise BtfError(f"bad field path {path!r}")
            t = self.types[self._resolve(tid)]
            if t is None or t[0] not in (KIND_STRUCT, KIND_UNION):
                raise BtfError(f"{path}: {part} is not inside a struct")
            found = self._member(t, m.group(1))
            if found is None:
                raise BtfError(f"struct {struct_name}: no field {path}")
            mbits, tid = found
            off_bits += mbits
            if m.group(2) is not None:
                arr = self.types[self._resolve(tid)]
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

    def _member(self, t: tuple, name: str) -> tuple[int, int] | None:
        """(bit offset, type) of a member, looking into anonymous structs and unions too."""
        for m_name, m_type, m_off in t[3]:
            if m_name == name:
                return m_off, m_type
            if not m_name:
                inner = self.types[self._resolve(m_type)]
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
