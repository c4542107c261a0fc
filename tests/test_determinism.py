"""Same inputs, same output, byte for byte: every command under several ``PYTHONHASHSEED`` values,
``--jobs 1`` against 2, and a cold cache against a warm one.

The bug this guards against was real: ``check`` on Debian's 6.12 tree listed the namespace warnings
of one module in hash order (a set), so two identical runs differed. The reference of each command
is its own first run; every other run must give the very same bytes (stdout, stderr, exit status,
and for depmod the files it writes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TESTS

SEEDS = ("0", "1", "4242")


def _run(args, env_extra, cwd=None):
    env = {**os.environ, **env_extra}
    p = subprocess.run(["kmodsim", *map(str, args)], capture_output=True, timeout=900, env=env, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def _variants(tmp_path, jobs: bool, no_cache: bool = True):
    """(label, extra args, environment) of every run: three hash seeds; cold cache, then warm; and
    where the command has workers, one process against two."""
    cache = str(tmp_path / "cache")
    out = []
    for i, seed in enumerate(SEEDS):
        env = {"PYTHONHASHSEED": seed, "KMODSIM_CACHE": cache}
        extra = (["--jobs", "1" if i % 2 else "2"] if jobs else [])
        out.append((f"seed={seed}{' ' + ' '.join(extra) if extra else ''} {'cold' if i == 0 else 'warm'}",
                    extra, env))
    if jobs and no_cache:
        out.append(("no cache, --jobs 2", ["--no-cache", "--jobs", "2"], {"PYTHONHASHSEED": "7",
                                                                          "KMODSIM_CACHE": cache}))
    return out


def _same_everywhere(tmp_path, args, jobs=True, cwd=None, no_cache=True, words=1):
    """``words``: how many leading arguments name the command (2 for ``abi diff``)."""
    runs = [(label, _run([*args[:words], *extra, *args[words:]], env, cwd)) for label, extra, env in
            _variants(tmp_path, jobs, no_cache)]
    ref_label, ref = runs[0]
    assert ref[1] or ref[2], f"{args}: no output at all"
    for label, got in runs[1:]:
        assert got == ref, f"{args}: {label} differs from {ref_label}"
    return ref


@pytest.mark.realkernel
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_check_612_tree(debian612, tmp_path, fmt):
    status, out, _err = _same_everywhere(tmp_path, ["check", "--format", fmt, "--kernel", debian612.headers_dir,
                                                    debian612.modules_dir])
    assert status in (0, 1)
    assert b"namespace" in out  # the findings whose order once followed the hash seed are there


@pytest.mark.realkernel
@pytest.mark.slow
def test_scan_json_612_tree(debian612, tmp_path):
    status, out, _err = _same_everywhere(tmp_path, ["scan", "--json", debian612.modules_dir])
    assert status == 0 and out.count(b'"path"') > 4000


@pytest.mark.realkernel
@pytest.mark.slow
@pytest.mark.parametrize("fmt", [[], ["--json"]], ids=["text", "json"])
def test_abi_diff_61_612_trees(debian61, debian612, tmp_path, fmt):
    status, out, _err = _same_everywhere(tmp_path, ["abi", "diff", *fmt, debian61.modules_dir, debian612.modules_dir],
                                         words=2)
    assert status == 1 and b"owner" in out


def test_abi_diff_headers(headers61, tmp_path):
    """A change of the real file (its first export dropped from a copy), under several hash seeds."""
    lines = open(f"{headers61}/Module.symvers").read().splitlines(keepends=True)
    new = tmp_path / "Module.symvers"
    new.write_text("".join(lines[1:]))
    for fmt in ([], ["--json"]):
        status, out, _err = _same_everywhere(tmp_path, ["abi", "diff", *fmt, new, headers61], jobs=False, words=2)
        assert status == 0 and b"added" in out


@pytest.mark.realkernel
@pytest.mark.slow
def test_depmod_files_612_tree(debian612, tmp_path):
    """depmod's files, each run into a fresh copy of the tree (hard links: the modules are shared)."""
    kver = debian612.kver
    src = Path(debian612.modules_dir)
    results = []
    for n, (label, extra, env) in enumerate(_variants(tmp_path, jobs=True)):
        root = tmp_path / f"root{n}"
        shutil.copytree(src, root / "lib" / "modules" / kver, copy_function=os.link,
                        ignore=shutil.ignore_patterns("modules.*"))
        for f in src.glob("modules.*"):
            if f.name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
                shutil.copy(f, root / "lib" / "modules" / kver / f.name)
        status, out, err = _run(["depmod", *extra, "--bin", "-b", root, kver], env)
        d = root / "lib" / "modules" / kver
        files = {f.name: f.read_bytes() for f in sorted(d.glob("modules.*"))}
        results.append((label, status, out, err, files))
    ref = results[0]
    assert ref[1] == 0 and len(ref[4]) >= 10
    for r in results[1:]:
        assert r[1:] == ref[1:], f"depmod: {r[0]} differs from {ref[0]}"


@pytest.mark.kbuild
def test_module_commands_on_fixtures(basic_build, headers61, tmp_path):
    """inspect, ldd, footprint, load, deps and why on the kbuild fixtures."""
    mods = [basic_build / f"kms_{x}.ko" for x in "abc"]
    _same_everywhere(tmp_path, ["inspect", "--json", *mods], jobs=False)
    _same_everywhere(tmp_path, ["inspect", *mods], jobs=False)
    _same_everywhere(tmp_path, ["ldd", "--json", "--kernel", headers61, "--modules", basic_build, mods[1]],
                     no_cache=False)
    _same_everywhere(tmp_path, ["footprint", "--json", "--kernel", headers61, *mods], jobs=False)
    script = tmp_path / "load.script"
    script.write_text(f"insmod {mods[0]} count=4\ninsmod {mods[1]}\ninsmod {mods[0]}\nrmmod kms_a\n"
                      f"rmmod kms_b\nrmmod kms_a\n")
    _same_everywhere(tmp_path, ["load", "--json", "--kernel", headers61, "--script", script], jobs=False)
    _same_everywhere(tmp_path, ["load", "--kernel", headers61, "--script", script], jobs=False)
    kdir = tmp_path / "tree" / "lib" / "modules" / "6.1.0-det"
    (kdir / "extra").mkdir(parents=True)
    for m in mods:
        shutil.copy(m, kdir / "extra" / m.name)
    _same_everywhere(tmp_path, ["deps", "--json", "-t", kdir, "kms_c"])
    _same_everywhere(tmp_path, ["why", "--json", "-t", kdir, "kms_b", "kms_a"])


def test_ops_census(tmp_path):
    fixture = TESTS / "ops" / "fixtures" / "kvm2019"
    _same_everywhere(tmp_path, ["ops", "--json", "--struct", "kvm_x86_ops", fixture], jobs=False)
    _same_everywhere(tmp_path, ["ops", "--emit", "plan", "--struct", "kvm_x86_ops", fixture], jobs=False)
