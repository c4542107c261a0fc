"""modprobe's soft and weak dependencies (kmodsim.loader.modprobe) against kmod's real modprobe and
the real kernel.

Fixtures: tests/kbuild/softdep (kmsd_*; see kmsd_main.c) and tests/kbuild/softdep/kmsd.conf
(modprobe.d: a softdep line that overrides kmsd_dep's MODULE_SOFTDEP, an alias, an options line).

* The plan of every module — the modules inserted, their order, their options — equals what kmod's
  modprobe prints with ``--show-depends`` (kmod 30, the system's; kmod 34.2 built from Debian 13's
  source) on a tree after the same kmod's depmod, with ``-C kmsd.conf``.
* kmod 34's weak dependencies: the names ``modprobe -c`` (kmod 34) shows for kmsd_main; kmod 30
  has none.
* slow: tests/scenarios/softdep/kmsd.script on Debian's real 6.1 kernel under QEMU (6.12 with
  KMODSIM_TEST_612=1): ``kmodsim verify --compare`` finds no difference, and the kernel's own answers
  show each rule (a softdep's error ignored, options on the requested module only, the weak
  dependency never loaded, a loaded module left alone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TESTS, kbuild_set, need, run_kmodsim

KVER = "6.1.0-kmsd"
CONF = TESTS / "kbuild" / "softdep" / "kmsd.conf"
SCRIPT = TESTS / "scenarios" / "softdep" / "kmsd.script"
MODULES = ("kmsd_main", "kmsd_dep", "kmsd_pre", "kmsd_leaf", "kmsd_post", "kmsd_refused", "kmsd_weak")


def softdep_set(headers: str) -> Path:
    # kmsd_refused imports a symbol nothing exports: modpost warns instead of failing
    return kbuild_set("softdep", headers, make_args=("KBUILD_MODPOST_WARN=1",))


@pytest.fixture(scope="session")
def softdep_build(headers61) -> Path:
    return softdep_set(headers61)


def tree(build: Path, dest: Path, depmod: str) -> Path:
    """``dest`` as a root: the modules in lib/modules/KVER/extra, then the real ``depmod``."""
    d = dest / "lib" / "modules" / KVER / "extra"
    d.mkdir(parents=True)
    for m in MODULES:
        shutil.copy(build / f"{m}.ko", d / f"{m}.ko")
    p = subprocess.run([depmod, "-b", str(dest), KVER], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return dest


def show_depends(modprobe: str, root: Path, name: str, *args: str, confs=(CONF,)) -> list[tuple[str, str]]:
    """(module, options) of each ``insmod`` line of ``modprobe --show-depends`` (print_action():
    ``insmod PATH OPTIONS``)."""
    cargs = [a for c in confs for a in ("-C", str(c))]
    p = subprocess.run([modprobe, *cargs, "-d", str(root), "-S", KVER, "--show-depends", name, *args],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = []
    for ln in p.stdout.splitlines():
        word, path, opts = ln.split(" ", 2)
        assert word == "insmod", ln
        out.append((os.path.basename(path).removesuffix(".ko"), opts))
    return out


def plan(root: Path, kmod_version: int, name: str, args: str = "", confs=(CONF,)) -> tuple[list[tuple[str, str]], list]:
    from kmodsim.dependencies import KMOD_VERSIONS
    from kmodsim.loader.run import modprobe_tree
    from kmodsim.loader.script import modprobe_of, parse_script, resolve

    kmod = KMOD_VERSIONS[kmod_version]
    dm = modprobe_tree(str(root / "lib" / "modules" / KVER), use_cache=False)
    steps = parse_script(f"modprobe {name} {args}\n")
    resolve(steps, "s", modprobe_of(dm, [str(c) for c in confs], kmod))
    (s,) = steps
    # print_action(): an entry without a file prints nothing unless it is builtin
    return [(n, a) for (n, p), a, b in zip(s.plan, s.plan_args, s.plan_builtin, strict=True) if p or b], s


@pytest.fixture(scope="session")
def modprobe30(real_depmod) -> str:
    mp = shutil.which("modprobe") or "/usr/sbin/modprobe"
    out = subprocess.run([mp, "--version"], capture_output=True, text=True).stdout
    if not out.startswith("kmod version 30"):
        need(f"kmod 30's modprobe, found {out.splitlines()[:1]}")
    return mp


@pytest.fixture(scope="session")
def modprobe34(depmod34) -> str:
    mp = os.path.join(os.path.dirname(depmod34), "modprobe")
    out = subprocess.run([mp, "--version"], capture_output=True, text=True).stdout
    assert out.startswith("kmod version 34.2\n"), out
    return mp


CASES = [("kmsd_main", "mainopt=1"), ("kmsd_main", ""), ("kmsd_dep", ""), ("kmsd_pre", "x=1"),
         ("kmsd_post", ""), ("kmsd_refused", ""), ("kmsd_weak", "")]


def test_plans_are_modprobes_kmod30(softdep_build, real_depmod, modprobe30, tmp_path):
    root = tree(softdep_build, tmp_path, real_depmod)
    for name, args in CASES:
        want = show_depends(modprobe30, root, name, *args.split())
        got, step = plan(root, 30, name, args)
        assert got == want, (name, args)
        assert step.weakdeps == []  # kmod 30 knows no weakdep
    # what the cases are meant to show, on the oracle's answer
    main = show_depends(modprobe30, root, "kmsd_main", "mainopt=1")
    assert [n for n, _o in main] == ["kmsd_leaf", "kmsd_pre", "kmsd_dep", "kmsd_leaf", "kmsd_main", "kmsd_post",
                                     "kmsd_refused"]
    assert dict(main)["kmsd_main"] == "mainopt=1" and dict(main)["kmsd_post"] == "postopt=1 "
    got, step = plan(root, 30, "kmsd_main", "mainopt=1")
    assert step.plan_required == [False, False, True, False, False, True, False, False]
    assert [p for _n, p in step.plan][4] == ""  # kmsd_ghost: no file, no insmod line


def more_config(d: Path) -> Path:
    """A modprobe.d directory read with kmsd.conf: files in name order (a.conf, b.conf, c.conf, then
    kmsd.conf, then modules.softdep), only ``*.conf`` and not hidden ones; a softdep by pattern, a
    line continued with a backslash, tabs, options by alias name, an alias pattern matching a name
    kmsd.conf also aliases, a ``symbol:`` name."""
    d.mkdir()
    (d / "a.conf").write_text("softdep kmsd_l*  post:\tkmsd_weak\n")
    (d / "b.conf").write_text("options kmsd-alias aliasopt=2\n# a comment\n")
    (d / "c.conf").write_text("softdep kmsd_refused pre: symbol:kmsd_dep_fn \\\n  post: kmsd-cfx\n"
                              "alias kmsd-cf? kmsd_weak\n")
    (d / "d.txt").write_text("softdep kmsd_main pre: kmsd_weak\n")  # not a .conf: not read
    (d / ".e.conf").write_text("softdep kmsd_main pre: kmsd_weak\n")  # hidden: not read
    return d


@pytest.mark.parametrize("version", [30, 34])
def test_plans_with_a_config_directory(version, softdep_build, request, tmp_path):
    depmod = request.getfixturevalue("real_depmod" if version == 30 else "depmod34")
    modprobe = request.getfixturevalue(f"modprobe{version}")
    root = tree(softdep_build, tmp_path / "root", depmod)
    confs = (CONF, more_config(tmp_path / "modprobe.d"))
    for name, args in CASES:
        want = show_depends(modprobe, root, name, *args.split(), confs=confs)
        assert plan(root, version, name, args, confs)[0] == want, (name, args)
    # what the configuration is meant to show, on the oracle's answer
    main = show_depends(modprobe, root, "kmsd_main", confs=confs)
    assert ("kmsd_post", "aliasopt=2 postopt=1 ") in main and ("kmsd_weak", "") in main
    # symbol:kmsd_dep_fn finds kmsd_dep (with its softdeps); kmsd-cfx and kmsd-cfg both match the
    # alias pattern kmsd-cf?, one kmod_module keyed by the pattern: visited once
    refused = show_depends(modprobe, root, "kmsd_refused", confs=confs)
    assert [n for n, _o in refused] == ["kmsd_leaf", "kmsd_pre", "kmsd_dep", "kmsd_weak", "kmsd_leaf", "kmsd_refused"]


def test_plans_are_modprobes_kmod34(softdep_build, depmod34, modprobe34, tmp_path):
    root = tree(softdep_build, tmp_path, depmod34)
    assert "weakdep kmsd_main kmsd_weak" in (root / "lib" / "modules" / KVER / "modules.weakdep").read_text()
    for name, args in CASES:
        got, step = plan(root, 34, name, args)
        assert got == show_depends(modprobe34, root, name, *args.split()), (name, args)
    # the weak dependencies kmod 34 reads (its configuration as modprobe -c shows it)
    p = subprocess.run([modprobe34, "-c", "-C", str(CONF), "-d", str(root), "-S", KVER], capture_output=True,
                       text=True)
    weak = [ln.split()[2:] for ln in p.stdout.splitlines() if ln.startswith("weakdep kmsd_main ")]
    assert weak == [["kmsd_weak"]]
    assert plan(root, 34, "kmsd_main")[1].weakdeps == weak[0]
    assert "kmsd_weak" not in [n for n, _o in plan(root, 34, "kmsd_main")[0]]


def test_load_reports_weakdeps_and_ignored_errors(softdep_build, headers61, tmp_path):
    """``kmodsim load`` on the scenario: the step errno of an ignored softdep failure is 0."""
    p = run_kmodsim("load", "--json", "--kernel", headers61, "--modules", softdep_build, "-C", CONF,
                    "--script", SCRIPT, check=0)
    doc = json.loads(p.stdout)
    assert [s["errno"] for s in doc["steps"]] == [0, 0, 0, 2]
    assert doc["steps"][1]["calls"][-1] == {"module": "kmsd_refused", "errno": 2, "ignored": True}
    assert doc["steps"][2]["calls"] == [{"module": "kmsd_main", "skipped": True, "errno": 0}]
    # weak dependencies: kmod 34 reads them (and the run says they were not loaded), kmod 30 does not
    for version, noted in (("30", False), ("34", True)):
        p = run_kmodsim("load", "--json", "--kernel", headers61, "--modules", softdep_build, "-C", CONF,
                        "--script", SCRIPT, "--kmod-version", version, check=0)
        doc = json.loads(p.stdout)
        weak = [n for n in doc["notes"] if "weak dependencies" in n]
        assert weak == ([f"line {n}: modprobe kmsd_main: weak dependencies kmsd_weak not loaded (modprobe never "
                         f"inserts a weakdep; kmod 33+ lists them for initramfs tools)" for n in (4, 5)]
                        if noted else [])
        assert "kmsd_weak" not in {m["name"] for m in doc["modules"]}


@pytest.mark.realkernel
@pytest.mark.slow
@pytest.mark.parametrize("version", [30, 34])
def test_debian61_every_module(version, debian61, request, tmp_path):
    """Every module of Debian's 6.1 tree (55 MODULE_SOFTDEP lines: crypto aliases, builtin md5 and
    mpls_gso, several lines for one module): the plan equals ``modprobe --show-depends``, builtin
    lines included, after the same kmod's depmod (``-C /dev/null``: no modprobe.d of this machine)."""
    from kmodsim.dependencies import KMOD_VERSIONS
    from kmodsim.loader.run import modprobe_tree
    from kmodsim.loader.script import modprobe_of, parse_script, resolve

    depmod = request.getfixturevalue("real_depmod" if version == 30 else "depmod34")
    modprobe = request.getfixturevalue(f"modprobe{version}")
    kver = debian61.kver
    d = tmp_path / "lib" / "modules" / kver
    d.parent.mkdir(parents=True)
    subprocess.run(["cp", "-al", debian61.modules_dir, str(d)], check=True)
    for f in d.glob("modules.*"):
        if f.name not in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
            f.unlink()
    subprocess.run([depmod, "-b", str(tmp_path), kver], check=True, capture_output=True)
    dm = modprobe_tree(str(d))
    mp = modprobe_of(dm, ["/dev/null"], KMOD_VERSIONS[version])
    names = [os.path.basename(ln.split(":")[0]).split(".")[0] for ln in (d / "modules.dep").read_text().splitlines()]
    assert len(names) > 4000
    differ, builtin = [], 0
    for n in names:
        p = subprocess.run([modprobe, "-C", "/dev/null", "-d", str(tmp_path), "-S", kver, "--show-depends", n],
                           capture_output=True, text=True)
        want = [(w[0], os.path.basename(w[1]).split(".")[0].replace("-", "_"), w[2] if len(w) > 2 else "")
                for w in (ln.split(" ", 2) for ln in p.stdout.splitlines())]
        steps = parse_script(f"modprobe {n}\n")
        resolve(steps, "s", mp)
        st = steps[0]
        got = [("builtin" if b else "insmod", x, a)
               for (x, _p), a, b in zip(st.plan, st.plan_args, st.plan_builtin, strict=True)]
        builtin += sum(st.plan_builtin)
        if got != want:
            differ.append((n, want, got))
    assert differ == [], differ[:3]
    assert builtin >= 4  # act_mpls, mpls_iptunnel (mpls_gso), nfsd (md5), cxl_mem (cxl_port)


# -- the real kernel -----------------------------------------------------------------------------------

def _verify(headers: str, vmlinuz: str, build: Path) -> dict:
    if shutil.which("qemu-system-x86_64") is None:
        need("qemu-system-x86_64 (apt-get install qemu-system-x86)")
    if not os.path.isfile("/bin/busybox") and not os.path.isfile("/usr/bin/busybox"):
        need("busybox (apt-get install busybox-static)")
    p = run_kmodsim("verify", "--json", "--compare", "--kernel", headers, "--vmlinuz", vmlinuz,
                    "--modules", build, "-C", CONF, "--script", SCRIPT, "--timeout", "240")
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def _check_kernel(doc: dict) -> None:
    """The kernel's answers (not the model's) show each rule."""
    assert doc["source"] == "kernel" and doc["differences"] == [], doc["differences"]
    s1, s2, s3, s4 = doc["steps"]
    assert [c["module"] for c in s1["calls"]] == ["kmsd_leaf", "kmsd_pre"] and s1["errno"] == 0
    # the softdep's failure (Unknown symbol) is ignored: modprobe succeeds
    assert [(c["module"], c["errno"], bool(c.get("skipped"))) for c in s2["calls"]] == [
        ("kmsd_leaf", 0, True), ("kmsd_pre", 0, True), ("kmsd_dep", 0, False), ("kmsd_leaf", 0, True),
        ("kmsd_ghost", 2, False), ("kmsd_main", 0, False), ("kmsd_post", 0, False), ("kmsd_refused", 2, False)]
    assert s2["errno"] == 0
    # options: the configured ones on kmsd_post, the command line's on kmsd_main only
    assert "kmsd_post: unknown parameter 'postopt' ignored" in s2["messages"]
    assert "kmsd_refused: Unknown symbol kmsd_nowhere (err -2)" in s2["messages"]
    assert not any("mainopt" in m for m in s2["messages"])
    assert s3["calls"] == [{"module": "kmsd_main", "skipped": True, "errno": 0}] and s3["messages"] == []
    assert s4["errno"] == 2  # requested, the error is modprobe's
    names = {m["name"] for m in doc["modules"]}
    assert names == {"kmsd_leaf", "kmsd_pre", "kmsd_dep", "kmsd_main", "kmsd_post"}  # kmsd_weak never


@pytest.mark.realkernel
@pytest.mark.slow
def test_verify_on_debian61(debian61, softdep_build):
    _check_kernel(_verify(debian61.headers_dir, debian61.vmlinuz, softdep_build))


@pytest.mark.realkernel
@pytest.mark.slow
def test_verify_on_debian612(debian612):
    _check_kernel(_verify(debian612.headers_dir, debian612.vmlinuz, softdep_set(debian612.headers_dir)))
