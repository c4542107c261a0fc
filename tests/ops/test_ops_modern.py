"""A 6.x-shaped fixture: static calls declared from an X-macro list, the ``kvm_x86_call()`` wrapper,
``static_call_cond``, a call inside a ``#define`` body, X-macro consumers with aliases.  Expected
values are written from the fixture by hand."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from kmodsim.ops import load_inputs, run_census

from .conftest import FIXTURES

FIX = FIXTURES / "kvm612"


@pytest.fixture(scope="module")
def census():
    inputs, errors, _root = load_inputs([str(FIX)])
    assert errors == []
    return run_census("kvm_x86_ops", inputs)


def test_macro_pass_finds_prefix_wrapper_and_list(census):
    assert census.static_prefix == "kvm_x86_"
    assert census.wrappers == ["kvm_x86_call"]
    assert census.xmacro.family == "KVM_X86_OP"
    assert census.xmacro.file == "include/kvm-x86-ops.h"
    assert [(e.name, e.classification) for e in census.xmacro.entries] == [
        ("vcpu_run", "mandatory"), ("get_cpl", "mandatory"), ("vcpu_blocking", "optional"),
        ("get_mt_mask", "ret0"), ("mem_enc_ioctl", "optional"), ("cache_reg", "mandatory"),
        ("hwapic_isr_update", "optional"),
    ]
    # the list file holds no C the census needs: it is read by the macro pass, not parsed
    assert "include/kvm-x86-ops.h" not in census.files_parsed


def test_call_sites_in_every_idiom(census):
    sites = {(m.name, c.file, c.line, c.idiom, c.in_macro, c.function)
             for m in census.members for c in m.call_sites}
    assert sites == {
        ("vcpu_blocking", "include/kvm_host.h", 31, "kvm_x86_call()", False, "kvm_arch_vcpu_blocking"),
        ("cache_reg", "kvm/kvm_cache_regs.h", 8, "kvm_x86_call()", True, "BUILD_KVM_GPR_ACCESSORS"),
        ("vcpu_run", "kvm/x86.c", 32, "kvm_x86_call()", False, "kvm_arch_vcpu_ioctl_run"),
        ("get_cpl", "kvm/x86.c", 34, "kvm_x86_call()", False, "kvm_arch_vcpu_ioctl_run"),
        ("hwapic_isr_update", "kvm/x86.c", 36, "static_call_cond()", False, "kvm_arch_vcpu_ioctl_run"),
        ("get_mt_mask", "kvm/x86.c", 42, "static_call()", False, "kvm_mt"),
        ("mem_enc_ioctl", "kvm/x86.c", 49, "kvm_x86_call()", False, "kvm_arch_vm_ioctl"),
    }
    # the X-macro consumers (kvm_x86_ops.func, kvm_x86_##func) are not uses of any member
    assert all(not m.null_checks for m in census.members if m.name != "mem_enc_ioctl")


def test_classification_agrees_with_the_list(census):
    assert {m.name: m.classification for m in census.members} == {
        e.name: e.classification for e in census.xmacro.entries
    }
    assert census.mismatches == []
    by = {m.name: m for m in census.members}
    assert "static_call_cond at kvm/x86.c:36" in by["hwapic_isr_update"].evidence
    assert by["get_mt_mask"].evidence == ["unset in svm_x86_ops", "unguarded call at kvm/x86.c:42"]


@pytest.mark.skipif(shutil.which("patch") is None, reason="needs patch")
def test_patch_converts_wrapper_and_static_calls(ops, tmp_path):
    r = ops(str(FIX), "--struct", "kvm_x86_ops", "--emit", "patch", "--instance", "vt_x86_ops")
    assert r.returncode == 0, r.stderr
    diff = r.stdout
    assert "+\tint r = vmx_vcpu_run(vcpu, false);" in diff
    assert "+\treturn vmx_get_mt_mask(vcpu, gfn, false);" in diff
    assert "+\tvmx_hwapic_isr_update(vcpu, -1);" in diff
    assert "+u8 vmx_get_mt_mask(struct kvm_vcpu *vcpu, gfn_t gfn, bool is_mmio);" in diff
    # vt_x86_ops has no mem_enc_ioctl / vcpu_blocking: those stay static calls; the macro-body
    # site is not rewritten (and the preamble says so)
    removed = "\n".join(line for line in diff.splitlines() if line.startswith("-"))
    assert "mem_enc_ioctl" not in removed and "vcpu_blocking" not in removed
    assert "BUILD_KVM_GPR_ACCESSORS" in diff.split("--- a/")[0]  # noted in the preamble
    work = tmp_path / "w"
    shutil.copytree(FIX, work)
    dry = subprocess.run(["patch", "--dry-run", "-p1", "-d", str(work)], input=diff, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr


def test_json_idioms(ops):
    doc = json.loads(ops(str(FIX), "--struct", "kvm_x86_ops", "--json").stdout)
    assert doc["static_call_wrappers"] == ["kvm_x86_call"]
    idioms = sorted(c["idiom"] for m in doc["members"] for c in m["call_sites"])
    assert idioms == ["kvm_x86_call()"] * 5 + ["static_call()", "static_call_cond()"]
