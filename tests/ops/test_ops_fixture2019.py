"""The 2019-style fixture: a global ``struct kvm_x86_ops *kvm_x86_ops``, ``kvm_x86_ops->m()`` calls,
NULL tests, runtime assignments, two vendor instances.  Expected values are written here from the
fixture's design (see the comments in the fixture files), and call sites are cross-checked by a
regex pass that shares no code with kmodsim."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kmodsim.ops import load_inputs, run_census

from .conftest import FIXTURES

FIX = FIXTURES / "kvm2019"

# member -> class, by construction of the fixture:
#  * mandatory: set by both vendors, called without a NULL test;
#  * update_cr8_intercept: vmx clears it at setup, x86.c returns early when NULL;
#  * sync_pir_to_irr: svm leaves it unset, the call is guarded (else branch);
#  * get_mt_mask: svm leaves it unset, "m ? m(...) : 0" -> optional returning 0;
#  * set_tss_addr: svm leaves it unset, called unguarded for its int value -> ret0;
#  * mem_enc_op: vmx leaves it unset, "if (!m) return -ENOTTY;" guards the call;
#  * set_hv_timer: svm leaves it unset, guarded through the predicate kvm_can_use_hv_timer();
#  * cancel_hv_timer: svm leaves it unset, returns void.
EXPECTED_CLASS = {
    "hardware_enable": "mandatory",
    "hardware_disable": "mandatory",
    "vcpu_create": "mandatory",
    "vcpu_free": "mandatory",
    "vcpu_load": "mandatory",
    "get_cpl": "mandatory",
    "handle_exit": "mandatory",
    "tlb_flush": "mandatory",
    "update_cr8_intercept": "optional",
    "sync_pir_to_irr": "optional",
    "get_mt_mask": "ret0",
    "set_tss_addr": "ret0",
    "mem_enc_op": "optional",
    "set_hv_timer": "optional",
    "cancel_hv_timer": "optional",
}


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def _independent_call_sites() -> set[tuple[str, int, str]]:
    """(file, line, member) of every call through the table, found by regex."""
    found = set()
    for f in sorted(FIX.glob("*.c")):
        text = _strip_comments(f.read_text())
        for m in re.finditer(r"\bkvm_x86_ops\s*->\s*(\w+)\s*\(|\bops\s*\.\s*(\w+)\s*\(", text):
            found.add((f.name, text.count("\n", 0, m.start()) + 1, m.group(1) or m.group(2)))
        for m in re.finditer(r"\bINDIRECT_CALL_\d+\s*\(\s*kvm_x86_ops\s*->\s*(\w+)", text):
            found.add((f.name, text.count("\n", 0, m.start()) + 1, m.group(1)))
    return found


@pytest.fixture(scope="module")
def census():
    inputs, errors, _root = load_inputs([str(FIX)])
    assert errors == []
    return run_census("kvm_x86_ops", inputs)


def test_members_come_from_the_struct_definition(census):
    header = (FIX / "kvm_host.h").read_text()
    body = header[header.index("struct kvm_x86_ops {"):]
    body = body[: body.index("};")]
    assert [m.name for m in census.members] == re.findall(r"\(\*(\w+)\)\s*\(", body)
    assert census.data_members == ["cpu_dirty_log_size"]
    assert census.definition.file == "kvm_host.h"


def test_classification(census):
    assert {m.name: m.classification for m in census.members} == EXPECTED_CLASS
    assert census.xmacro is None and census.mismatches == []


def test_instances_and_implementations(census):
    assert sorted(i.name for i in census.instances) == ["svm_x86_ops", "vmx_x86_ops"]
    for vendor in ("vmx", "svm"):
        text = (FIX / f"{vendor}.c").read_text()
        block = text[text.index(f"struct kvm_x86_ops {vendor}_x86_ops"):]
        block = block[: block.index("};")]
        expected = {k: v for k, v in re.findall(r"\.(\w+)\s*=\s*(\w+),", block) if k in EXPECTED_CLASS}
        got = {m.name: m.implementations[f"{vendor}_x86_ops"] for m in census.members
               if f"{vendor}_x86_ops" in m.implementations}
        assert got == expected


def test_every_call_site_found(census):
    got = {(c.file, c.line, m.name) for m in census.members for c in m.call_sites}
    assert got == _independent_call_sites()
    idioms = {(m.name, c.idiom) for m in census.members for c in m.call_sites}
    assert ("vcpu_free", "x.m()") in idioms
    assert ("handle_exit", "INDIRECT_CALL_2()") in idioms
    assert ("vcpu_load", "p->m()") in idioms  # inside kvm_for_each_vcpu { }


def test_null_tests_assignments_copies(census):
    by = {m.name: m for m in census.members}
    checks = {(m.name, n.line, n.idiom, n.fallback) for m in census.members for n in m.null_checks}
    assert checks == {
        ("hardware_enable", 19, "WARN_ON(!p->m)", None),
        ("update_cr8_intercept", 38, "if (!p->m)", "return"),
        ("sync_pir_to_irr", 47, "if (p->m)", "else"),
        ("get_mt_mask", 56, "p->m ? :", "zero"),
        ("mem_enc_op", 68, "if (!p->m)", "error"),
        ("set_hv_timer", 10, "p->m != NULL", None),
    }
    assert [n.assertion for n in by["hardware_enable"].null_checks] == [True]
    assert [n.predicate for n in by["set_hv_timer"].null_checks] == [True]
    a = by["update_cr8_intercept"].assignments
    assert [(x.file, x.target, x.value) for x in a] == [("vmx.c", "vmx_x86_ops.update_cr8_intercept", "NULL")]
    assert by["update_cr8_intercept"].cleared_in == ["vmx_x86_ops"]
    assert [(c.function, c.target, c.value) for c in census.copies] == [
        ("kvm_init", "kvm_x86_ops", "ops"),
        ("kvm_exit", "kvm_x86_ops", "NULL"),
    ]


def test_plan_json(ops):
    r = ops(str(FIX), "--struct", "kvm_x86_ops", "--emit", "plan", "--json")
    assert r.returncode == 0, r.stderr
    plan = {p["member"]: p for p in json.loads(r.stdout)["plan"]}
    # two vendors, no --instance: no single implementation, so no direct calls
    expected = {
        "hardware_enable": "static_call", "get_cpl": "static_call", "handle_exit": "static_call",
        "update_cr8_intercept": "static_call_cond", "cancel_hv_timer": "static_call_cond",
        "get_mt_mask": "static_call_ret0", "set_tss_addr": "static_call_ret0",
        "mem_enc_op": "early_return", "sync_pir_to_irr": "early_return", "set_hv_timer": "early_return",
    }
    assert {k: plan[k]["conversion"] for k in expected} == expected
    assert all(p["removes"] == 1 for p in plan.values())  # one indirect call per member in the fixture
    assert sum(p["removes"] for p in plan.values()) == len(_independent_call_sites())


def test_plan_text_with_instance(ops):
    r = ops(str(FIX), "--struct", "kvm_x86_ops", "--emit", "plan", "--instance", "vmx_x86_ops")
    assert r.returncode == 0, r.stderr
    assert "x86.c:22 p->m()               direct -> vmx_hardware_enable()" in r.stdout
    assert re.search(r"mem_enc_op\s+optional\s+early_return", r.stdout)


def test_emit_xmacro(ops):
    r = ops(str(FIX), "--struct", "kvm_x86_ops", "--emit", "xmacro")
    assert r.returncode == 0, r.stderr
    entries = re.findall(r"^(KVM_X86_OP(?:_OPTIONAL(?:_RET0)?)?)\((\w+)\)$", r.stdout, re.M)
    cls = {"KVM_X86_OP": "mandatory", "KVM_X86_OP_OPTIONAL": "optional", "KVM_X86_OP_OPTIONAL_RET0": "ret0"}
    assert {name: cls[macro] for macro, name in entries} == EXPECTED_CLASS
    assert [name for _, name in entries] == list(EXPECTED_CLASS)


def _build_and_run(tree: Path, out: Path) -> tuple[str, list[str]]:
    """Compile and link the fixture program, run it: (its output, gcc's warnings)."""
    sources = sorted(str(p) for p in tree.glob("*.c"))
    cc = subprocess.run(["gcc", "-Wall", "-Wextra", "-Wno-unused-parameter", "-o", str(out), *sources],
                        capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    warnings = re.findall(r"warning: (.*)", cc.stderr)
    return subprocess.run([str(out)], check=True, capture_output=True, text=True).stdout, warnings


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("patch") is None, reason="needs gcc and patch")
def test_patch_applies_compiles_and_behaves_the_same(ops, tmp_path):
    orig = tmp_path / "orig"
    shutil.copytree(FIX, orig)
    r = ops(str(orig), "--struct", "kvm_x86_ops", "--emit", "patch", "--prefix", "vmx")
    assert r.returncode == 0, r.stderr
    diff = r.stdout
    assert "--- a/x86.c" in diff and "+++ b/x86.c" in diff
    assert "+int vmx_get_cpl(struct kvm_vcpu *vcpu);" in diff
    assert "+u64 vmx_get_mt_mask(struct kvm_vcpu *vcpu, gfn_t gfn, bool is_mmio);" in diff
    # mem_enc_op has no vmx implementation: left as an indirect call, and said so
    assert "mem_enc_op: no direct target" in diff

    work = tmp_path / "work"
    shutil.copytree(FIX, work)
    dry = subprocess.run(["patch", "--dry-run", "-p1", "-d", str(work)], input=diff, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    real = subprocess.run(["patch", "-p1", "-d", str(work)], input=diff, capture_output=True, text=True)
    assert real.returncode == 0, real.stdout + real.stderr

    patched = _strip_comments((work / "x86.c").read_text())
    remaining = set(re.findall(r"kvm_x86_ops\s*->\s*(\w+)\s*\(", patched))
    assert remaining == {"mem_enc_op"}
    assert "INDIRECT_CALL_2" not in patched and "vmx_handle_exit(vcpu)" in patched
    assert "vmx_vcpu_free(vcpu);" in patched  # the x.m() idiom on a local copy

    for f in sorted(work.glob("*.c")):
        cc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", str(f)], capture_output=True, text=True)
        assert cc.returncode == 0, cc.stderr
    before, warnings_before = _build_and_run(orig, tmp_path / "original")
    after, warnings_after = _build_and_run(work, tmp_path / "patched")
    assert warnings_before == []
    # the only new warning: kvm_free_vcpu's local copy of the table is dead once ops.vcpu_free() is direct
    assert len(warnings_after) == 1
    assert re.match(r"unused variable .ops. \[-Wunused-variable\]", warnings_after[0])
    assert after == before and "vmx_handle_exit" in after


def test_patch_needs_a_target(ops):
    r = ops(str(FIX), "--struct", "kvm_x86_ops", "--emit", "patch")
    assert r.returncode == 2
    assert r.stdout == ""
    assert "use --instance or --prefix" in r.stderr and len(r.stderr.splitlines()) == 1
