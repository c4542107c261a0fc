"""Binary side: indirect-thunk calls and static-call sites read from ELF relocations.

Expected values come from binutils (``readelf -SW``, ``readelf -rW``, ``objdump -dr``) parsed here,
never from kmodsim."""

from __future__ import annotations

import json
import lzma
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from kmodsim.ops import binary

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("gcc", "readelf", "objdump")), reason="needs gcc and binutils"
)

THUNK = re.compile(r"__x86_indirect_(?:call_|jump_)?thunk_\w+")

C_SOURCE = """
struct ops { int (*f)(int); void (*g)(void); void (*h)(int); };
int call(struct ops *o, int x) { o->g(); return o->f(x); }
void loop(struct ops *o, int n) { for (int i = 0; i < n; i++) o->h(i); }
static int helper(int (*p)(int), int x) { return p(x) + 1; }
int use(int (*p)(int)) { return helper(p, 2) * 3; }
"""

# a static call in the kernel's own encoding (struct static_call_site: s32 addr, s32 key)
ASM_SOURCE = """
	.text
	.globl	caller
	.type	caller, @function
caller:
	nop
1:	call	__SCT__kvm_x86_vcpu_run
	nop
2:	call	__SCT__kvm_x86_cache_reg
	ret
	.size	caller, .-caller
	.globl	other
	.type	other, @function
other:
3:	jmp	__SCT__kvm_x86_cache_reg
	.size	other, .-other
	.section	.static_call_sites, "aw"
	.long	1b - .
	.long	__SCK__kvm_x86_vcpu_run - .
	.long	2b - .
	.long	__SCK__kvm_x86_cache_reg - .
	.long	3b - .
	.long	__SCK__kvm_x86_cache_reg - . + 1
"""


def _readelf_sections(path: Path) -> dict[str, dict]:
    out = subprocess.run(["readelf", "-SW", str(path)], capture_output=True, text=True, check=True).stdout
    secs = {}
    for m in re.finditer(
        r"^\s*\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+(\S*)\s+\d+\s+\d+\s+\d+$",
        out,
        re.M,
    ):
        secs[m.group(2)] = {"size": int(m.group(6), 16), "entsize": int(m.group(7), 16), "flags": m.group(8)}
    return secs


def _readelf_thunk_relocs(path: Path) -> Counter:
    """Thunk symbol -> relocations against it in relocation sections of executable sections."""
    secs = _readelf_sections(path)
    out = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True, check=True).stdout
    counts: Counter = Counter()
    executable = False
    for line in out.splitlines():
        head = re.match(r"Relocation section '\.rela?(\S+)'", line)
        if head:
            executable = "X" in secs.get(head.group(1), {}).get("flags", "")
            continue
        m = THUNK.search(line)
        if m and executable:
            counts[m.group(0)] += 1
    return counts


def _readelf_static_call_keys(path: Path) -> Counter:
    out = subprocess.run(["readelf", "-rW", str(path)], capture_output=True, text=True, check=True).stdout
    keys: Counter = Counter()
    inside = False
    for line in out.splitlines():
        if line.startswith("Relocation section"):
            inside = "'.rela.static_call_sites'" in line or "'.rel.static_call_sites'" in line
            continue
        m = re.match(r"^([0-9a-f]+)\s+\S+\s+\S+\s+[0-9a-f]+\s+(\S+)", line)
        if inside and m and int(m.group(1), 16) % 8 == 4:
            keys[re.sub(r"^__SC[KT]__", "", m.group(2))] += 1
    return keys


def _objdump_kinds(path: Path) -> dict[str, Counter]:
    """function -> {call/jmp: n} for instructions relocated against a thunk."""
    out = subprocess.run(["objdump", "-dr", str(path)], capture_output=True, text=True, check=True).stdout
    kinds: dict[str, Counter] = {}
    func, last = None, None
    for line in out.splitlines():
        f = re.match(r"^[0-9a-f]+ <(\S+)>:", line)
        if f:
            func = f.group(1)
            continue
        ins = re.match(r"^\s+[0-9a-f]+:\s+(?:[0-9a-f]{2} )+\s*(\w+)", line)
        if ins:
            last = ins.group(1)
            continue
        if THUNK.search(line) and "R_" in line and func:
            kinds.setdefault(func, Counter())["call" if last.startswith("call") else "jmp"] += 1
    return kinds


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("elf")
    (d / "t.c").write_text(C_SOURCE)
    (d / "sc.s").write_text(ASM_SOURCE)
    made = {}
    for name, flags in (("t64.o", ["-m64"]), ("t32.o", ["-m32"])):
        r = subprocess.run(["gcc", *flags, "-O2", "-fno-pic", "-mindirect-branch=thunk-extern", "-c",
                            str(d / "t.c"), "-o", str(d / name)], capture_output=True, text=True)
        if r.returncode == 0:
            made[name] = d / name
    subprocess.run(["gcc", "-c", str(d / "sc.s"), "-o", str(d / "sc.o")], check=True)
    made["sc.o"] = d / "sc.o"
    return made


@pytest.mark.parametrize("name", ["t64.o", "t32.o"])
def test_thunk_calls_per_function(objects, name):
    if name not in objects:
        pytest.skip(f"gcc cannot build {name} here")
    path = objects[name]
    rep = binary.analyze_path(path)
    assert rep.elf_class == (64 if name == "t64.o" else 32)
    assert rep.thunks == _readelf_thunk_relocs(path)
    assert rep.indirect_total >= 3
    got = {f: Counter({k: v for k, v in c.items()}) for f, c in rep.indirect_by_function.items()}
    assert got == _objdump_kinds(path)


def test_static_call_sites(objects):
    path = objects["sc.o"]
    rep = binary.analyze_path(path)
    secs = _readelf_sections(path)
    assert rep.static_call_sites == secs[".static_call_sites"]["size"] // 8 == 3
    assert rep.static_calls_by_key == _readelf_static_call_keys(path)
    assert rep.static_calls_by_key == Counter({"kvm_x86_cache_reg": 2, "kvm_x86_vcpu_run": 1})
    assert rep.static_calls_by_function == Counter({"caller": 2, "other": 1})


def test_compressed_module_reads_like_plain(objects, tmp_path):
    plain = objects["t64.o"] if "t64.o" in objects else objects["sc.o"]
    xz = tmp_path / "m.ko.xz"
    xz.write_bytes(lzma.compress(plain.read_bytes()))
    a, b = binary.analyze_path(plain).to_json(), binary.analyze_path(xz).to_json()
    a.pop("file"), b.pop("file")
    assert a == b


def test_malformed_elf_is_rejected_cleanly(objects, tmp_path):
    data = bytearray(objects["sc.o"].read_bytes())
    cases = {
        "trunc.o": bytes(data[:40]),
        "shoff.o": bytes(data[:0x28] + struct.pack("<Q", len(data) + 4096) + data[0x30:]),
        "class.o": bytes(data[:4] + b"\x07" + data[5:]),
    }
    # a section whose offset points past the end of the file
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    bad = bytearray(data)
    struct.pack_into("<Q", bad, shoff + 64 + 0x18, len(data) * 2)
    cases["secoff.o"] = bytes(bad)
    for name, blob in cases.items():
        p = tmp_path / name
        p.write_bytes(blob)
        with pytest.raises(binary.ElfError):
            binary.analyze_path(p)
    (tmp_path / "bad.ko.xz").write_bytes(b"\xfd7zXZ\x00" + b"not xz at all")  # xz magic, corrupt stream
    with pytest.raises(binary.ElfError, match="corrupt xz data"):
        binary.analyze_path(tmp_path / "bad.ko.xz")


def _plain_copy(path: Path, tmp: Path) -> Path:
    if path.suffix == ".xz":
        out = tmp / path.name[:-3]
        out.write_bytes(lzma.decompress(path.read_bytes()))
        return out
    return path


@pytest.mark.realkernel
def test_debian_kvm_modules(debian_kvm_modules, tmp_path, ops):
    totals = {}
    for label, mods in debian_kvm_modules.items():
        assert {binary.module_name(str(m)) for m in mods} == {"kvm", "kvm-intel", "kvm-amd"}
        for mod in mods:
            plain = _plain_copy(mod, tmp_path)
            rep = binary.analyze_path(mod)
            secs = _readelf_sections(plain)
            assert rep.thunks == _readelf_thunk_relocs(plain), mod
            assert sum(sum(c.values()) for c in rep.indirect_by_function.values()) == rep.indirect_total
            sc = secs[".static_call_sites"]
            assert rep.static_call_sites == sc["size"] // (sc["entsize"] or 8), mod
            assert rep.static_calls_by_key == _readelf_static_call_keys(plain), mod
            assert sum(rep.static_calls_by_function.values()) == rep.static_call_sites
            if ".retpoline_sites" in secs:
                assert rep.retpoline_sites == rep.indirect_total  # the kernel's own list agrees
            totals[(label, binary.module_name(str(mod)))] = (rep.indirect_total, rep.static_call_sites)
    # kvm_x86_ops calls are static calls in both: kvm.ko has hundreds of sites with kvm_x86_ keys
    for label in debian_kvm_modules:
        assert totals[(label, "kvm")][1] > 300
    r = ops("--binary", *(str(m) for mods in debian_kvm_modules.values() for m in mods), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["modules"]) == 6
    text = ops("--binary", *(str(m) for mods in debian_kvm_modules.values() for m in mods))
    assert "comparison (same module name):" in text.stdout
