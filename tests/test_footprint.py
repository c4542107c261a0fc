"""The footprint model against the real kernel: Debian's 6.1 (and 6.12) booted under QEMU load real
Debian modules and the kbuild fixtures; /proc/modules must show exactly the predicted size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kmodsim.footprint import module_footprint
from kmodsim.tree import find_modules

from conftest import kbuild_set, run_kmodsim

SCRIPT = Path(__file__).parent / "footprint" / "modules.script"


def _by_name(root: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in find_modules(root):
        out.setdefault(os.path.basename(p).split(".ko")[0].replace("-", "_"), p)
    return out


def _real_vs_model(k, headers: str, basic: Path, tmp_path: Path, profile: str) -> list[tuple[str, int, int]]:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "basic").symlink_to(basic)
    p = run_kmodsim("verify", "--kernel", headers, "--modules", k.modules_dir, "--vmlinuz", k.vmlinuz,
                    "--script", SCRIPT, "--json", cwd=ws)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout)
    assert doc["source"] == "kernel" and not [s["cmd"] for s in doc["steps"] if s["errno"]]
    paths = _by_name(k.modules_dir)
    paths.update({n: str(basic / f"{n}.ko") for n in ("kms_a", "kms_b", "kms_c")})
    return [(m["name"], m["size"], module_footprint(paths[m["name"]], profile).size) for m in doc["modules"]]


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian_61_sizes_exact(debian61, headers61, basic_build, tmp_path):
    rows = _real_vs_model(debian61, headers61, basic_build, tmp_path, "6.1")
    names = {n for n, _r, _m in rows}
    assert len(names - {"kms_a", "kms_b", "kms_c"}) >= 15 and {"kms_a", "kms_b", "kms_c"} <= names
    assert [r for r in rows if r[1] != r[2]] == []


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian_612_sizes_exact(debian612, headers612, tmp_path):
    basic = kbuild_set("basic", headers612)
    rows = _real_vs_model(debian612, headers612, basic, tmp_path, "6.4")
    assert len(rows) >= 18
    assert [r for r in rows if r[1] != r[2]] == []


def test_footprint_cli(basic_build, headers61):
    p = run_kmodsim("footprint", "--json", "--kernel", headers61, basic_build / "kms_a.ko", basic_build / "kms_b.ko")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["profile"] == "6.1" and [m["name"] for m in doc["modules"]] == ["kms_a", "kms_b"]
    for m in doc["modules"]:
        assert m["size"] % 4096 == 0 and m["pages"] == m["size"] // 4096
        assert sum(v for k, v in m["by_type"].items()) == m["size"]
    assert doc["total"]["size"] == sum(m["size"] for m in doc["modules"])


def test_footprint_refuses_unmodelled_kernel(basic_build, tmp_path):
    symvers = tmp_path / "Module.symvers"
    symvers.write_text("0x00000000\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    p = run_kmodsim("footprint", "--kernel", symvers, basic_build / "kms_a.ko")
    assert p.returncode == 2 and "no footprint model for kernel (unknown release)" in p.stderr
