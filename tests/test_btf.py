"""kmodsim.btf: struct layouts from the kernel's own BTF (the .BTF section of the vmlinux inside
Debian's vmlinuz), checked against what real modules of the same kernel contain."""

from __future__ import annotations

import struct
import subprocess

import pytest

from kmodsim.btf import Btf, BtfError, vmlinux_btf
from kmodsim.oracle.boot import _probe_definition, module_probe_fields, parse_probe_line

import oracles


def _section_size(path: str, name: str) -> int:
    """Size of a section as readelf lists it (an independent reader)."""
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.replace("[ ", "[").split()
        if len(f) > 5 and f[1] == name:
            return int(f[5], 16)
    raise AssertionError(f"{path}: no section {name}")


@pytest.mark.realkernel
@pytest.mark.parametrize("series", ["6.1", "6.12"])
def test_struct_module_matches_real_modules(series, request, tmp_path):
    k = request.getfixturevalue("debian61" if series == "6.1" else "debian612")
    btf = vmlinux_btf(k.vmlinuz)
    # every module carries a struct module in .gnu.linkonce.this_module: its size is sizeof(struct module)
    import glob

    ko = sorted(glob.glob(f"{k.modules_dir}/kernel/drivers/net/dummy.ko*"))[0]
    plain = ko
    if ko.endswith(".xz"):
        plain = str(tmp_path / "dummy.ko")
        with open(plain, "wb") as f:
            f.write(oracles.elf_bytes(ko))
    assert btf.size_of(btf.struct_id("module")) == _section_size(plain, ".gnu.linkonce.this_module")
    # and its name field holds the module's name at the offset BTF gives
    off, size = btf.offset_of("module", "name")
    data = subprocess.run(["objcopy", "-O", "binary", "--only-section=.gnu.linkonce.this_module", plain,
                           "/dev/stdout"], capture_output=True, check=True).stdout
    assert data[off:off + size].rstrip(b"\0") == b"dummy"
    # the probe's fields exist for this kernel's struct module layout
    fields = dict((lab, (o, n)) for lab, o, n in module_probe_fields(k.vmlinuz))
    if series == "6.1":
        assert set(fields) == {"name", "core", "init"}
    else:
        assert set(fields) == {"name", "text", "data", "rodata", "ro_after_init", "init_text", "init_data",
                               "init_rodata"}
    assert all(n == 4 for lab, (o, n) in fields.items() if lab != "name")


def test_probe_line_parsing():
    line = ('            kmsh-77      [000] .....     4.123456: formed: (do_init_module+0x0/0x230) '
            'name="kvm_intel" core=380928 init=65536')
    assert parse_probe_line(line) == {"name": "kvm_intel", "sizes": {"core": 380928, "init": 65536}}
    assert parse_probe_line("# tracer: nop") is None
    assert _probe_definition([("name", 24, 56), ("core", 328, 4)], "%di") == \
        "p:kmodsim/formed do_init_module name=+24(%di):string core=+328(%di):u32"


def test_bad_btf_is_an_error():
    with pytest.raises(BtfError):
        Btf(b"\0" * 32)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 1000, 0, 0)
    with pytest.raises(BtfError):
        Btf(hdr)
