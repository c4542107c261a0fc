"""``kmodsim series --reorder`` on a real series: the KVM monolithic conversion written as three
patches (examples/kvm-monolithic/series.py) over Debian's 6.1 KVM (linux-source-6.1, fetched at
test time), built against Debian's 6.1 headers.

The oracle is a plain loop run here: ``git am`` of each patch in a repository of the base tree,
``make -C <headers> M=arch/x86/kvm modules`` in that one tree (incremental, as a developer runs
it), ``kmodsim check`` of the modules kbuild built (its ``modules.order``) with Debian's
irqbypass.ko and ccp.ko, and the exports kbuild wrote (Module.symvers); the duplicate exports are
compared with Debian's own Module.symvers rows for arch/x86/kvm/kvm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import oracles
from conftest import need, run_kmodsim
from series_fixture import git

EXAMPLE = Path(__file__).parent.parent / "examples" / "kvm-monolithic"
KVM = "arch/x86/kvm"
C_LOCALE = {**{k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))},
            "LC_ALL": "C", "LANG": "C"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mono(debian61, tmp_path_factory):
    sys.path.insert(0, str(EXAMPLE))
    try:
        import build
        import series
    finally:
        sys.path.remove(str(EXAMPLE))
    out = tmp_path_factory.mktemp("kvm-series")
    try:
        src = build.source_tree(build.headers_version(debian61.headers_dir))
        paths = series.write_series(src, str(out))
    except (build.BuildError, OSError) as exc:
        need(f"linux-source-6.1 for the KVM series: {exc}")
    kernel = Path(debian61.modules_dir) / "kernel"
    withs = [str(kernel / "virt/lib/irqbypass.ko"), str(kernel / "drivers/crypto/ccp/ccp.ko")]
    return {"paths": paths, "headers": debian61.headers_dir, "with": withs, "out": out, "series": series}


def _loop(m: dict, order: list[str], name: str) -> list[dict]:
    """git am + make M= + kmodsim check, step by step, in one repository of the base tree."""
    repo = m["out"] / f"loop-{name}"
    subprocess.run(["cp", "-a", m["paths"]["base"], str(repo)], check=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    kdir = repo / KVM
    out = []
    for patch in [None, *order]:
        if patch is not None:
            p = subprocess.run(["git", "am", "-q", m["paths"][patch]], cwd=repo, capture_output=True, text=True,
                               env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid",
                                    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t.invalid"})
            if p.returncode != 0:
                subprocess.run(["git", "am", "--abort"], cwd=repo, capture_output=True)
                out.append({"applies": False})
                continue
        made = subprocess.run(["make", "-C", m["headers"], f"M={kdir}", f"-j{os.cpu_count() or 1}",
                               "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"], capture_output=True, text=True,
                              env=C_LOCALE)
        if made.returncode != 0:
            out.append({"applies": True, "builds": False, "log": made.stdout[-800:] + made.stderr[-1500:]})
            continue
        kos = [str(kdir / os.path.basename(line)) for line in (kdir / "modules.order").read_text().split()]
        chk = json.loads(run_kmodsim("check", "--kernel", m["headers"], "--no-cache", "--format", "json",
                                     *kos, *m["with"]).stdout)
        errors = {(f["check"], f["symbol"], f["module"]) for f in chk["findings"] if f["severity"] == "error"}
        symvers = oracles.symvers(str(kdir / "Module.symvers"))
        out.append({"applies": True, "builds": True, "errors": errors,
                    "modules": [Path(k).stem.replace("-", "_") for k in kos],
                    "exports": {os.path.basename(mod).replace("-", "_"): sorted(rows)
                                for mod, rows in symvers.items()}})
    return out


def _same_verdicts(steps: list[dict], loop: list[dict]) -> None:
    """Each step's applies/builds/new error findings/exports equal to the loop's, step by step."""
    assert len(steps) == len(loop)
    prev = None
    for step, want in zip(steps, loop, strict=True):
        if not want["applies"]:
            assert step["applies"] is False, step["name"]
            continue
        assert step["builds"] is want["builds"], (step["name"], want.get("log"))
        if not want["builds"]:
            continue
        assert [m["name"] for m in step["modules"]] == want["modules"]
        assert {m["name"]: m["exports"] for m in step["modules"] if m["exports"]} == want["exports"]
        new = {(f["check"], f["symbol"], f["module"]) for f in step["new_findings"] if f["severity"] == "error"}
        assert new == (set() if prev is None else want["errors"] - prev["errors"]), step["name"]
        prev = want


def test_kvm_monolithic_series_reorder(mono):
    """The order one would write (glue, vendors, drop) is bad at step 2: kvm.ko and both vendor
    modules link the same objects, each of kvm.ko's exports (Debian's Module.symvers rows for
    arch/x86/kvm/kvm) exported again; --reorder finds an order in which every step is good, and
    both orders' verdicts are the plain git am + make + check loop's."""
    m, names = mono, list(mono["series"].BAD_ORDER)
    argv = ["--src", m["paths"]["base"], "--kernel", m["headers"], *(a for w in m["with"] for a in ("--with", w)),
            *(a for n in names for a in ("-p", m["paths"][n])), "--reorder", "--json"]
    r = run_kmodsim("series", *argv)
    assert r.returncode == 1, r.stderr[-2000:]
    report = json.loads(r.stdout)
    steps = report["steps"]
    assert [s["flags"] for s in steps] == [[], [], ["new-link-errors"], []]
    assert report["verdict"]["first_bad"]["index"] == 2
    kvm = set(oracles.symvers(os.path.join(m["headers"], "Module.symvers"))["arch/x86/kvm/kvm"])
    assert len(kvm) > 300
    dups = [f for f in steps[2]["new_findings"] if f["check"] == "duplicate-export"]
    assert {f["symbol"] for f in dups} == kvm
    assert {f["module"] for f in dups} == {"kvm_intel", "kvm_amd"}
    assert [f["check"] for f in steps[2]["new_findings"] if f["check"] != "duplicate-export"] == []
    assert {f["symbol"] for f in steps[3]["fixed_findings"]} >= kvm
    assert [mod["name"] for mod in steps[3]["modules"]] == ["kvm_intel", "kvm_amd"]
    assert steps[3]["removed_modules"] == ["kvm"]

    o = report["reorder"]
    assert o["given_good"] is False
    good = [names.index(n) + 1 for n in mono["series"].GOOD_ORDER]
    assert o["order"] == good  # vendors, drop, glue: the first good order in the given order's preference
    assert all(not s["flags"] for s in o["steps"])
    assert o["needs"] == []  # every patch applies to the base alone
    # glue first is ruled out both ways on: the duplicates (step 2 of the given order), and vendor
    # modules left with nothing to import from (kvm.ko gone, nothing exported)
    firsts = {(tuple(x["after"]), x["step"]): x for x in o["ruled_out"]}
    assert firsts[((1,), 2)]["flags"] == ["new-link-errors"] and firsts[((1,), 3)]["flags"] == ["new-link-errors"]
    assert firsts[((1,), 3)]["reason"][0].split(": ")[1] == "unresolved"
    assert o["given_builds"] == 4 and o["builds"] <= o["given_builds"] + 3
    print(f"kvm series --reorder: {o['builds']} trees built ({o['given_builds']} for the given order)")

    _same_verdicts(steps, _loop(m, names, "given"))
    _same_verdicts(o["steps"], _loop(m, list(mono["series"].GOOD_ORDER), "found"))
