"""The commands end to end, in a child process, on kbuild-built modules and Debian's real ones."""

from __future__ import annotations

import json

import pytest

import oracles
from conftest import run_kmodsim

pytestmark = pytest.mark.kbuild


def test_inspect_json_schema(basic_build):
    p = run_kmodsim("inspect", "--json", basic_build / "kms_a.ko", check=0)
    o = json.loads(p.stdout)
    assert {"name", "path", "vermagic", "exports", "imports", "modinfo"} <= set(o)
    assert o["name"] == "kms_a" and o["path"] == str(basic_build / "kms_a.ko")
    rows = oracles.symvers(str(basic_build / "Module.symvers"))
    mine = next(v for k, v in rows.items() if k.endswith("kms_a"))
    assert {e["name"]: (e["crc"], e["gpl"], e["namespace"]) for e in o["exports"]} == mine
    for e in o["exports"]:
        assert set(e) == {"name", "gpl", "namespace", "crc"}
        assert isinstance(e["gpl"], bool) and isinstance(e["namespace"], str) and isinstance(e["crc"], int)
    for i in o["imports"]:
        assert set(i) == {"name", "crc"}
    assert sorted(o["modinfo"]["alias"]) == ["kmsim-provider", "kmsim:a*"]
    assert o["modinfo"]["license"] == ["GPL"]


def test_inspect_text_is_modinfo_like(basic_build):
    p = run_kmodsim("inspect", basic_build / "kms_a.ko", check=0)
    lines = p.stdout.splitlines()
    assert lines[0] == f"filename:       {basic_build / 'kms_a.ko'}"
    assert "parm:           count:how many things to count (int)" in lines
    assert "license:        GPL" in lines
    assert "exports (4):" in lines
    assert any(ln.split()[-2:] == ["KMSIM_NS", "kms_a_ns"] for ln in lines)


def test_ldd_against_headers_and_build_tree(basic_build, headers61):
    p = run_kmodsim("ldd", "--json", basic_build / "kms_b.ko", "--kernel", headers61, "--modules", basic_build)
    assert p.returncode == 0, p.stderr
    o = json.loads(p.stdout)
    by = {i["symbol"]: i for i in o["imports"]}
    rows = oracles.symvers(str(basic_build / "Module.symvers"))
    a_rows = next(v for k, v in rows.items() if k.endswith("kms_a"))
    for sym in ("kms_a_plain", "kms_a_gpl", "kms_a_ns", "kms_a_counter"):
        assert by[sym]["provider"] == "kms_a"
        assert by[sym]["crc_check"] == "ok" and by[sym]["provider_crc"] == a_rows[sym][0]
    assert by["kms_a_ns"]["namespace"] == "KMSIM_NS" and by["kms_a_ns"]["namespace_ok"]
    vm = oracles.symvers(f"{headers61}/Module.symvers")["vmlinux"]
    assert by["kfree"]["provider"] == "vmlinux" and by["kfree"]["provider_crc"] == vm["kfree"][0]
    assert o["vermagic_ok"] is True


def test_ldd_unresolved_is_a_finding(basic_build, headers61):
    # without --modules, kms_a's symbols are in no Module.symvers row of the kernel: unresolved
    p = run_kmodsim("ldd", basic_build / "kms_b.ko", "--kernel", headers61)
    assert p.returncode == 1
    assert "\tkms_a_plain => not found" in p.stdout.splitlines()


@pytest.mark.realkernel
def test_ldd_debian_kvm_amd_from_symvers_rows(debian61, headers61):
    kvm_amd = f"{debian61.modules_dir}/kernel/arch/x86/kvm/kvm-amd.ko"
    p = run_kmodsim("ldd", "--json", kvm_amd, "--kernel", headers61, check=0)
    o = json.loads(p.stdout)
    owners = {i["provider"] for i in o["imports"]}
    assert owners == {"vmlinux", "kvm", "ccp"}  # modinfo depends=kvm,ccp
    assert all(i["crc_check"] == "ok" for i in o["imports"])
