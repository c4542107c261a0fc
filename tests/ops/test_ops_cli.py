"""``kmodsim ops`` as a command: exit codes, one-line input errors, the JSON contract."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from kmodsim.ops.render import JSON_SCHEMA

from .conftest import FIXTURES

FIX = FIXTURES / "kvm2019"
STRUCT = ["--struct", "kvm_x86_ops"]


def _no_traceback(r) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def test_clean_run_exits_0_with_text(ops):
    r = ops(str(FIX), *STRUCT)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "struct kvm_x86_ops: defined at kvm_host.h:" in r.stdout
    assert "instance vmx_x86_ops (vmx.c:" in r.stdout
    assert "x-macro list: none found" in r.stdout


def test_json_matches_documented_schema(ops):
    r = ops(str(FIX), *STRUCT, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.validate(doc, JSON_SCHEMA)
    # the keys the issue names
    assert doc["struct"] == "kvm_x86_ops" and isinstance(doc["parse_errors"], list)
    m = doc["members"][0]
    assert {"name", "optional", "ret0", "call_sites", "null_checks", "assignments", "implementations"} <= set(m)
    assert {"file", "line", "idiom"} <= set(m["call_sites"][0])
    plan = json.loads(ops(str(FIX), *STRUCT, "--json", "--emit", "plan").stdout)
    jsonschema.validate(plan, JSON_SCHEMA)
    assert plan["plan"]


def test_missing_input_is_one_line_and_others_still_processed(ops, tmp_path):
    missing = tmp_path / "nope.c"
    r = ops(str(FIX), str(missing), *STRUCT)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"kmodsim: {missing}: no such file or directory"]
    assert "instance vmx_x86_ops" in r.stdout  # the fixture was still read
    _no_traceback(r)


def test_binary_data_named_c_is_rejected(ops, tmp_path):
    bad = tmp_path / "blob.c"
    bad.write_bytes(b"\x00\x01\x02garbage\x00" * 10)
    r = ops(str(FIX), str(bad), *STRUCT, "--json")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"kmodsim: {bad}: not C source (binary data)"]
    assert json.loads(r.stdout)["members"]
    _no_traceback(r)


def test_prose_file_given_explicitly_is_not_c(ops, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("This is a README. It explains: things (some of them) -- and more! 100% sure?\n" * 5)
    r = ops(str(FIX), str(notes), *STRUCT)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"kmodsim: {notes}: not C source (does not parse as C)"]
    _no_traceback(r)


def test_elf_object_given_as_source(ops, tmp_path):
    obj = tmp_path / "mod.o"
    obj.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 57)
    r = ops(str(FIX), str(obj), *STRUCT)
    assert r.returncode == 2
    assert "not C source (an ELF object; use --binary)" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_unknown_struct_is_an_input_error(ops):
    r = ops(str(FIX), "--struct", "file_operations")
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1
    assert "struct file_operations: no definition found in the inputs" in r.stderr
    _no_traceback(r)


@pytest.mark.parametrize(
    "args",
    [
        [str(FIX)],  # no --struct
        [str(FIX), *STRUCT, "--json", "--emit", "patch"],
        [str(FIX), *STRUCT, "--emit", "bogus"],
        [str(FIX), *STRUCT, "--instance", "a", "--prefix", "b"],
        ["--binary", str(FIX / "x86.c"), "--emit", "plan"],
        [],
    ],
)
def test_usage_errors_exit_2(ops, args):
    r = ops(*args)
    assert r.returncode == 2
    _no_traceback(r)


def test_unknown_instance(ops):
    r = ops(str(FIX), *STRUCT, "--emit", "plan", "--instance", "tdx_x86_ops")
    assert r.returncode == 2
    assert "no instance 'tdx_x86_ops'" in r.stderr and "vmx_x86_ops" in r.stderr


def test_xmacro_mismatches_exit_1(ops, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(FIX, tree)
    # a hand-written list that disagrees with the code three ways
    (tree / "kvm-x86-ops.h").write_text(
        "KVM_X86_OP(hardware_enable)\nKVM_X86_OP(hardware_disable)\nKVM_X86_OP(vcpu_create)\n"
        "KVM_X86_OP(vcpu_free)\nKVM_X86_OP(vcpu_load)\nKVM_X86_OP_OPTIONAL(get_cpl)\n"
        "KVM_X86_OP(handle_exit)\nKVM_X86_OP(tlb_flush)\nKVM_X86_OP_OPTIONAL(update_cr8_intercept)\n"
        "KVM_X86_OP_OPTIONAL(sync_pir_to_irr)\nKVM_X86_OP_OPTIONAL_RET0(get_mt_mask)\n"
        "KVM_X86_OP_OPTIONAL_RET0(set_tss_addr)\nKVM_X86_OP_OPTIONAL(mem_enc_op)\n"
        "KVM_X86_OP_OPTIONAL(set_hv_timer)\nKVM_X86_OP(bogus)\n"
    )
    r = ops(str(tree), *STRUCT, "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    got = {(m["member"], m["problem"], m["derived"], m["xmacro"]) for m in doc["mismatches"]}
    assert got == {
        ("get_cpl", "classification", "mandatory", "optional"),
        ("cancel_hv_timer", "not in x-macro list", "optional", None),
        ("bogus", "not a member", None, "mandatory"),
    }
    assert doc["xmacro"]["file"] == "kvm-x86-ops.h" and len(doc["xmacro"]["entries"]) == 15
    text = ops(str(tree), *STRUCT)
    assert text.returncode == 1
    assert "get_cpl: code says mandatory, list says optional" in text.stdout


def test_parse_errors_are_reported_not_skipped(ops, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(FIX, tree)
    bad = tree / "broken.c"
    bad.write_text(
        '#include "kvm_host.h"\n'
        "int broken(struct kvm_vcpu *vcpu) { return kvm_x86_ops->get_cpl(vcpu) + ; }\n"
        "void fine(struct kvm_vcpu *vcpu) { kvm_x86_ops->tlb_flush(vcpu, true); }\n"
    )
    r = ops(str(tree), *STRUCT, "--json")
    assert r.returncode == 0, r.stderr  # parse errors are reported, they are not findings
    doc = json.loads(r.stdout)
    errs = [e for e in doc["parse_errors"] if e["file"] == "broken.c"]
    assert errs and {e["function"] for e in errs} == {"broken"} and {e["line"] for e in errs} == {2}
    sites = {(c["file"], c["line"]) for m in doc["members"] for c in m["call_sites"]}
    assert ("broken.c", 3) in sites  # the sound function around it was still read
    text = ops(str(tree), *STRUCT).stdout
    assert "broken.c:2:" in text and "in broken()" in text


def test_binary_bad_inputs(ops, tmp_path):
    text = tmp_path / "readme.ko"
    text.write_text("not an elf\n")
    trunc = tmp_path / "trunc.ko"
    trunc.write_bytes(b"\x7fELF\x02\x01\x01" + b"\x00" * 20)
    missing = tmp_path / "missing.ko"
    r = ops("--binary", str(text), str(trunc), str(missing), "--json")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 3
    assert lines[0] == f"kmodsim: {text}: not an ELF file (bad magic)"
    assert lines[1].startswith(f"kmodsim: {trunc}: truncated")
    assert lines[2] == f"kmodsim: {missing}: No such file or directory"
    assert json.loads(r.stdout)["modules"] == []
    _no_traceback(r)


def test_directory_input_walks_c_and_h_only(tmp_path, ops):
    tree = tmp_path / "tree"
    shutil.copytree(FIX, tree)
    (tree / "Makefile").write_text("obj-m += kvm.o\n")
    (tree / "sub").mkdir()
    (tree / "sub" / "image.bin").write_bytes(b"\x00" * 64)
    r = ops(str(tree), *STRUCT, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files_scanned"] == len(list(Path(FIX).glob("*.[ch]")))


def test_directory_without_c_files(ops, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = ops(str(empty), *STRUCT)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"kmodsim: {empty}: no C source files (*.c, *.h) in this directory"]
