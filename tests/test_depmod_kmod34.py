"""``kmodsim depmod --kmod-version 34`` against kmod 34's real depmod (Debian 13's kmod 34.2, built
from trixie's source package into the cache: conftest's ``depmod34``), and ``--kmod-version 30``
against Debian 12's, on the same trees: what differs between the two is each one's.

kmod 34 writes every file at each run, the ``.bin`` indexes and modules.weakdep included, so kmodsim
runs with ``--bin`` and every file is compared.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from test_depmod import (
    ACYCLIC,
    BAD_INVOCATIONS,
    KVER,
    ORDERS,
    Pair,
    _layout,
    _mixed_tree,
    _tree,
    _write_layout,
    bad_invocation,
    compare_options,
    compare_quick_mode,
    cycle_build,  # noqa: F401 (a fixture)
)

from conftest import DEPMOD

pytestmark = pytest.mark.kbuild

FILES34 = ("modules.dep", "modules.alias", "modules.softdep", "modules.weakdep", "modules.symbols",
           "modules.devname", "modules.dep.bin", "modules.alias.bin", "modules.symbols.bin", "modules.builtin.bin",
           "modules.builtin.alias.bin")


class Pair34(Pair):
    """One tree, copied twice: kmod 34's depmod runs on ``a``, ``kmodsim depmod --kmod-version 34
    --bin`` on ``b``."""

    def __init__(self, depmod: str, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.depmod34 = depmod

    def depmod(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([self.depmod34, "-b", str(self.a), *map(str, args), self.kver], capture_output=True,
                              timeout=600)

    def kmodsim(self, *args) -> subprocess.CompletedProcess:
        return super().kmodsim("--kmod-version", "34", "--bin", *args)

    def same_files(self, bins: bool = False) -> None:
        for f in FILES34:
            fa, fb = self.dir(self.a) / f, self.dir(self.b) / f
            assert fa.exists() == fb.exists(), f
            if fa.exists():
                assert fa.read_bytes() == fb.read_bytes(), f"{f} differs"


# ---------------------------------------------------------------------------------------------
# Debian's trees
# ---------------------------------------------------------------------------------------------

@pytest.mark.realkernel
@pytest.mark.slow
def test_debian61_byte_identical_kmod34(debian61, depmod34, tmp_path):
    pair = Pair34(depmod34, Path(debian61.modules_dir), debian61.kver, tmp_path, link=True)
    pair.compare(extra=("--no-cache",))
    assert (pair.dir(pair.a) / "modules.weakdep").exists() and (pair.dir(pair.a) / "modules.dep.bin").exists()
    # kmod 34's .bin indexes are not kmod 30's (pre-order, dada048): the same keys, other bytes
    old = tmp_path / "old"
    (old / "lib" / "modules").mkdir(parents=True)
    subprocess.run(["cp", "-al", str(debian61.modules_dir), str(old / "lib" / "modules" / debian61.kver)], check=True)
    subprocess.run([DEPMOD, "-b", str(old), debian61.kver], check=True, capture_output=True)
    for f in ("modules.dep", "modules.alias", "modules.symbols"):
        assert (old / "lib/modules" / debian61.kver / f).read_bytes() == (pair.dir(pair.a) / f).read_bytes()
    assert (old / "lib/modules" / debian61.kver / "modules.dep.bin").read_bytes() != \
        (pair.dir(pair.a) / "modules.dep.bin").read_bytes()
    # -n: the text files to stdout in kmod 34's order (modules.weakdep after modules.softdep)
    pa, pb = pair.compare("-n", files=False)
    assert b"# Weak dependencies extracted from modules themselves.\n" in pb.stdout
    assert pb.stdout.index(b"# Soft dependencies") < pb.stdout.index(b"# Weak dependencies") < \
        pb.stdout.index(b"# Aliases for symbols")


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian612_byte_identical_kmod34(debian612, depmod34, tmp_path):
    pair = Pair34(depmod34, Path(debian612.modules_dir), debian612.kver, tmp_path, link=True)
    pair.compare()
    pair.compare()  # from the memo


# ---------------------------------------------------------------------------------------------
# Fixture trees
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", list(ORDERS))
def test_fixture_trees_byte_identical_kmod34(order, cycle_build, basic_build, depmod34, tmp_path,  # noqa: F811
                                             headers61):
    """The mixed tree of test_depmod (priorities, compression, two exporters, weak imports, odd
    modules.builtin lines; "partial-order" lists kmcy_w twice, which kmod 34 takes at its first
    line and kmod 30 at its last) against kmod 34, with -n, -w, -e, -E, -F."""
    src = _mixed_tree(cycle_build, basic_build, tmp_path, ORDERS[order])
    pair = Pair34(depmod34, src, KVER, tmp_path)
    pa, pb = pair.compare()
    assert pa.returncode == 0
    compare_options(pair, headers61, tmp_path, n_files=False)


def test_modules_order_duplicate_lines_per_version(cycle_build, depmod34, real_depmod, tmp_path):  # noqa: F811
    """A module listed twice in modules.order: kmod 30 takes its last line, kmod 34 its first
    (a1186fa); kmodsim follows each version's depmod, and the two orders differ."""
    order = b"extra/kmcy_w.ko\nextra/kmcy_a.ko\nextra/kmcy_x.ko\nextra/kmcy_w.ko\n"
    src = _tree(tmp_path / "src", KVER, _layout(cycle_build, ACYCLIC), order)
    deps = {}
    for v, oracle in (("30", real_depmod), ("34", depmod34)):
        pair = Pair(src, KVER, tmp_path / v)
        pa = subprocess.run([oracle, "-b", str(pair.a), KVER], capture_output=True)
        pb = pair.kmodsim("--kmod-version", v)
        assert pa.returncode == pb.returncode == 0, pb.stderr
        for f in ("modules.dep", "modules.alias", "modules.symbols"):
            assert (pair.dir(pair.a) / f).read_bytes() == (pair.dir(pair.b) / f).read_bytes(), (v, f)
        deps[v] = [ln.split(":")[0] for ln in (pair.dir(pair.b) / "modules.dep").read_text().splitlines()]
    assert deps["30"][:3] == ["extra/kmcy_a.ko", "extra/kmcy_x.ko", "extra/kmcy_w.ko"]
    assert deps["34"][:3] == ["extra/kmcy_w.ko", "extra/kmcy_a.ko", "extra/kmcy_x.ko"]


DIR_OPTIONS = {  # kmod 34's -m and -o, with -b (relative ones taken against the working directory)
    "moduledir-absolute": (["-m", "/usr/lib/modules"], "usr/lib/modules"),
    "moduledir-relative": (["-m", "usr/lib/modules"], "usr/lib/modules"),
    "moduledir-slashes": (["--moduledir", "//usr/lib/modules/"], "usr/lib/modules/"),
    "outdir": (["-o", "{tmp}/out-{who}"], None),
    "outdir-relative": (["--outdir", "out-{who}/x"], None),
    "outdir-and-moduledir": (["-o", "{tmp}/out-{who}", "-m", "/usr/lib/modules"], "usr/lib/modules"),
}


@pytest.mark.parametrize("case", list(DIR_OPTIONS))
def test_moduledir_and_outdir_like_kmod34(case, cycle_build, depmod34, tmp_path):  # noqa: F811
    """-m/--moduledir (c36ddb6, a9e69c0) and -o/--outdir (1712a15): where kmod 34's depmod reads and
    writes, kmodsim reads and writes the same bytes; its stderr and status too."""
    argv, moddir = DIR_OPTIONS[case]
    got = {}
    for who in ("a", "b"):
        root = tmp_path / who
        d = root / (moddir or "lib/modules") / KVER
        d.mkdir(parents=True)
        _write_layout(d, _layout(cycle_build, ACYCLIC))
        args = [a.format(tmp=tmp_path, who=who) for a in argv]
        cmd = [depmod34] if who == "a" else ["kmodsim", "depmod", "--kmod-version", "34", "--bin"]
        p = subprocess.run([*cmd, "-b", str(root), *args, KVER], capture_output=True, cwd=tmp_path,
                           env=dict(os.environ, KMODSIM_CACHE=str(tmp_path / "cache")))
        files = {}
        for top in (root, tmp_path / f"out-{who}"):
            for base, _dirs, names in os.walk(top):
                for n in names:
                    if n.startswith("modules."):
                        rel = os.path.relpath(os.path.join(base, n), tmp_path)
                        files[rel.replace(who, "X", 1)] = Path(base, n).read_bytes()
        got[who] = (p.returncode, p.stdout, p.stderr.replace(str(root).encode(), b"ROOT"), files)
    assert got["a"][0] == 0 and any(k.endswith("modules.dep.bin") for k in got["a"][3])
    assert got["b"] == got["a"]


def test_version_specific_options(cycle_build, real_depmod, depmod34, tmp_path):  # noqa: F811
    """kmod 30's deprecated options (-u, -q, -r, --map) are warned about under --kmod-version 30 as
    kmod 30 warns; kmod 34 has none of them (af54b73) and kmod 30 has no -m DIR or -o: kmodsim
    refuses those with one line and exit 2, writing nothing."""
    src = _tree(tmp_path / "src", KVER, _layout(cycle_build, ACYCLIC))
    pair = Pair(src, KVER, tmp_path)
    pa = subprocess.run([real_depmod, "-b", str(pair.a), "-u", "--quiet", KVER], capture_output=True)
    pb = pair.kmodsim("--kmod-version", "30", "-u", "--quiet")
    assert pa.returncode == pb.returncode == 0
    assert pb.stderr.startswith(b"depmod: WARNING: Ignored deprecated option --unresolved-error\n"
                                b"depmod: WARNING: Ignored deprecated option --quiet\n")
    assert pa.stderr.count(b"Ignored deprecated option") == 2
    p34 = subprocess.run([depmod34, "-b", str(pair.a), "-u", KVER], capture_output=True, text=True)
    assert p34.returncode == 1 and "invalid option -- 'u'" in p34.stderr
    refused = {  # argv -> what kmodsim's one line names
        ("--kmod-version", "34", "-u"): "kmodsim: --unresolved-error: not an option of kmod 34's depmod",
        ("--kmod-version", "34", "--map"): "kmodsim: --map: not an option of kmod 34's depmod",
        ("--kmod-version", "30", "-m", "/x"): "kmodsim: --moduledir: not an option of kmod 30's depmod",
        ("--kmod-version", "30", "-o", str(tmp_path / "o")): "kmodsim: --outdir: not an option of kmod 30's depmod",
        ("--kmod-version", "29"): "--kmod-version: '29': one of 30, 34",
    }
    for argv, want in refused.items():
        p = subprocess.run(["kmodsim", "depmod", "-b", str(pair.b), *argv, KVER], capture_output=True, text=True,
                           env=pair.env)
        assert p.returncode == 2 and "Traceback" not in p.stderr, (argv, p.stderr)
        assert want in p.stderr.splitlines()[-1], (argv, p.stderr)
    assert not (tmp_path / "o").exists() and not (pair.dir(pair.b) / "modules.weakdep").exists()


@pytest.mark.parametrize("case", list(BAD_INVOCATIONS))
def test_bad_invocations_like_kmod34(case, cycle_build, depmod34, tmp_path):  # noqa: F811
    """test_depmod's invocations that stop depmod, against kmod 34's depmod: its words, its exit
    status, nothing written."""
    out = bad_invocation(case, cycle_build, tmp_path, [depmod34],
                         ["kmodsim", "depmod", "--kmod-version", "34", "--no-cache", "--bin"])
    assert out["b"] == out["a"]


def test_quick_mode_kmod34(cycle_build, depmod34, tmp_path):  # noqa: F811
    """-A under kmod 34: nothing done while no module is newer than modules.dep, else every file."""
    pair = Pair34(depmod34, _tree(tmp_path, KVER, _layout(cycle_build, ACYCLIC)), KVER, tmp_path)
    pair.compare("-A")
    compare_quick_mode(pair, "modules.weakdep", "# stale\n")  # libkmod reads it as configuration
