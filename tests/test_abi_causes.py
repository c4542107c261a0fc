"""``kmodsim abi diff``'s causes of CRC changes, checked against an independent BTF reader.

The oracle is ``bpftool btf dump file VMLINUX format c`` (Debian's bpftool; a module's types with
``bpftool btf -B VMLINUX dump file MODULE.ko format c``) of both kernels: every type kmodsim names
as changed must have another C definition in the two dumps — extracted here with a few lines of
this file's own, not with kmodsim — and a member named as added (removed) must be in the new
(old) definition. vmlinux is taken out of the bzImage here too, by Python's own lzma.

Debian 12's 6.1 image packages are fetched from the archive (slow tier); an ABI the archive no
longer serves fails the run under KMODSIM_REQUIRE_REAL=1 (``need``).
"""

from __future__ import annotations

import glob
import json
import lzma
import os
import re
import shutil
import struct
import subprocess

import pytest

from conftest import need, run_kmodsim


def bpftool() -> str:
    tool = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if tool is None:
        need("bpftool (Debian package bpftool; scripts/setup.sh installs it)")
    return tool


def vmlinux_of(vmlinuz: str, tmp_path) -> str:
    """The ELF inside a Debian amd64 bzImage (xz-compressed), found and unpacked by this test."""
    data = open(vmlinuz, "rb").read()
    at = data.find(b"\xfd7zXZ\x00")
    while at >= 0:
        try:
            out = lzma.LZMADecompressor().decompress(data[at:])
        except lzma.LZMAError:
            out = b""
        if out.startswith(b"\x7fELF"):
            path = tmp_path / (os.path.basename(vmlinuz) + ".elf")
            path.write_bytes(out)
            return str(path)
        at = data.find(b"\xfd7zXZ\x00", at + 1)
    raise AssertionError(f"{vmlinuz}: no xz-compressed ELF inside")


def module_files(root: str) -> dict[str, str]:
    out = {}
    for f in glob.glob(os.path.join(root, "lib", "modules", "*", "**", "*.ko*"), recursive=True):
        out.setdefault(re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(f)).replace("-", "_"), f)
    return out


class Dumps:
    """``bpftool btf dump ... format c`` of one kernel, per exporter (vmlinux, or a module on it)."""

    def __init__(self, root: str, vmlinux: str) -> None:
        self.vmlinux, self.modules, self.text = vmlinux, module_files(root), {}

    def of(self, owner: str) -> str:
        if owner not in self.text:
            cmd = [bpftool(), "btf", "dump", "file", self.vmlinux, "format", "c"]
            if owner != "vmlinux":
                cmd = [bpftool(), "btf", "-B", self.vmlinux, "dump", "file", self.modules[owner], "format", "c"]
            self.text[owner] = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return self.text[owner]

    def raw(self, owner: str) -> str:
        key = "raw:" + owner
        if key not in self.text:
            cmd = [bpftool(), "btf", "dump", "file", self.vmlinux]
            if owner != "vmlinux":
                cmd = [bpftool(), "btf", "-B", self.vmlinux, "dump", "file", self.modules[owner]]
            self.text[key] = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        return self.text[key]


def definition(dump: str, type_name: str) -> str | None:
    """The C definition of ``struct X`` / ``union X`` / ``enum X`` / ``typedef ... X`` in a dump."""
    kind, name = type_name.split(" ", 1)
    if kind == "typedef":
        m = re.search(rf"^typedef [^;]*\b{re.escape(name)}\b[^;]*;$", dump, re.M)
        return m.group(0) if m else None
    m = re.search(rf"^{kind} {re.escape(name)} {{\n.*?^}}( __attribute__\(\(\w+\)\))?;$", dump, re.M | re.S)
    return m.group(0) if m else None


def prototype(raw: str, func: str, base: str) -> list[str]:
    """A function's prototype from bpftool's plain dump (``base``: vmlinux's, for a module's
    references to its types): its return and parameter types, each followed through pointers,
    qualifiers and anonymous types to its first name."""
    lines = dict(re.findall(r"^\[(\d+)\] (.*)$", base, re.M))
    lines.update(re.findall(r"^\[(\d+)\] (.*)$", raw, re.M))
    fid = re.search(rf"^\[(\d+)\] FUNC '{re.escape(func)}' type_id=(\d+)", raw, re.M)
    assert fid, func
    proto_at = raw.index(f"[{fid.group(2)}] FUNC_PROTO")
    block = raw[proto_at:].split("\n[", 1)[0]
    out = []
    for tid in re.findall(r"type_id=(\d+)", block):
        seen = []
        t = tid
        while t != "0":
            line = lines[t]
            name = re.match(r"(\w+) '([^']*)'", line)
            seen.append(f"{name.group(1)} {name.group(2)}")
            if name.group(2) != "(anon)":
                break
            nxt = re.search(r"type_id=(\d+)", line)
            if not nxt:
                break
            t = nxt.group(1)
        out.append(" ".join(seen))
    return out


def check_causes(doc, old: Dumps, new: Dumps) -> dict:
    """Every type named as changed differs in bpftool's dumps; returns the cause summary."""
    s = doc["summary"]["causes"]
    crc = [c for c in doc["changes"] if c["change"] == "crc"]
    assert s["crc_changes"] == len(crc) == doc["summary"]["crc"]
    assert all(c["causes"] for c in crc) and all(not c["causes"] for c in doc["changes"] if c["change"] != "crc")
    assert s["explained"] + sum(s["unexplained"].values()) == len(crc)
    assert s["explained"] == sum(all(x["type"] for x in c["causes"]) for c in crc)
    checked = set()
    for c in crc:
        for cause in c["causes"]:
            key = (cause["type"], cause["change"])
            if cause["type"] is None or key in checked:
                continue
            checked.add(key)
            assert cause["path"][-1] == cause["type"] and cause["path"][0].startswith(c["symbol"])
            oo, no = c["old"]["owner"], c["new"]["owner"]
            if cause["type"].endswith("()"):  # the export's own prototype
                func = cause["type"][:-2]
                assert prototype(old.raw(oo), func, old.raw("vmlinux")) != \
                    prototype(new.raw(no), func, new.raw("vmlinux")), key
                continue
            a, b = definition(old.of(oo), cause["type"]), definition(new.of(no), cause["type"])
            assert a != b, key
            for member in re.findall(r"member '(\w+)' added", cause["change"]):
                assert re.search(rf"\b{member}\b", b or ""), (key, member)
            for member in re.findall(r"member '(\w+)' removed", cause["change"]):
                assert re.search(rf"\b{member}\b", a or ""), (key, member)
            for enumerator in re.findall(r"enumerator '(\w+)' added", cause["change"]):
                assert re.search(rf"\b{enumerator}\b", b or "") and not re.search(rf"\b{enumerator}\b", a or "")
    # every group of the summary is one of the changes' causes, counted right
    groups = {}
    for c in crc:
        for cause in c["causes"]:
            if cause["type"] is not None:
                groups[(cause["type"], cause["change"])] = groups.get((cause["type"], cause["change"]), 0) + 1
    assert {(t["type"], t["change"]): t["symbols"] for t in s["type_changes"]} == groups
    return s


@pytest.mark.slow
def test_causes_47_to_50_are_real_differences(image_of, tmp_path):
    """Debian 12's 6.1.0-47 -> 6.1.0-50 images (18,107 CRC changes): every type kmodsim names as
    changed has another definition in bpftool's dumps of the two kernels."""
    a, b = image_of("6.1.0-47-amd64"), image_of("6.1.0-50-amd64")
    p = run_kmodsim("abi", "diff", "--json", a.root, b.root, check=1)
    assert p.stderr == ""
    doc = json.loads(p.stdout)
    old = Dumps(a.root, vmlinux_of(a.vmlinuz, tmp_path))
    new = Dumps(b.root, vmlinux_of(b.vmlinuz, tmp_path))
    s = check_causes(doc, old, new)
    assert s["crc_changes"] == 18107
    assert s["type_changes"] and s["explained"] > 0.9 * s["crc_changes"]  # measured: 17,324 (95.7%)
    print(f"47 -> 50: {s['explained']} of {s['crc_changes']} CRC changes explained by {len(s['type_changes'])} "
          f"type changes; unexplained {s['unexplained']}")
    # same inputs, same bytes
    assert run_kmodsim("abi", "diff", "--json", a.root, b.root, check=1).stdout == p.stdout


@pytest.mark.slow
def test_no_change_no_cause_55_to_57(image_of):
    """6.1.0-55 -> 6.1.0-57: no CRC changed, so no cause at all."""
    a, b = image_of("6.1.0-55-amd64"), image_of("6.1.0-57-amd64")
    doc = json.loads(run_kmodsim("abi", "diff", "--json", a.root, b.root, check=0).stdout)
    assert doc["summary"]["causes"] == {"crc_changes": 0, "explained": 0, "unexplained": {}, "type_changes": []}
    assert all(c["causes"] == [] for c in doc["changes"])


# ---------------------------------------------------------------------------------------------
# Fast: one real kernel against itself; malformed BTF
# ---------------------------------------------------------------------------------------------

def test_a_kernel_against_itself_has_no_cause(debian61):
    """Every export of the real 6.1 image walked against the same image read a second time: no
    definition differs (a pairing or comparison bug would name one)."""
    from kmodsim.abi.causes import NO_DECL, NO_DIFF, KernelBtf, explain
    from kmodsim.kernel import Kernel

    names = sorted(Kernel.load(debian61.vmlinuz).exports)[::40]
    causes, summary = explain([(n, "vmlinux", "vmlinux") for n in names], KernelBtf(debian61.vmlinuz, {}),
                              KernelBtf(debian61.vmlinuz, {}))
    assert summary.explained == 0 and summary.type_changes == ()
    assert {c.change for cs in causes.values() for c in cs} <= {NO_DECL, NO_DIFF}
    assert summary.unexplained[NO_DIFF] > 0.8 * len(names)  # most exports are functions BTF describes


def test_malformed_btf_is_an_error_naming_the_problem(debian61, tmp_path):
    from kmodsim.btf import Btf, BtfError, module_btf, vmlinux_btf

    base = vmlinux_btf(debian61.vmlinuz)
    # a record cut short: the header says more type bytes than the records hold
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 14, 14, 1)
    with pytest.raises(BtfError, match="truncated"):
        Btf(hdr + struct.pack("<III", 0, 1 << 24, 4) + b"\0\0" + b"\0")  # an INT cut in its encoding word
    # a split BTF asked for an id past its last
    split = Btf(struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, 0, 0, 1) + b"\0", base)
    assert split.first_id == base.last_id + 1
    with pytest.raises(BtfError, match="out of range"):
        split.type(split.first_id + 5)
    # a module file that is no ELF: the error names it
    bad = tmp_path / "bad.ko"
    bad.write_bytes(b"\x7fELF" + b"\0" * 20)
    with pytest.raises(BtfError, match=re.escape(str(bad))):
        module_btf(str(bad), base)


def test_a_side_without_btf_leaves_every_crc_change_unexplained(tmp_path):
    from kmodsim.abi.causes import NO_BTF, KernelBtf, explain

    image = tmp_path / "vmlinuz"
    image.write_bytes(b"MZ not a kernel")
    kb = KernelBtf(str(image), {})
    causes, summary = explain([("a", "vmlinux", "vmlinux"), ("b", "m", "m")], kb, None)
    assert summary.unexplained == {NO_BTF: 2} and [c.change for cs in causes.values() for c in cs] == [NO_BTF] * 2


def test_each_comparison_notes_an_unreadable_image_whatever_ran_before(tmp_path):
    """A kernel's unreadable BTF is said in every comparison it is part of, the same whichever
    comparison ran first (the two steps of a history share the kernel; on a cluster, tasks of one
    worker share its object): comparing neither reads nor changes the other's state."""
    from kmodsim.abi import AbiSide, compare
    from kmodsim.abi.causes import KernelBtf
    from kmodsim.abi.sides import AbiExport

    image = tmp_path / "vmlinuz"
    image.write_bytes(b"MZ not a kernel")
    exp = {"f": AbiExport(0x1, "vmlinux", False, "")}

    def side(crc: int) -> AbiSide:
        return AbiSide(str(tmp_path), "6.1", "tree", {"f": exp["f"]._replace(crc=crc)}, False, str(image),
                       [], [], 0, str(image))

    shared = KernelBtf(str(image), {})
    a, b = side(1), side(2)
    first = compare(a, b, btf=(shared, KernelBtf(str(image), {})))
    second = compare(b, a, btf=(KernelBtf(str(image), {}), shared))
    mine = [n for n in first.notes if "BTF is left out" in n]
    assert len(mine) == 2 and str(image) in mine[0]  # each side's image, named
    assert [n for n in second.notes if "BTF is left out" in n] == mine
    assert shared.errors == [mine[0].split(": its BTF")[0]]  # the shared object: read once, unchanged
