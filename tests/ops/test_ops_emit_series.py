"""``kmodsim ops --emit series`` on the 2019-shape fixture: the plan as commits, applied with git am
one by one; each step compiled with gcc and run (direct calls: the program prints what the
original prints), counted by a regex of its own (static calls: the calls through the table fall
by what each commit says), and the same bytes from run to run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import FIXTURES

FIX = FIXTURES / "kvm2019"
STRUCT = ["--struct", "kvm_x86_ops"]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t",
       "GIT_COMMITTER_EMAIL": "t@t.invalid", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent", "LC_ALL": "C"}


def git(cwd, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, text=True).stdout


def _repo(tmp_path: Path, name: str = "tree") -> Path:
    d = tmp_path / name
    shutil.copytree(FIX, d)
    git(d, "init", "-q", "-b", "main")
    git(d, "add", ".")
    git(d, "commit", "-q", "-m", "base")
    return d


def _table_calls(tree: Path) -> dict[str, int]:
    """Calls through the global table, by member, read with a regex (not the census)."""
    out: dict[str, int] = {}
    for f in sorted(tree.glob("*.[ch]")):
        text = re.sub(r"/\*.*?\*/", "", f.read_text(), flags=re.S)
        for m in re.findall(r"\bkvm_x86_ops\s*->\s*(\w+)\s*\(", text):
            out[m] = out.get(m, 0) + 1
    return out


def _subject(patch: Path) -> str:
    """The Subject header of a format-patch file, unfolded, without its [PATCH n/m]."""
    head = patch.read_text().split("\n\n", 1)[0].replace("\n ", " ")
    return re.search(r"^Subject: \[PATCH[^]]*\] (.*)$", head, re.M).group(1)


def _build_and_run(tree: Path, out: Path) -> str:
    sources = sorted(str(p) for p in tree.glob("*.c"))
    cc = subprocess.run(["gcc", "-Wall", "-o", str(out), *sources], capture_output=True, text=True)
    assert cc.returncode == 0, cc.stderr
    return subprocess.run([str(out)], check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("git") is None, reason="needs gcc and git")
def test_direct_series_one_commit_per_member_each_step_compiles_and_behaves_the_same(ops, tmp_path):
    out = tmp_path / "patches"
    r = ops(str(FIX), *STRUCT, "--emit", "series", "--instance", "vmx_x86_ops", "--output", str(out))
    assert r.returncode == 0, r.stderr
    patches = sorted(out.iterdir())
    # one commit per member with a vmx implementation and a call, but update_cr8_intercept: vmx's
    # hardware_setup() clears it at run time (vmx.c), so no target is known at build time
    subjects = [_subject(p) for p in patches]
    assert subjects == [f"kvm_x86_ops: call vmx_{m}() directly for {m}" for m in
                        ("hardware_enable", "hardware_disable", "vcpu_create", "vcpu_free", "vcpu_load", "get_cpl",
                         "handle_exit", "tlb_flush", "sync_pir_to_irr", "get_mt_mask", "set_tss_addr",
                         "set_hv_timer", "cancel_hv_timer")]
    assert "kmodsim: ops: update_cr8_intercept: set at run time (vmx.c:" in r.stderr
    assert r.stdout.startswith(f"{len(patches)} commits ({out}):\n")
    tree = _repo(tmp_path)
    want = _build_and_run(tree, tmp_path / "prog")
    calls = [_table_calls(tree)]
    for i, p in enumerate(patches):
        git(tree, "am", "-q", str(p))
        assert _build_and_run(tree, tmp_path / f"prog{i}") == want, p.name
        calls.append(_table_calls(tree))
        member = subjects[i].rsplit(" ", 1)[1]
        # this commit's member is no longer called through the table; no other count moved
        assert member not in calls[-1]
        assert {k: v for k, v in calls[-2].items() if k != member} == calls[-1]
    assert set(calls[-1]) == {"update_cr8_intercept", "mem_enc_op"}
    assert "kmodsim: ops: mem_enc_op: no direct target (vmx_x86_ops leaves it unset): left alone" in r.stderr
    log = git(tree, "log", "--format=%an <%ae> %ad", "-1")
    assert log.startswith("kmodsim ops <ops@kmodsim.invalid>")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_static_call_series_steps_counted_and_byte_identical(ops, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = ops(str(FIX), *STRUCT, "--emit", "series", "--group", "file", "--output", str(a))
    assert r.returncode == 0, r.stderr
    assert ops(str(FIX), *STRUCT, "--emit", "series", "--group", "file", "--output", str(b)).returncode == 0
    assert [p.read_bytes() for p in sorted(a.iterdir())] == [p.read_bytes() for p in sorted(b.iterdir())]
    patches = sorted(a.iterdir())
    assert [p.name for p in patches] == ["0001-kvm_x86_ops-a-static-call-for-each-member.patch",
                                         "0002-kvm_x86_ops-static-calls-in-x86.c.patch"]
    first = patches[0].read_text()
    # the X-macro list beside the struct's header, declared after the table's extern, defined
    # after its definition, updated after the table is set (kvm_x86_ops = ops), not where it is cleared
    assert "create mode 100644 kvm-x86-ops.h" in first
    assert "+KVM_X86_OP(hardware_enable)\n" in first and "+KVM_X86_OP_NULL(update_cr8_intercept)\n" in first
    assert "+\tDECLARE_STATIC_CALL(kvm_x86_##func, *(((struct kvm_x86_ops *)0)->func));" in first
    assert "+\tstatic_call_update(kvm_x86_##func, kvm_x86_ops->func);" in first
    assert "+\tDEFINE_STATIC_CALL_NULL(kvm_x86_##func, *(((struct kvm_x86_ops *)0)->func));" in first
    assert first.count("+\tkvm_x86_ops_static_call_update();") == 1
    assert re.search(r"^ \tkvm_x86_ops = ops;\n\+\tkvm_x86_ops_static_call_update\(\);$", first, re.M)
    tree = _repo(tmp_path)
    before = _table_calls(tree)
    for p in patches:
        git(tree, "am", "-q", str(p))
    after = _table_calls(tree)
    text = (tree / "x86.c").read_text()
    # left alone and said so: the local copy (ops.vcpu_free), INDIRECT_CALL_2, the predicate's member
    assert "ops.vcpu_free(vcpu);" in text and "INDIRECT_CALL_2(kvm_x86_ops->handle_exit" in text
    assert "x86.c:101: vcpu_free: called through ops, not the table kvm_x86_ops: left alone" in r.stderr
    assert "x86.c:92: handle_exit: an INDIRECT_CALL_2() site, not a call through the table kvm_x86_ops" in r.stderr
    # every call through kvm_x86_ops (the regex's) a static call now: 13, none static_call_cond (the
    # fixture's void members are called unguarded, or after a test that returns early: kept)
    assert after == {} and sum(before.values()) == 13
    assert len(re.findall(r"\bstatic_call\(kvm_x86_\w+\)\(", text)) == 13 and "static_call_cond" not in text
    assert "x86.c:40: update_cr8_intercept: NULL test kept in update_cr8_intercept()" in r.stderr
    # the census reads the emitted list back with the classes written
    doc = json.loads(ops(str(tree), *STRUCT, "--json").stdout)
    assert doc["xmacro"]["family"] == "KVM_X86_OP" and doc["xmacro"]["file"] == "kvm-x86-ops.h"
    listed = {e["name"]: e["class"] for e in doc["xmacro"]["entries"]}
    assert listed == {m["name"]: ("optional" if m["derived_class"] != "mandatory" else "mandatory")
                      for m in doc["members"]}


@pytest.mark.parametrize("case", ["no-dest", "both-dests", "json", "members-without-series", "unknown-member",
                                  "branch-not-git", "branch-exists"])
def test_emit_series_bad_input(ops, tmp_path, case):
    """Exit 2 and one line saying why (after argparse's usage for a usage error), nothing written."""
    out = tmp_path / "out"
    argv = [str(FIX), *STRUCT, "--emit", "series"]
    if case == "no-dest":
        pass
    elif case == "both-dests":
        argv += ["--output", str(out), "--branch", "b"]
    elif case == "json":
        argv += ["--output", str(out), "--json"]
    elif case == "members-without-series":
        argv = [str(FIX), *STRUCT, "--members", "get_cpl"]
    elif case == "unknown-member":
        argv += ["--output", str(out), "--members", "get_cpl,nope"]
    elif case == "branch-not-git":
        plain = tmp_path / "plain"
        shutil.copytree(FIX, plain)
        argv = [str(plain), *STRUCT, "--emit", "series", "--branch", "b"]
    else:
        tree = _repo(tmp_path)
        git(tree, "branch", "b")
        argv = [str(tree), *STRUCT, "--emit", "series", "--branch", "b"]
    r = ops(*argv)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr and r.stdout == "", r.stderr
    if case in ("no-dest", "both-dests", "json", "members-without-series"):  # argparse's usage, then one line
        assert lines[-1].startswith("kmodsim ops: error: ") and "--emit series" in lines[-1] or "--members" in lines[-1]
    else:
        assert len(lines) == 1 and lines[0].startswith("kmodsim: "), r.stderr
    assert not out.exists()
