"""One discovery for every command: ``scan``, ``check``, ``ldd --modules``, ``load``'s modprobe steps
and ``depmod`` all take the files kmod's depmod takes, on trees with overrides, ``updates/``,
``extra/``, depmod.d ``search``/``override``/``external`` lines and mixed compressions.

The oracle is kmod 30's real depmod (``depmod -b COPY [-C CONF] KVER``: its modules.dep names the
file it picked for each module, in its order) and kmod's real modprobe (``--show-depends``: the
files it inserts, in order) on a copy of each tree. The modules are tests/kbuild/basic built by
Debian's kbuild (kms_b uses kms_a's exports, kms_c weakly uses kms_b's). A file depmod must NOT
take is, where the tree allows it, a copy of kms_a/kms_b with its vermagic changed: a command that
took it would report (check), resolve to (ldd) or fail to load (load) it.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from conftest import need, run_kmodsim

pytestmark = pytest.mark.kbuild

KVER = "6.1.0-disc"
DEPMOD = shutil.which("depmod") or "/usr/sbin/depmod"
MODPROBE = shutil.which("modprobe") or "/usr/sbin/modprobe"


def _xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)


def _zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _poison(data: bytes) -> bytes:
    """The same module with its vermagic flags changed: the kernel refuses it (ENOEXEC) and
    ``check --kernel`` reports it; depmod does not look at vermagic."""
    i = data.index(b" mod_unload ")
    return data[:i] + b" mod_unlozd " + data[i + 12:]


def _layouts(basic: Path, ext: Path) -> dict[str, tuple[dict[str, bytes], str | None, dict[str, bytes]]]:
    """name -> (files below lib/modules/KVER, depmod.d text or None, files of the external directory)."""
    a, b, c = ((basic / f"{n}.ko").read_bytes() for n in ("kms_a", "kms_b", "kms_c"))
    return {
        # the tree: an override of kms_a in updates/, a gzip module
        "override": ({
            "kernel/drivers/kms_a.ko": a,
            "updates/kms_a.ko": a,
            "kernel/drivers/kms_b.ko": b,
            "kernel/drivers/kms_c.ko.gz": gzip.compress(c),
        }, None, {}),
        # every compression, updates/ over kernel/ across compressions, extra/ beside kernel/ (a tie:
        # readdir order decides), a .ko.gz in updates/ that must not override the plain kms_c
        "mixed": ({
            "kernel/a/kms_a.ko.xz": _xz(_poison(a)),
            "updates/x/kms_a.ko.zst": _zst(a),
            "extra/kms_b.ko": b,
            "kernel/b/kms_b.ko.xz": _xz(b),
            "updates/kms_c.ko.gz": gzip.compress(_poison(c)),
            "kernel/c/kms_c.ko": c,
            "modules.order": b"kernel/b/kms_b.ko\nkernel/a/kms_a.ko\nkernel/c/kms_c.ko\n",
        }, None, {}),
        # depmod.d: external directories first, then updates/, then the rest; an override that
        # beats updates/; the external kms_a beats updates/ and kernel/
        "depmod.d": ({
            "kernel/a/kms_a.ko": _poison(a),
            "updates/kms_a.ko.xz": _xz(_poison(a)),
            "kernel/b/kms_b.ko": b,
            "updates/kms_b.ko": _poison(b),
            "extra/kms_b.ko.zst": _zst(_poison(b)),
            "kernel/c/kms_c.ko.gz": gzip.compress(c),
            "extra/kms_c.ko.xz": _xz(c),
        }, f"search external updates built-in\noverride kms_b * kernel/b\nexternal 6.1.* {ext}\n",
            {"kms_a.ko": a}),
    }


@pytest.fixture(scope="module")
def oracles_ok():
    for tool, what in ((DEPMOD, "kmod's depmod"), (MODPROBE, "kmod's modprobe")):
        if not os.access(tool, os.X_OK):
            need(f"{what} (apt-get install kmod)")
    out = subprocess.run([DEPMOD, "--version"], capture_output=True, text=True).stdout
    if not out.startswith("kmod version 30"):
        need(f"kmod 30's depmod, found {out.splitlines()[:1]}")


class Tree:
    """One layout, twice: ``a`` for kmod's depmod and modprobe, ``b`` for kmodsim."""

    def __init__(self, name: str, basic: Path, tmp: Path) -> None:
        self.name = name
        self.ext = tmp / "external"
        files, conf, ext_files = _layouts(basic, self.ext)[name]
        # depmod.d: the layout's (-C), else none given to either tool: both read the machine's own
        self.conf = tmp / "depmod.d"
        self.conf.mkdir()
        self.cargs: tuple = ()
        if conf is not None:
            (self.conf / "test.conf").write_text(conf)
            self.cargs = ("-C", self.conf)
        self.modprobe_d = tmp / "modprobe.d"  # modprobe's own configuration: none
        self.modprobe_d.mkdir()
        for rel, data in ext_files.items():
            (self.ext / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.ext / rel).write_bytes(data)
        self.a, self.b = tmp / "a", tmp / "b"
        for root in (self.a, self.b):
            d = root / "lib" / "modules" / KVER
            for rel, data in files.items():
                (d / rel).parent.mkdir(parents=True, exist_ok=True)
                (d / rel).write_bytes(data)
        self.gz = sorted(str(self.dir(self.b) / rel) for rel in files if rel.endswith(".ko.gz"))
        self.env = dict(os.environ, KMODSIM_CACHE=str(tmp / "cache"))
        p = subprocess.run([DEPMOD, "-b", str(self.a), *map(str, self.cargs), KVER], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        # what depmod picked, in modules.dep order: paths below the tree, or absolute (external)
        lines = (self.dir(self.a) / "modules.dep").read_text().splitlines()
        self.picked = [ln.split(":", 1)[0] for ln in lines]
        self.deps = {ln.split(":", 1)[0]: ln.split(":", 1)[1].split() for ln in lines}

    def dir(self, root: Path) -> Path:
        return root / "lib" / "modules" / KVER

    def rel(self, path: str, root: Path) -> str:
        """A path of ``root``'s tree as modules.dep spells it."""
        d = str(self.dir(root)) + "/"
        return path[len(d):] if path.startswith(d) else path

    def path_of(self, name: str) -> str:
        """The file depmod picked for module ``name``, in tree ``b``."""
        (p,) = [p for p in self.picked if os.path.basename(p).split(".")[0] == name]
        return p if p.startswith("/") else str(self.dir(self.b) / p)

    def kmodsim(self, *args, **kw) -> subprocess.CompletedProcess:
        p = run_kmodsim(*args, env=self.env, **kw)
        assert "Traceback" not in p.stderr, p.stderr
        return p


TREES = ["override", "mixed", "depmod.d"]


@pytest.fixture(params=TREES)
def tree(request, oracles_ok, basic_build, tmp_path) -> Tree:
    return Tree(request.param, basic_build, tmp_path)


def test_depmod_picks_as_the_layout_says(tree):
    """The oracle agrees with what each layout is meant to show (so the trees test something)."""
    want = {"override": ["updates/kms_a.ko", "kernel/drivers/kms_b.ko"],
            "mixed": ["updates/x/kms_a.ko.zst", "kernel/c/kms_c.ko"],
            "depmod.d": [str(tree.ext / "kms_a.ko"), "kernel/b/kms_b.ko", "extra/kms_c.ko.xz"]}
    assert set(want[tree.name]) <= set(tree.picked), tree.picked
    assert not any(p.endswith(".ko.gz") for p in tree.picked)


def test_scan_takes_what_depmod_takes(tree):
    p = tree.kmodsim("scan", "--no-cache", "--json", *tree.cargs, tree.b)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert [tree.rel(m["path"], tree.b) for m in doc["modules"]] == tree.picked  # same files, same order
    assert doc["ignored"] == tree.gz
    assert p.stderr.splitlines() == [
        f"kmodsim: warning: {g}: not a module to Debian 12's depmod and modprobe (kmod 30 is built "
        f"without zlib): left out" for g in tree.gz]
    # the cached scan and a root file system given instead of the tree: the same
    again = json.loads(tree.kmodsim("scan", "--json", *tree.cargs, tree.b).stdout)
    assert [m["path"] for m in again["modules"]] == [m["path"] for m in doc["modules"]]


def test_check_takes_what_depmod_takes(tree, headers61):
    """No "exported twice" between a module and its override, no finding on a file depmod passes
    over (the poisoned copies would give vermagic findings): the set depmod takes is clean."""
    p = tree.kmodsim("check", "--no-cache", "--format", "json", "-k", headers61, *tree.cargs, tree.b)
    doc = json.loads(p.stdout)
    assert doc["findings"] == [] and p.returncode == 0, doc["findings"][:5]
    assert doc["summary"]["modules"] == len(tree.picked)
    t = tree.kmodsim("check", "--no-cache", "-k", headers61, *tree.cargs, tree.b)
    assert "exported twice" not in t.stdout and t.returncode == 0


def test_ldd_modules_takes_what_depmod_takes(tree, headers61):
    kms_b = tree.path_of("kms_b")
    p = tree.kmodsim("ldd", "--json", kms_b, "-k", headers61, "--modules", tree.b, *tree.cargs)
    assert p.returncode == 0, p.stderr
    imports = {i["symbol"]: i for i in json.loads(p.stdout)["imports"]}
    for sym in ("kms_a_plain", "kms_a_gpl", "kms_a_ns", "kms_a_counter"):
        assert imports[sym]["provider_path"] == tree.path_of("kms_a")
        assert imports[sym]["other_providers"] == []


def _show_depends(tree: Tree, name: str) -> list[str]:
    """kmod's modprobe on tree ``a``: the files it inserts for ``name``, as modules.dep spells them
    (with modules.softdep: kms_a declares "pre: kms_c", which makes modprobe list modules twice)."""
    p = subprocess.run([MODPROBE, "-C", str(tree.modprobe_d), "-d", str(tree.a), "-S", KVER, "--show-depends", name],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return [tree.rel(ln.split()[1], tree.a) for ln in p.stdout.splitlines()]


def test_modprobe_steps_follow_modules_dep(tree):
    """The modprobe plan comes from the dependencies depmod computes (modules.dep) and the soft
    dependencies it writes (modules.softdep), in the order kmod's modprobe inserts them."""
    from kmodsim.loader.run import modprobe_tree
    from kmodsim.loader.script import parse_script, resolve

    dm = modprobe_tree(str(tree.b), [str(c) for c in tree.cargs[1:]] or None, use_cache=False)
    for head in tree.picked:
        name = os.path.basename(head).split(".")[0]
        steps = parse_script(f"modprobe {name}\n")
        resolve(steps, "s", dm)
        assert [tree.rel(p, tree.b) for _n, p in steps[0].plan] == _show_depends(tree, name)
        assert [n for n, _p in steps[0].plan][-1] == name


def test_load_cli_loads_what_modprobe_loads(tree, headers61, tmp_path):
    """``kmodsim load`` end to end: the last module's modprobe loads its chain; a poisoned file
    (what a wrong pick would load) would be refused with ENOEXEC."""
    last = os.path.basename(tree.picked[-1]).split(".")[0]
    chain = [os.path.basename(p).split(".")[0] for p in _show_depends(tree, last)]
    script = tmp_path / "mp.script"
    script.write_text(f"modprobe {last}\n")
    p = tree.kmodsim("load", "--json", "-k", headers61, "--modules", tree.b, *tree.cargs, "--script", script)
    assert p.returncode == 0, p.stderr
    (step,) = json.loads(p.stdout)["steps"]
    assert [(c["module"], c["errno"]) for c in step["calls"]] == [(n, 0) for n in chain]


def test_depmod_outputs_byte_identical(tree, tmp_path):
    """kmodsim depmod on the same layout: the same files as kmod's."""
    c = tmp_path / "c"
    shutil.copytree(tree.b, c, symlinks=True)
    p = tree.kmodsim("depmod", "-b", c, *tree.cargs, KVER)
    assert p.returncode == 0, p.stderr
    for f in ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols"):
        assert (tree.dir(c) / f).read_bytes() == (tree.dir(tree.a) / f).read_bytes(), f


def test_modprobe_on_a_tree_with_a_cycle(oracles_ok, headers61, tmp_path):
    """kmcy_a and kmcy_b use each other: kmod's depmod refuses the tree (exit 1, no modules.dep), so
    modprobe has nothing to follow; kmodsim's modprobe step is refused, naming the cycle."""
    from conftest import kbuild_set

    build = kbuild_set("cycle", headers61)
    for root in ("a", "b"):
        d = tmp_path / root / "lib" / "modules" / KVER / "extra"
        d.mkdir(parents=True)
        for n in ("kmcy_a", "kmcy_b", "kmcy-c"):
            shutil.copy(build / f"{n}.ko", d)
    p = subprocess.run([DEPMOD, "-b", str(tmp_path / "a"), KVER], capture_output=True, text=True)
    assert p.returncode == 1 and "dependency cycle" in p.stderr, p.stderr
    assert not (tmp_path / "a" / "lib" / "modules" / KVER / "modules.dep").exists()
    script = tmp_path / "mp.script"
    script.write_text("modprobe kmcy_a\n")
    r = run_kmodsim("load", "-k", headers61, "--modules", tmp_path / "b", "--script", script,
                    env=dict(os.environ, KMODSIM_CACHE=str(tmp_path / "cache")))
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr == (f"kmodsim: {script}:1: dependency loop: kmcy_a -> kmcy_b -> kmcy_a (depmod writes no "
                        f"modules.dep for this tree)\n")
