"""The footprint model against the real kernel: Debian's 6.1 (and 6.12) booted under QEMU load real
Debian modules and the kbuild fixtures; /proc/modules must show exactly the predicted size."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kmodsim.memory_layout import module_footprint
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


def test_footprint_api_refuses_unmodelled_kernel(basic_build, tmp_path):
    import kmodsim

    symvers = tmp_path / "Module.symvers"
    symvers.write_text("0x00000000\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n")
    with pytest.raises(kmodsim.Error, match=r"Module.symvers: no footprint model for kernel \(unknown release\)"):
        kmodsim.footprint(str(basic_build / "kms_a.ko"), kernel=str(symvers))


def _merge_builds(headers: str) -> tuple[Path, Path]:
    return kbuild_set("merge", headers), kbuild_set("merge", headers, make_args=("KMM_JOINED=y",))


@pytest.mark.kbuild
def test_merge_prediction_equals_kbuild_joined_module(headers61, tmp_path):
    """--merge predicts the module kbuild links from the same objects (tests/kbuild/merge)."""
    split, joined = _merge_builds(headers61)
    p = run_kmodsim("footprint", "--json", "--kernel", headers61, split / "kmm_lib.ko", split / "kmm_user.ko",
                    "--merge", f"{split / 'kmm_lib.ko'},{split / 'kmm_user.ko'}")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    (g,) = doc["merges"]
    want = module_footprint(str(joined / "kmm_both.ko"), "6.1")
    assert (g["footprint"]["size"], g["footprint"]["core_symbols"], g["footprint"]["kallsyms_bytes"]) == \
        (want.size, want.core_symbols, want.kallsyms_bytes)
    # every export of kmm_lib is used by kmm_user only: all become internal
    assert g["internal_exports"] == ["kmm_counter", "kmm_dup", "kmm_sum"] and g["unused_exports"] == []
    assert doc["duplicates"] == []
    assert g["delta"]["bytes"] == g["footprint"]["size"] - g["separate_size"]


@pytest.mark.realkernel
@pytest.mark.slow
def test_merge_real_kernel(debian61, headers61, tmp_path):
    """The real 6.1 kernel loads the split pair, then the joined module: /proc/modules shows the
    sizes the model predicts for each, and the predicted merged size."""
    from kmodsim.elf import ElfFile
    from kmodsim.memory_layout import input_of, layout, merge_inputs

    split, joined = _merge_builds(headers61)
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "split").symlink_to(split)
    (ws / "joined").symlink_to(joined)
    p = run_kmodsim("verify", "--kernel", headers61, "--vmlinuz", debian61.vmlinuz,
                    "--script", Path(__file__).parent / "footprint" / "merge.script", "--json", cwd=ws)
    assert p.returncode == 0, p.stderr[-3000:]
    steps = json.loads(p.stdout)["steps"]
    assert [s["errno"] for s in steps] == [0] * 5
    real = {m["name"]: m["size"] for s in steps for m in s["modules"]}
    ins = [input_of(ElfFile((split / f"{n}.ko").read_bytes())) for n in ("kmm_lib", "kmm_user")]
    assert real == {"kmm_lib": layout(ins[0], "6.1").size, "kmm_user": layout(ins[1], "6.1").size,
                    "kmm_both": layout(merge_inputs(ins), "6.1").size}
