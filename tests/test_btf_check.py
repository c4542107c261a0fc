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


def _model(config: dict[str, str], release: str = "6.1.0-54-amd64"):
    """A loader model of a 6.1 target whose .config is ``config`` and whose vmlinux BTF is BASE."""
    from kmodsim.kernel import Kernel
    from kmodsim.loader.model import KernelModel

    k = Kernel(source="headers", release=release, config={"CONFIG_MODVERSIONS": "y", "CONFIG_MODULE_SIG": "y",
                                                          "CONFIG_MODULE_FORCE_LOAD": "y", **config},
               vermagic=f"{release} SMP preempt mod_unload modversions ")
    m = KernelModel(k)
    m.target._btf = BASE
    return m


def _image(btf: bytes):
    from kmodsim.loader.image import ModuleImage

    return ModuleImage(path="m.ko", name="m", vermagic="6.1.0-54-amd64 SMP preempt mod_unload modversions ",
                       license="GPL", intree=True, staging=False, has_versions=True, versions=(), imports=(),
                       exports=(), syms_crcs=False, gpl_syms_crcs=False, import_ns=(), params={},
                       has_init=True, has_exit=True, signed=False, machine=62, depends=(), btf=btf)


BAD = _btf([_type(4, STRUCT, 0, 8)], b"\0")
LINES = ["BPF: [3] STRUCT  ", "BPF: size=8 vlen=0", "BPF:  ", "BPF: Invalid name", "BPF: "]


@pytest.mark.parametrize("allow, errno_, last", [
    ("y", 0, "failed to validate module [m] BTF: -22"),
    ("n", errno.EINVAL, "failed to validate module [m] BTF: -22"),
])
def test_the_targets_config_decides(allow, errno_, last):
    """CONFIG_MODULE_ALLOW_BTF_MISMATCH from the target's .config: the load goes on, or fails
    with btf_parse_module()'s error (prepare_coming_module())."""
    config = {"CONFIG_DEBUG_INFO_BTF_MODULES": "y"}
    if allow == "y":
        config["CONFIG_MODULE_ALLOW_BTF_MISMATCH"] = "y"
    call = _model(config).load_module(_image(BAD))
    assert call.errno == errno_
    assert call.messages[-len(LINES) - 1:] == [*LINES, last]


def test_no_btf_modules_no_check():
    call = _model({}).load_module(_image(BAD))
    assert call.errno == 0 and not any("BTF" in m or m.startswith("BPF") for m in call.messages)


def test_quiet_from_6_3():
    """v6.3+ (9cb61e50bf6b), mismatch allowed: no verifier lines, one pr_warn_once for the boot."""
    m = _model({"CONFIG_DEBUG_INFO_BTF_MODULES": "y", "CONFIG_MODULE_ALLOW_BTF_MISMATCH": "y"},
               "6.12.118+deb12-amd64")
    first = m.load_module(_image(BAD))
    assert first.errno == 0
    assert [x for x in first.messages if "BTF" in x or x.startswith("BPF")] == [
        "Kernel module BTF mismatch detected, BTF debug info may be unavailable for some modules"]
    m.delete_module("m")
    again = m.load_module(_image(BAD))
    assert again.errno == 0 and not any("BTF" in x or x.startswith("BPF") for x in again.messages)
