"""kmodsim.loader.btf_check: btf_parse_module() of a module's split BTF on another vmlinux BTF.

Malformed input is synthetic here (a base of a few types and a split BTF whose offsets point
where a module built for another kernel's would); the shape of the expected lines is the real
kernel's, as Debian's 6.1.0-54 printed it under QEMU for 6.1.0-53's adfs and bch
(tests/test_abi_check.py compares the model with the real kernel on those modules):

    BPF: [100747] STRUCT            adfs: a struct whose name is an empty string
    BPF: size=80 vlen=8
    BPF:
    BPF: Invalid name
    BPF:
    failed to validate module [adfs] BTF: -22

    BPF: \\t type_id=4029 bits_offset=320      bch: a member whose name is not an identifier
    BPF:
    BPF: Invalid name
    BPF:
"""

from __future__ import annotations

import errno
import struct

import pytest

from kmodsim.btf import Btf
from kmodsim.loader.btf_check import btf_parse_module

INT, PTR, STRUCT, CONST, TYPE_TAG = 1, 2, 4, 10, 18


def _btf(types: list[bytes], strings: bytes) -> bytes:
    t = b"".join(types)
    return struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(t), len(t), len(strings)) + t + strings


def _type(name_off: int, kind: int, vlen: int, size_or_type: int, kflag: int = 0) -> bytes:
    return struct.pack("<III", name_off, kflag << 31 | kind << 24 | vlen, size_or_type)


# base: [1] INT "int" (offset 1), [2] PTR -> 1; strings "\0int\0a-b\0"
BASE_STRINGS = b"\0int\0a-b\0"
BASE = Btf(_btf([_type(1, INT, 0, 4) + struct.pack("<I", 32), _type(0, PTR, 0, 1)], BASE_STRINGS))
START_ID, START_STR = 3, len(BASE_STRINGS)


def test_struct_name_on_a_nul():
    """A struct named at an offset of the base's strings that holds a NUL: an empty name."""
    mod = _btf([_type(4, STRUCT, 1, 80) + struct.pack("<III", 0, 1, 0)], b"\0")
    err, lines = btf_parse_module(mod, BASE)
    assert err == -errno.EINVAL
    assert lines == [f"BPF: [{START_ID}] STRUCT  ", "BPF: size=80 vlen=1", "BPF:  ", "BPF: Invalid name", "BPF: "]


def test_member_name_not_an_identifier():
    """A member named "a-b": the member line alone (the CHECK_META phase prints no struct line)."""
    mod = _btf([_type(0, STRUCT, 2, 16) + struct.pack("<III", 1, 1, 0) + struct.pack("<III", 5, 1, 64)], b"\0")
    err, lines = btf_parse_module(mod, BASE)
    assert err == -errno.EINVAL
    assert lines == ["BPF: \ta-b type_id=1 bits_offset=64", "BPF:  ", "BPF: Invalid name", "BPF: "]


def test_name_offset_past_the_strings():
    """btf_check_meta(): a name offset past base + own strings, one line."""
    mod = _btf([_type(START_STR + 5, STRUCT, 0, 8)], b"\0x\0")
    err, lines = btf_parse_module(mod, BASE)
    assert (err, lines) == (-errno.EINVAL, [f"BPF: [{START_ID}] Invalid name_offset:{START_STR + 5}"])


def test_own_strings_follow_the_base():
    """A module of the same build: its own string offsets continue the base's; it passes."""
    mod = _btf([_type(START_STR + 1, STRUCT, 1, 8) + struct.pack("<III", 1, 1, 0),
                _type(0, CONST, 0, START_ID)], b"\0foo\0")
    assert btf_parse_module(mod, BASE) == (0, [])


def test_quiet_logs_no_type_lines():
    """v6.3+ with CONFIG_MODULE_ALLOW_BTF_MISMATCH: the same failure, no verifier lines."""
    mod = _btf([_type(4, STRUCT, 0, 8)], b"\0")
    assert btf_parse_module(mod, BASE, quiet=True) == (-errno.EINVAL, [])


def test_modifier_past_the_last_type():
    """btf_check_type_tags(): a CONST naming a type id past the last: -EINVAL, no line."""
    mod = _btf([_type(0, CONST, 0, START_ID + 7)], b"\0")
    assert btf_parse_module(mod, BASE) == (-errno.EINVAL, [])


def test_modifier_loop():
    """btf_check_type_tags(): a CONST that refers to itself: the chain limit (33rd link)."""
    mod = _btf([_type(0, CONST, 0, START_ID)], b"\0")
    assert btf_parse_module(mod, BASE) == (-errno.ELOOP, ["BPF: Max chain length or cycle detected"])


def test_type_tag_after_modifier():
    mod = _btf([_type(0, CONST, 0, START_ID + 1), _type(1, TYPE_TAG, 0, 1)], b"\0")
    assert btf_parse_module(mod, BASE) == (-errno.EINVAL, ["BPF: Type tags don't precede modifiers"])


@pytest.mark.parametrize("data, line, err", [
    (b"\x9f\xeb\x01\x00", "hdr_len not found", -errno.EINVAL),
    (struct.pack("<HBBIIIII", 0xEB9F, 2, 0, 24, 0, 0, 0, 1) + b"\0", "Unsupported version", -524),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"\0\0", "Unsupported section found", -errno.EINVAL),
    (struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 2) + b"x\x01", "Invalid string section", -errno.EINVAL),
])
def test_bad_headers(data, line, err):
    assert btf_parse_module(data, BASE) == (err, [f"BPF: {line}"])
