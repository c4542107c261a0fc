"""kernel/bpf/btf.c:btf_parse_module(): the check a module's split ``.BTF`` passes when the module
comes (btf_module_notify(), MODULE_STATE_COMING), against the BTF of the running vmlinux.

A module's ``.BTF`` is split BTF: its type ids continue the ids of the vmlinux it was *built*
against and its string offsets continue that vmlinux's string section. The kernel reads it on top
of its *own* vmlinux BTF (``start_id = base->nr_types``, ``start_str_off = base->hdr.str_len``), so
a module built for another kernel has its names and type references read at shifted places. What
btf_parse_module() checks, in order (v6.1, as Debian's 6.1 kernels print it):

* btf_parse_hdr(): the header (magic, version, flags, unknown header bytes zero) and
  btf_check_sec_info() (type and string sections without gaps, overlaps or trailing data);
* btf_parse_str_sec(): the string section ends the data and ends with a NUL;
* btf_check_all_metas(): every type record's btf_check_meta() and its kind's ``check_meta`` —
  the record fits, a valid kind, ``name_off`` inside base + own strings, then per kind the name
  (a C identifier where one is required — the usual failure of another kernel's module: its name
  offsets land mid-string or on a NUL of the new base's strings), vlen, kind_flag, sizes, member
  offsets. Type ids are only range-checked here; they are not resolved (btf_parse_module() skips
  btf_check_all_types());
* btf_check_type_tags(): chains of modifiers from the module's types, type tags first, at most 32
  links; a link to a type id past the last is -EINVAL with no log line.

The verifier log of in-kernel BTF (BPF_LOG_KERNEL) goes to the kernel log: every
bpf_verifier_vlog() call is one ``pr_err("BPF: %s")`` line, so one verifier message is several
lines ("[id] KIND name ", its details, " ", the message, and an empty one for the "\\n"). From v6.3
(9cb61e50bf6b) the type and member messages are skipped when CONFIG_MODULE_ALLOW_BTF_MISMATCH lets
the load go on (``quiet``).
"""

from __future__ import annotations

import errno as E
import struct

from ..btf import Btf

BTF_MAGIC, BTF_VERSION = 0xEB9F, 1
BTF_MAX_TYPE, BTF_MAX_NAME_OFFSET = 0x000FFFFF, 0x00FFFFFF
BTF_INFO_MASK, BTF_INT_MASK = 0x9F00FFFF, 0x0FFFFFFF
BTF_KIND_MAX = 19
KSYM_NAME_LEN = 512  # v6.1 (b8a94bfb3395)
ENOTSUPP = 524  # include/linux/errno.h (kernel-internal)

(INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FUNC_PROTO,
 VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64) = range(1, 20)
KIND_STR = ("UNKNOWN", "INT", "PTR", "ARRAY", "STRUCT", "UNION", "ENUM", "FWD", "TYPEDEF", "VOLATILE",
            "CONST", "RESTRICT", "FUNC", "FUNC_PROTO", "VAR", "DATASEC", "FLOAT", "DECL_TAG", "TYPE_TAG",
            "ENUM64")
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class _Fail(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


def _isalpha(c: int) -> bool:
    # lib/ctype.c: ASCII letters and the Latin-1 letters (0xc0-0xff but for the two operators)
    return 65 <= c <= 90 or 97 <= c <= 122 or (c >= 0xC0 and c not in (0xD7, 0xF7))


def _char_ok(c: int, first: bool, dot_ok: bool) -> bool:
    """btf.c:__btf_name_char_ok()."""
    ok = _isalpha(c) if first else (_isalpha(c) or 48 <= c <= 57)
    return ok or c == 0x5F or (c == 0x2E and dot_ok)


class _Env:
    """struct btf_verifier_env of one btf_parse_module() call: the module's data on the base."""

    def __init__(self, data: bytes, base: Btf, quiet: bool) -> None:
        self.data = data
        self.base = base
        self.quiet = quiet
        self.start_id = base.last_id + 1  # base->nr_types (void included)
        self.base_strings = base.string_section
        self.start_str_off = len(self.base_strings)  # base->hdr.str_len
        self.strings = b""
        self.lines: list[str] = []
        self.log_type_id = 0
        self.types: list[tuple[int, int]] = []  # the module's own (kind, size_or_type), in id order

    # -- the log: one pr_err("BPF: %s") line per bpf_verifier_vlog() call ---------------------------
    def vlog(self, text: str) -> None:
        self.lines.append("BPF: " + (text[:-1] if text.endswith("\n") else text))

    def name(self, off: int) -> str:
        """btf.c:__btf_name_by_offset()."""
        if not off:
            return "(anon)"
        s = self.str_at(off)
        if s is None:
            return "(invalid-name-offset)"
        return s[:s.find(b"\0")].decode("utf-8", "replace")

    def str_at(self, off: int) -> bytes | None:
        """btf.c:btf_str_by_offset(): the bytes from ``off`` on (None: past the strings)."""
        if off < self.start_str_off:
            return self.base_strings[off:]
        off -= self.start_str_off
        return self.strings[off:] if off < len(self.strings) else None

    def name_offset_valid(self, off: int) -> bool:
        """btf.c:btf_name_offset_valid()."""
        return off <= BTF_MAX_NAME_OFFSET and (off < self.start_str_off or
                                               off - self.start_str_off < len(self.strings))

    def name_valid(self, off: int, dot_ok: bool = False) -> bool:
        """btf.c:__btf_name_valid() (btf_name_valid_identifier(); ``dot_ok``: _section())."""
        s = self.str_at(off) or b"\0"
        if not _char_ok(s[0], True, dot_ok):
            return False
        i = 1
        while i < len(s) and s[i] and i < KSYM_NAME_LEN:
            if not _char_ok(s[i], False, dot_ok):
                return False
            i += 1
        return i >= len(s) or not s[i]

    def log_type(self, t: tuple[int, int, int], fmt: str | None, details: bool = True,
                 extra: bytes = b"") -> None:
        """btf.c:__btf_verifier_log_type() (btf_verifier_log_type(); ``details`` False:
        btf_verifier_log_basic())."""
        if fmt is None or self.quiet:
            return
        name_off, info, size = t
        kind = (info >> 24) & 0x1F
        self.vlog(f"[{self.log_type_id}] {KIND_STR[kind]} {self.name(name_off)}{' ' if details else ''}")
        if details:
            self.log_details(kind, info, size, extra)
        if fmt:
            self.vlog(" ")
            self.vlog(fmt)
        self.vlog("\n")

    def log_details(self, kind: int, info: int, size: int, extra: bytes) -> None:
        """The kind's ``log_details`` (btf_int_log(), btf_struct_log(), ...)."""
        vlen = info & 0xFFFF
        if kind == INT:
            d = struct.unpack_from("<I", extra)[0]
            enc = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}.get((d >> 24) & 0x0F, "UNKN")
            self.vlog(f"size={size} bits_offset={(d >> 16) & 0xFF} nr_bits={d & 0xFF} encoding={enc}")
        elif kind in (PTR, FUNC, *_MODIFIERS):
            self.vlog(f"type_id={size}")
        elif kind == ARRAY:
            elem, index, n = struct.unpack_from("<III", extra)
            self.vlog(f"type_id={elem} index_type_id={index} nr_elems={n}")
        elif kind in (STRUCT, UNION, ENUM, ENUM64, DATASEC):
            self.vlog(f"size={size} vlen={vlen}")
        elif kind == FWD:
            self.vlog("union" if info >> 31 else "struct")
        elif kind == FUNC_PROTO:
            args = [struct.unpack_from("<II", extra, 8 * i) for i in range(vlen)]
            self.vlog(f"return={size} args=(")
            if not args:
                self.vlog("void")
            elif len(args) == 1 and not args[0][1]:
                self.vlog("vararg")
            else:
                self.vlog(f"{args[0][1]} {self.name(args[0][0])}")
                for name_off, tid in args[1:-1]:
                    self.vlog(f", {tid} {self.name(name_off)}")
                if len(args) > 1:
                    name_off, tid = args[-1]
                    self.vlog(f", {tid} {self.name(name_off)}" if tid else ", vararg")
            self.vlog(")")
        elif kind == VAR:
            self.vlog(f"type_id={size} linkage={struct.unpack_from('<I', extra)[0]}")
        elif kind == FLOAT:
            self.vlog(f"size={size}")
        elif kind == DECL_TAG:
            self.vlog(f"type={size} component_idx={struct.unpack_from('<i', extra)[0]}")

    def log_member(self, t: tuple[int, int, int], m: tuple[int, int, int], fmt: str | None) -> None:
        """btf.c:btf_verifier_log_member() in the CHECK_META phase (no struct line before it)."""
        if fmt is None or self.quiet:
            return
        name_off, mtype, offset = m
        if t[1] >> 31:
            self.vlog(f"\t{self.name(name_off)} type_id={mtype} bitfield_size={offset >> 24} "
                      f"bits_offset={offset & 0xFFFFFF}")
        else:
            self.vlog(f"\t{self.name(name_off)} type_id={mtype} bits_offset={offset}")
        if fmt:
            self.vlog(" ")
            self.vlog(fmt)
        self.vlog("\n")

    def log_vsi(self, vsi: tuple[int, int, int], fmt: str) -> None:
        """btf.c:btf_verifier_log_vsi() in the CHECK_META phase."""
        self.vlog("\t type_id={} offset={} size={}".format(*vsi))
        self.vlog(" ")
        self.vlog(fmt)
        self.vlog("\n")

    # -- btf_parse_hdr(), btf_parse_str_sec() -------------------------------------------------------
    def parse_hdr(self) -> tuple[int, int, int, int, int]:
        data = self.data
        if len(data) < 8:
            self.vlog("hdr_len not found")
            raise _Fail(-E.EINVAL)
        hdr_len = struct.unpack_from("<I", data, 4)[0]
        if len(data) < hdr_len:
            self.vlog("btf_header not found")
            raise _Fail(-E.EINVAL)
        if hdr_len > 24 and any(data[24:hdr_len]):
            self.vlog("Unsupported btf_header")
            raise _Fail(-E.E2BIG)
        hdr = data[:min(hdr_len, 24)].ljust(24, b"\0")
        magic, version, flags, _hl, type_off, type_len, str_off, str_len = struct.unpack("<HBBIIIII", hdr)
        if magic != BTF_MAGIC:
            self.vlog("Invalid magic")
            raise _Fail(-E.EINVAL)
        if version != BTF_VERSION:
            self.vlog("Unsupported version")
            raise _Fail(-ENOTSUPP)
        if flags:
            self.vlog("Unsupported flags")
            raise _Fail(-ENOTSUPP)
        # btf_check_sec_info(): the two sections, sorted by offset, tile the data after the header
        expected, total = len(data) - hdr_len, 0
        for off, length in sorted(((type_off, type_len), (str_off, str_len))):
            if expected < off:
                self.vlog("Invalid section offset")
                raise _Fail(-E.EINVAL)
            if total < off:
                self.vlog("Unsupported section found")
                raise _Fail(-E.EINVAL)
            if total > off:
                self.vlog("Section overlap found")
                raise _Fail(-E.EINVAL)
            if expected - total < length:
                self.vlog("Total section length too long")
                raise _Fail(-E.EINVAL)
            total += length
        if expected != total:
            self.vlog("Unsupported section found")
            raise _Fail(-E.EINVAL)
        return hdr_len, type_off, type_len, str_off, str_len

    def parse_str_sec(self, hdr_len: int, str_off: int, str_len: int) -> None:
        start = hdr_len + str_off
        if start + str_len != len(self.data):
            self.vlog("String section is not at the end")
            raise _Fail(-E.EINVAL)
        self.strings = self.data[start:start + str_len]
        if not str_len:  # a split BTF may have no strings of its own
            return
        if str_len - 1 > BTF_MAX_NAME_OFFSET or self.strings[-1]:
            self.vlog("Invalid string section")
            raise _Fail(-E.EINVAL)

    # -- btf_check_all_metas() -----------------------------------------------------------------------
    def check_all_metas(self, cur: int, end: int) -> None:
        self.log_type_id = self.start_id
        while cur < end:
            cur += self.check_meta(cur, end - cur)
            self.log_type_id += 1

    def check_meta(self, pos: int, meta_left: int) -> int:
        """btf.c:btf_check_meta(): the common part, then the kind's check_meta; returns the record's size."""
        if meta_left < 12:
            self.vlog(f"[{self.log_type_id}] meta_left:{meta_left} meta_needed:12")
            raise _Fail(-E.EINVAL)
        t = struct.unpack_from("<III", self.data, pos)
        name_off, info, size = t
        meta_left -= 12
        if info & ~BTF_INFO_MASK & 0xFFFFFFFF:
            self.vlog(f"[{self.log_type_id}] Invalid btf_info:{info:x}")
            raise _Fail(-E.EINVAL)
        kind = (info >> 24) & 0x1F
        if kind > BTF_KIND_MAX or kind == 0:
            self.vlog(f"[{self.log_type_id}] Invalid kind:{kind}")
            raise _Fail(-E.EINVAL)
        if not self.name_offset_valid(name_off):
            self.vlog(f"[{self.log_type_id}] Invalid name_offset:{name_off}")
            raise _Fail(-E.EINVAL)
        extra_pos = pos + 12
        n = self.kind_check_meta(t, kind, extra_pos, meta_left)
        self.types.append((kind, size))
        return 12 + n

    def _short(self, t: tuple[int, int, int], meta_left: int, needed: int) -> None:
        if meta_left < needed:
            self.log_type(t, f"meta_left:{meta_left} meta_needed:{needed}", details=False)
            raise _Fail(-E.EINVAL)

    def _fail(self, t: tuple[int, int, int], msg: str, extra: bytes = b"", err: int = -E.EINVAL) -> None:
        self.log_type(t, msg, extra=extra)
        raise _Fail(err)

    def kind_check_meta(self, t: tuple[int, int, int], kind: int, pos: int, meta_left: int) -> int:
        """The ``check_meta`` of each kind (btf_int_check_meta(), btf_struct_check_meta(), ...)."""
        name_off, info, size = t
        vlen, kflag = info & 0xFFFF, info >> 31
        data = self.data
        if kind == INT:
            self._short(t, meta_left, 4)
            extra = data[pos:pos + 4]
            if vlen:
                self._fail(t, "vlen != 0", extra)
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag", extra)
            d = struct.unpack_from("<I", extra)[0]
            if d & ~BTF_INT_MASK & 0xFFFFFFFF:
                self.log_type(t, f"Invalid int_data:{d:x}", details=False)
                raise _Fail(-E.EINVAL)
            nr_bits = (d & 0xFF) + ((d >> 16) & 0xFF)
            if nr_bits > 128:
                self._fail(t, "nr_bits exceeds 128", extra)
            if (nr_bits + 7) // 8 > size:
                self._fail(t, "nr_bits exceeds type_size", extra)
            if ((d >> 24) & 0x0F) not in (0, 1, 2, 4):
                self._fail(t, "Unsupported encoding", extra, -ENOTSUPP)
            return 4
        if kind in (PTR, *_MODIFIERS):  # btf_ref_type_check_meta()
            if vlen:
                self._fail(t, "vlen != 0")
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag")
            if size > BTF_MAX_TYPE:
                self._fail(t, "Invalid type_id")
            if kind == TYPEDEF:
                if not name_off or not self.name_valid(name_off):
                    self._fail(t, "Invalid name")
            elif kind == TYPE_TAG:
                value = self.str_at(name_off)
                if not value or not value[0]:
                    self._fail(t, "Invalid name")
            elif name_off:
                self._fail(t, "Invalid name")
            return 0
        if kind == FWD:
            if vlen:
                self._fail(t, "vlen != 0")
            if size:
                self._fail(t, "type != 0")
            if not name_off or not self.name_valid(name_off):
                self._fail(t, "Invalid name")
            return 0
        if kind == ARRAY:
            self._short(t, meta_left, 12)
            extra = data[pos:pos + 12]
            if name_off:
                self._fail(t, "Invalid name", extra)
            if vlen:
                self._fail(t, "vlen != 0", extra)
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag", extra)
            if size:
                self._fail(t, "size != 0", extra)
            elem, index, _n = struct.unpack_from("<III", extra)
            if not elem or elem > BTF_MAX_TYPE:
                self._fail(t, "Invalid elem", extra)
            if not index or index > BTF_MAX_TYPE:
                self._fail(t, "Invalid index", extra)
            return 12
        if kind in (STRUCT, UNION):
            needed = vlen * 12
            self._short(t, meta_left, needed)
            if name_off and not self.name_valid(name_off):
                self._fail(t, "Invalid name")
            last = 0
            for i in range(vlen):
                m = struct.unpack_from("<III", data, pos + 12 * i)
                m_name, m_type, m_off = m
                if not self.name_offset_valid(m_name):
                    self.log_member(t, m, f"Invalid member name_offset:{m_name}")
                    raise _Fail(-E.EINVAL)
                if m_name and not self.name_valid(m_name):
                    self.log_member(t, m, "Invalid name")
                    raise _Fail(-E.EINVAL)
                if not m_type or m_type > BTF_MAX_TYPE:
                    self.log_member(t, m, "Invalid type_id")
                    raise _Fail(-E.EINVAL)
                bit_off = m_off & 0xFFFFFF if kflag else m_off  # __btf_member_bit_offset()
                if kind == UNION and bit_off:
                    self.log_member(t, m, "Invalid member bits_offset")
                    raise _Fail(-E.EINVAL)
                if last > bit_off:
                    self.log_member(t, m, "Invalid member bits_offset")
                    raise _Fail(-E.EINVAL)
                if (bit_off + 7) // 8 > size:
                    self.log_member(t, m, "Member bits_offset exceeds its struct size")
                    raise _Fail(-E.EINVAL)
                last = bit_off
            return needed
        if kind in (ENUM, ENUM64):
            item = 8 if kind == ENUM else 12
            needed = vlen * item
            self._short(t, meta_left, needed)
            if size > 8 or size == 0 or size & (size - 1):
                self._fail(t, "Unexpected size")
            if name_off and not self.name_valid(name_off):
                self._fail(t, "Invalid name")
            for i in range(vlen):
                e_name = struct.unpack_from("<I", data, pos + item * i)[0]
                if not self.name_offset_valid(e_name):
                    self.vlog(f"\tInvalid name_offset:{e_name}")
                    raise _Fail(-E.EINVAL)
                if not e_name or not self.name_valid(e_name):
                    self._fail(t, "Invalid name")
            return needed
        if kind == FUNC_PROTO:
            needed = vlen * 8
            self._short(t, meta_left, needed)
            extra = data[pos:pos + needed]
            if name_off:
                self._fail(t, "Invalid name", extra)
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag", extra)
            return needed
        if kind == FUNC:
            if not name_off or not self.name_valid(name_off):
                self._fail(t, "Invalid name")
            if vlen > 2:  # BTF_FUNC_GLOBAL
                self._fail(t, "Invalid func linkage")
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag")
            return 0
        if kind == VAR:
            self._short(t, meta_left, 4)
            extra = data[pos:pos + 4]
            if vlen:
                self._fail(t, "vlen != 0", extra)
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag", extra)
            if not name_off or not self.name_valid(name_off, dot_ok=True):
                self._fail(t, "Invalid name", extra)
            if not size or size > BTF_MAX_TYPE:
                self._fail(t, "Invalid type_id", extra)
            if struct.unpack_from("<I", extra)[0] not in (0, 1):  # BTF_VAR_STATIC, _GLOBAL_ALLOCATED
                self._fail(t, "Linkage not supported", extra)
            return 4
        if kind == DATASEC:
            needed = vlen * 12
            self._short(t, meta_left, needed)
            if not size:
                self._fail(t, "size == 0")
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag")
            if not name_off or not self.name_valid(name_off, dot_ok=True):
                self._fail(t, "Invalid name")
            last_end = total = 0
            for i in range(vlen):
                vsi = struct.unpack_from("<III", data, pos + 12 * i)
                v_type, v_off, v_size = vsi
                msg = None
                if not v_type or v_type > BTF_MAX_TYPE:
                    msg = "Invalid type_id"
                elif v_off < last_end or v_off >= size:
                    msg = "Invalid offset"
                elif not v_size or v_size > size:
                    msg = "Invalid size"
                elif v_off + v_size > size:
                    msg = "Invalid offset+size"
                if msg:
                    self.log_vsi(vsi, msg)
                    raise _Fail(-E.EINVAL)
                last_end = v_off + v_size
                total += v_size
            if size < total:
                self._fail(t, "Invalid btf_info size")
            return needed
        if kind == FLOAT:
            if vlen:
                self._fail(t, "vlen != 0")
            if kflag:
                self._fail(t, "Invalid btf_info kind_flag")
            if size not in (2, 4, 8, 12, 16):
                self._fail(t, "Invalid type_size")
            return 0
        # DECL_TAG
        self._short(t, meta_left, 4)
        extra = data[pos:pos + 4]
        value = self.str_at(name_off)
        if not value or not value[0]:
            self._fail(t, "Invalid value", extra)
        if vlen:
            self._fail(t, "vlen != 0", extra)
        if kflag:
            self._fail(t, "Invalid btf_info kind_flag", extra)
        if struct.unpack_from("<i", extra)[0] < -1:
            self._fail(t, "Invalid component_idx", extra)
        return 4

    # -- btf_check_type_tags() -----------------------------------------------------------------------
    def kind_size(self, tid: int) -> tuple[int, int] | None:
        """(kind, size_or_type) of ``tid`` over base and module (btf_type_by_id(); None: past the last)."""
        if tid < self.start_id:
            return (self.base.kind(tid), _type_of(self.base, tid)) if tid else (0, 0)
        i = tid - self.start_id
        return self.types[i] if i < len(self.types) else None

    def check_type_tags(self) -> None:
        good = self.start_id - 1
        for i in range(self.start_id, self.start_id + len(self.types)):
            kind, ref = self.types[i - self.start_id]
            if kind not in _MODIFIERS:
                continue
            in_tags = kind == TYPE_TAG
            limit, cur = 32, i
            t: tuple[int, int] | None = (kind, ref)
            while t is not None and t[0] in _MODIFIERS:
                if not limit:
                    self.vlog("Max chain length or cycle detected")
                    raise _Fail(-E.ELOOP)
                limit -= 1
                if t[0] == TYPE_TAG:
                    if not in_tags:
                        self.vlog("Type tags don't precede modifiers")
                        raise _Fail(-E.EINVAL)
                else:
                    in_tags = False
                if cur <= good:
                    break
                cur = t[1]
                t = self.kind_size(cur)
                if t is None:
                    raise _Fail(-E.EINVAL)
            good = i


def _type_of(btf: Btf, tid: int) -> int:
    t = btf.type(tid)
    return 0 if t is None else int(t[2])


def btf_parse_module(data: bytes, base: Btf, quiet: bool = False) -> tuple[int, list[str]]:
    """btf.c:btf_parse_module() of a module's ``.BTF`` ``data`` on the running kernel's vmlinux
    BTF ``base``: (0 or the -errno it returns, the ``BPF:`` lines it logs). ``quiet``: v6.3+ with
    CONFIG_MODULE_ALLOW_BTF_MISMATCH (the type and member messages are not logged)."""
    env = _Env(data, base, quiet)
    try:
        hdr_len, type_off, type_len, str_off, str_len = env.parse_hdr()
        env.parse_str_sec(hdr_len, str_off, str_len)
        start = hdr_len + type_off
        env.check_all_metas(start, start + type_len)
        env.check_type_tags()
    except _Fail as f:
        return f.err, env.lines
    return 0, env.lines
