"""examples/kvm-monolithic end to end: Debian's linux-source-6.1 built out of tree in the normal and
the monolithic layout, checked, loaded on the model and on the real 6.1 kernel under QEMU.

Expected values come from independent sources: Debian's Module.symvers (the exports of
arch/x86/kvm/kvm and their CRCs), kbuild's own Module.symvers of our build, ``readelf -SW`` of
Debian's signed modules, modpost's output, and the real kernel's /proc/modules and log (verify).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import oracles
from conftest import need

EXAMPLE = Path(__file__).parent.parent / "examples" / "kvm-monolithic"

pytestmark = [pytest.mark.realkernel, pytest.mark.slow]


@pytest.fixture(scope="module")
def res():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import kvm_monolithic
    finally:
        sys.path.remove(str(EXAMPLE))
    try:
        return kvm_monolithic.run(log=lambda _s: None)
    except (RuntimeError, OSError, kvm_monolithic.build.BuildError) as exc:
        need(f"kvm-monolithic example: {exc}")


def _kvm_rows(res) -> dict[str, tuple[int, bool, str]]:
    return oracles.symvers(str(Path(res["ctx"]["headers"]) / "Module.symvers"))["arch/x86/kvm/kvm"]


def _alloc_sizes(path: str) -> dict[str, int]:
    """SHF_ALLOC section sizes from ``readelf -SW`` (flag column contains A)."""
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for m in re.finditer(r"^\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+(\S*)",
                         out, re.M):
        if "A" in m.group(3):
            sizes[m.group(1)] = int(m.group(2), 16)
    return sizes


def test_normal_layout_equals_debian(res):
    for name, ours in res["ctx"]["modules"]["normal"].items():
        a, b = _alloc_sizes(ours), _alloc_sizes(res["ctx"]["debian"][name])
        assert len(a) > 30
        # modpost adds intree=Y (9 bytes) to Debian's in-tree .modinfo; everything else is identical
        assert {n for n in a.keys() | b.keys() if a.get(n) != b.get(n)} == {".modinfo"}
        assert b[".modinfo"] - a[".modinfo"] == len(b"intree=Y\0")
    built = oracles.symvers(str(Path(res["ctx"]["builds"]["normal"]) / "arch/x86/kvm/Module.symvers"))
    (kvm_path,) = [p for p in built if p.endswith("/kvm")]
    assert built[kvm_path] == _kvm_rows(res) and len(built) == 1


def test_duplicates_are_kvm_exports(res):
    kvm = set(_kvm_rows(res))
    assert len(kvm) > 300
    c = res["check"]
    assert c["exit"] == 1 and set(c["duplicates"]) == kvm and len(c["duplicates"]) == len(kvm)
    assert {f["check"] for f in c["findings"]} == {"duplicate-export"}
    assert c["allowed_exit"] == 0 and c["allowed_findings"] == []
    assert c["normal_exit"] == 0 and c["normal_findings"] == []
    intree = res["modpost"]["in-tree"]
    got = {re.match(r"ERROR: modpost: kvm-amd: '(\S+)' exported twice\. Previous export was in kvm-intel\.ko$",
                    ln).group(1) for ln in intree["lines"]}
    assert intree["exit"] == 1 and got == kvm and len(intree["lines"]) == len(kvm)
    ext = res["modpost"]["external"]  # an M= build (-e) reports duplicates of vmlinux only
    assert ext["exit"] == 0 and ext["lines"] == []


def test_load_matches_real_kernel(res):
    kvm = set(_kvm_rows(res))
    runs = {r["script"]: r for r in res["runs"]}
    assert len(runs) == 4
    for r in runs.values():
        assert r["verify_exit"] == 0 and r["differences"] == [], (r["script"], r["differences"])
    steps = runs["02_monolithic.script"]["kernel"]["steps"]
    assert [s["errname"] for s in steps[:5]] == ["", "", "", "ENOEXEC", "ENOEXEC"]
    (line,) = steps[3]["messages"]
    m = re.fullmatch(r"kvm_intel: exports duplicate symbol (\S+) \(owned by kvm_amd\)", line)
    assert m and m.group(1) in kvm
    assert runs["02_monolithic.script"]["model"]["steps"][3]["messages"] == [line]
    # kvm_amd stays loaded and live after the refusal; unloading works afterwards
    assert [(x["name"], x["state"]) for x in steps[3]["modules"]][0] == ("kvm_amd", "Live")
    rm = next(s for s in steps if s["cmd"] == "rmmod kvm_amd")
    assert rm["errno"] == 0 and "kvm_amd" not in [x["name"] for x in rm["modules"]]
    assert steps[-1]["modules"] == []
    # kvm-intel's own init under TCG (no VMX): what the real kernel returned
    assert any(s["errname"] == "EOPNOTSUPP" or s["errno"] == 95 for s in steps)


def test_footprint_exact(res):
    rows = {(r["layout"], r["module"]): r for r in res["footprint"]["rows"]}
    for key in (("normal", "kvm"), ("normal", "kvm-amd"), ("mono", "kvm-amd")):
        assert rows[key]["proc_modules"] == [rows[key]["model"]], key
    amd = res["footprint"]["per_host"]["kvm-amd"]
    assert amd["saved"] == rows[("normal", "kvm")]["proc_modules"][0] + rows[("normal", "kvm-amd")]["proc_modules"][0] \
        - rows[("mono", "kvm-amd")]["proc_modules"][0]
    # every module, kvm-intel included (its init fails under TCG, so /proc/modules never shows it),
    # is seen by the do_init_module() probe: core and init sizes as the model predicts
    for key, r in rows.items():
        assert r["formed"] == [[r["model"], r["model_init"]]], key
        assert r["exact"], key
    for layout in ("normal", "mono"):
        assert rows[(layout, "kvm-intel")]["proc_modules"] == []
    intel = res["footprint"]["per_host"]["kvm-intel"]
    core = {k: r["formed"][0][0] for k, r in rows.items()}
    assert intel["saved"] == core[("normal", "kvm")] + core[("normal", "kvm-intel")] - core[("mono", "kvm-intel")]


def test_ops(res):
    o = res["ops"]
    assert o["members"] == 115 and o["call_sites"] == {"static_call()": 175, "static_call_cond()": 27}
    bins = {b["module"]: b for b in o["binary"]}
    # the monolithic vendor module carries kvm.ko's static calls plus its own
    for v in ("kvm-intel", "kvm-amd"):
        assert bins[f"mono/{v}"]["static_call_sites"] >= bins["normal/kvm"]["static_call_sites"]
