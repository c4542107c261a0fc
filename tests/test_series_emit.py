"""``kmodsim ops --emit series`` on Debian's real KVM, run through ``kmodsim series``, against a
plain loop that does not use either: ``git am`` of each patch in a work tree, ``make -C <headers>
M=`` there (one tree, built on from step to step, as a developer would), ``kmodsim check`` of the
modules kbuild lists in ``modules.order``, ``kmodsim ops --json`` of the tree at that step.

* bullseye's linux-source-5.10 (KVM before static_call), its calls through kvm_x86_ops made
  static calls, one commit per group of members, built against bullseye's 5.10 headers;
* Debian's linux-source-6.1 in the monolithic layout (every kvm object linked into kvm-intel.ko,
  examples/kvm-monolithic/build.py's Kbuild), its static calls made direct calls of vmx's
  functions, one commit per member.

Kernel source is fetched from Debian at test time (never committed). A KVM step rebuilds minutes
of C on a 2-core machine, so by default each series is a subset of its members (named below; the
emitter's own subset, --members); KMODSIM_FULL_SERIES=1 runs the whole series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kvm_source_fixture import (
    CENSUS,
    KBUILD_510,
    SUBSET_61,
    SUBSET_510,
    cc_vars,
    example_build,
    kvm_repo,
    monolithic_repo,
    unpack_source,
)

from conftest import need, run_kmodsim
from series_fixture import git

FULL = os.environ.get("KMODSIM_FULL_SERIES") == "1"


def _ops_counts(tree: Path, struct: str) -> dict:
    r = run_kmodsim("ops", *(tree / p for p in CENSUS), "--struct", struct, "--json")
    assert r.returncode in (0, 1), r.stderr
    c = json.loads(r.stdout)
    indirect = ("p->m()", "x.m()")
    sites = [s["idiom"] for m in c["members"] for s in m["call_sites"]]
    return {"members": len(c["members"]),
            "calls": sum(i in indirect or i.startswith("INDIRECT_CALL") for i in sites),
            "static_calls": sum(not (i in indirect or i.startswith("INDIRECT_CALL")) for i in sites),
            "null_tests": sum(len(m["null_checks"]) for m in c["members"]),
            "assignments": sum(len(m["assignments"]) for m in c["members"]) + len(c["copies"])}


def _plain_loop(tmp: Path, base_repo: Path, patches: list[Path], headers: str, make_vars: list[str],
                struct: str) -> list[dict]:
    """The oracle, step by step: git am, make M=, kmodsim check of modules.order's modules, ops."""
    work = tmp / "oracle"
    git(tmp, "clone", "-q", str(base_repo), str(work))
    kdir = work / "arch/x86/kvm"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}, "LC_ALL": "C"}
    out = []
    prev_errors: set | None = None
    for i in range(len(patches) + 1):
        if i:
            am = subprocess.run(["git", "am", "-q", str(patches[i - 1])], cwd=work, capture_output=True, text=True,
                                env={**env, "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"})
            if am.returncode != 0:
                subprocess.run(["git", "am", "--abort"], cwd=work, capture_output=True)
                out.append({"applies": False})
                continue
        mk = subprocess.run(["make", "-C", headers, f"M={kdir}", f"-j{os.cpu_count() or 1}",
                             "CONFIG_DEBUG_INFO_BTF_MODULES=", *make_vars, "modules"],
                            capture_output=True, text=True, env=env)
        step = {"applies": True if i else None, "builds": mk.returncode == 0, "ops": _ops_counts(work, struct),
                "log": (mk.stdout + mk.stderr)[-2000:]}
        if mk.returncode == 0:
            kos = [str(kdir / os.path.basename(p)) for p in (kdir / "modules.order").read_text().split()]
            kos = [k[:-2] + ".ko" if k.endswith(".o") else k for k in kos]
            chk = json.loads(run_kmodsim("check", "--kernel", headers, "--no-cache", "--format", "json", *kos).stdout)
            errors = {(f["check"], f["symbol"], f["module"]) for f in chk["findings"] if f["severity"] == "error"}
            step["links"] = not (errors - prev_errors if prev_errors is not None else errors)
            step["modules"] = sorted(Path(k).stem.replace("-", "_") for k in kos)
            prev_errors = errors
        out.append(step)
    return out


def _run_and_compare(tmp: Path, repo: Path, patches: list[Path], headers: str, make_vars: list[str],
                     expect: str) -> dict:
    start = time.monotonic()
    r = run_kmodsim("series", "--src", repo, "--kernel", headers, "--patches", str(patches[0].parent),
                    "--modules", "arch/x86/kvm", "--struct", "kvm_x86_ops", *(f"--census={c}" for c in CENSUS),
                    "--expect", expect, *(f"--make={v}" for v in make_vars), "--json", "--times",
                    timeout=None if FULL else 600)  # a whole KVM series: tens of minutes
    assert r.returncode in (0, 1), r.stderr
    report = json.loads(r.stdout)
    (tmp / "series.json").write_text(r.stdout)  # kept with --basetemp: to read a failing step
    middle = time.monotonic()
    oracle = _plain_loop(tmp, repo, patches, headers, make_vars, "kvm_x86_ops")
    print(f"{len(patches)} patches: kmodsim series {middle - start:.0f}s, the plain loop {time.monotonic() - middle:.0f}s")
    (tmp / "oracle.json").write_text(json.dumps(oracle, indent=1))
    assert len(report["steps"]) == len(oracle) == len(patches) + 1
    for step, want in zip(report["steps"], oracle, strict=True):
        assert step["applies"] is want["applies"], step["name"]
        assert step["builds"] is want["builds"], (step["name"], step["build"]["errors"], want["log"])
        assert step["links"] is want.get("links"), step["name"]
        if want["builds"]:
            assert sorted(m["name"] for m in step["modules"]) == want["modules"]
        ops = dict(step["ops"])
        ops.pop("delta")
        assert ops == want["ops"], step["name"]
    return report


@pytest.mark.slow
def test_static_call_series_on_bullseye_510_kvm(debian510, tmp_path):
    """kvm_x86_ops' calls made static calls (the 5.12 conversion's shape) on 5.10's KVM, one commit
    per group of members: every step applies, builds and links as the plain loop says, the counts
    of each step are the census of the tree at that step, and calls through the table only fall."""
    from kmodsim.debian import DebianError, fetch_deb

    if shutil.which("make") is None:
        need("make")
    version = re.search(r"_([^_]+)_[^_]+\.deb$", os.path.basename(debian510.deb)).group(1)
    try:
        deb = fetch_deb(f"linux-source-5.10={version}", suite="bullseye")
    except DebianError as exc:
        need(f"bullseye's linux-source-5.10 {version}: {exc}")
    src = unpack_source("linux-source-5.10", deb, version)
    repo = kvm_repo(tmp_path, src, KBUILD_510)
    out = tmp_path / "patches"
    argv = [*(repo / p for p in CENSUS), "--struct", "kvm_x86_ops", "--emit", "series", "--group", "file"]
    if not FULL:
        argv += ["--members", SUBSET_510]
    r = run_kmodsim("ops", *argv, "--output", out)
    assert r.returncode == 0, r.stderr
    again = run_kmodsim("ops", *argv, "--output", tmp_path / "again")
    patches = sorted(out.iterdir())
    assert [p.read_bytes() for p in patches] == [p.read_bytes() for p in sorted((tmp_path / "again").iterdir())]
    assert again.stdout.replace(str(tmp_path / "again"), str(out)) == r.stdout
    report = _run_and_compare(tmp_path, repo, patches, debian510.headers_dir, cc_vars(debian510.headers_dir),
                              "calls=down")
    steps = report["steps"]
    assert report["verdict"]["bisectable"], report["verdict"]
    # the base's findings (irqbypass.ko, ccp.ko are not built here: their imports unresolved) are
    # where the series starts; no step adds one
    assert all(s["builds"] for s in steps) and all(s["links"] for s in steps[1:])
    calls = [s["ops"]["calls"] for s in steps]
    assert calls[1] == calls[0] and all(b < a for a, b in zip(calls[1:], calls[2:], strict=False))  # list, then down
    assert steps[-1]["ops"]["static_calls"] - steps[0]["ops"]["static_calls"] == calls[0] - calls[-1]
    assert {m["name"] for m in steps[0]["modules"]} == {"kvm", "kvm_intel", "kvm_amd"}
    print("5.10 static-call series:", [(s["name"], s["ops"], s["build"]["seconds"]) for s in steps])


@pytest.mark.slow
def test_direct_series_on_debian_61_monolithic_kvm(headers61, tmp_path):
    """vmx's functions called directly instead of through kvm_x86_ops' static calls, in the
    monolithic layout (kvm-intel.ko holds kvm's objects), one commit per member: every step builds
    and links as the plain loop says; NULL tests and assignments never go up (they stay: the members
    tested or stored at run time are the ones left alone), calls through static calls fall."""
    if shutil.which("make") is None:
        need("make")
    build = example_build()
    try:
        src = Path(build.source_tree(build.headers_version(headers61)))
    except build.BuildError as exc:
        need(str(exc))
    repo = monolithic_repo(tmp_path, src)
    argv = [*(repo / p for p in CENSUS), "--struct", "kvm_x86_ops", "--emit", "series", "--instance", "vmx_x86_ops"]
    if not FULL:
        argv += ["--members", SUBSET_61]
    out = tmp_path / "patches"
    r = run_kmodsim("ops", *argv, "--output", out)
    assert r.returncode in (0, 1), r.stderr  # 1: the census's finding (pi_update_irte: docs/ops.md)
    patches = sorted(out.iterdir())
    if not FULL:
        assert len(patches) == len(SUBSET_61.split(","))
    report = _run_and_compare(tmp_path, repo, patches, headers61, cc_vars(headers61),
                              "null_tests=down,assignments=down,static_calls=down")
    steps = report["steps"]
    assert report["verdict"]["bisectable"], report["verdict"]
    assert [m["name"] for m in steps[0]["modules"]] == ["kvm_intel"]
    static = [s["ops"]["static_calls"] for s in steps]
    assert all(b < a for a, b in zip(static, static[1:], strict=False))
    for key in ("null_tests", "assignments"):
        counts = [s["ops"][key] for s in steps]
        assert all(b <= a for a, b in zip(counts, counts[1:], strict=False)), (key, counts)
    print("6.1 direct series:", [(s["name"], s["ops"], s["build"]["seconds"]) for s in steps])
