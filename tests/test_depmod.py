"""``kmodsim depmod``, ``why`` and ``deps`` against kmod 30's real depmod.

Every expected value comes from the real depmod (its files, its stdout, its stderr, its exit
status) or from independent oracles (readelf, Module.symvers as modpost wrote it). depmod only
ever runs on copies of a tree (hard links for Debian's, plain copies for the fixtures), never on
the cached trees themselves.
"""

from __future__ import annotations

import gzip
import json
import lzma
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import oracles
from conftest import DEPMOD, kbuild_set, need, run_kmodsim, settle_timestamps

pytestmark = pytest.mark.kbuild

FILES = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols", "modules.devname")
BINS = ("modules.dep.bin", "modules.alias.bin", "modules.symbols.bin", "modules.builtin.bin",
        "modules.builtin.alias.bin")


@pytest.fixture(scope="session")
def cycle_build(headers61) -> Path:
    """tests/kbuild/cycle built by Debian's kbuild against the 6.1 headers (one M= directory)."""
    return kbuild_set("cycle", headers61)


class Pair:
    """One tree, copied twice: depmod runs on ``a``, kmodsim on ``b``."""

    def __init__(self, src: Path, kver: str, tmp: Path, link: bool = False) -> None:
        self.kver = kver
        self.tmp = tmp
        self.a, self.b = tmp / "a", tmp / "b"
        for root in (self.a, self.b):
            (root / "lib" / "modules").mkdir(parents=True)
            subprocess.run(["cp", "-al" if link else "-a", str(src), str(root / "lib" / "modules" / kver)],
                           check=True)
        self.env = dict(os.environ, KMODSIM_CACHE=str(tmp / "cache"))

    def dir(self, root: Path) -> Path:
        return root / "lib" / "modules" / self.kver

    def depmod(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([DEPMOD, "-b", str(self.a), *map(str, args), self.kver], capture_output=True,
                              timeout=600)

    def kmodsim(self, *args) -> subprocess.CompletedProcess:
        p = subprocess.run(["kmodsim", "depmod", "-b", str(self.b), *map(str, args), self.kver],
                           capture_output=True, timeout=600, env=self.env)
        assert b"Traceback" not in p.stderr, p.stderr.decode()[-3000:]
        return p

    def same_files(self, bins: bool = False) -> None:
        for f in FILES + (BINS if bins else ()):
            fa, fb = self.dir(self.a) / f, self.dir(self.b) / f
            assert fa.exists() == fb.exists(), f
            if fa.exists():
                assert fa.read_bytes() == fb.read_bytes(), f"{f} differs"

    def depmod_lines(self, p: subprocess.CompletedProcess, root: Path) -> list[str]:
        """stderr lines in depmod's own words, with the tree's root made neutral."""
        text = p.stderr.decode("utf-8", "surrogateescape").replace(str(root), "ROOT")
        return [ln for ln in text.splitlines(keepends=True) if not ln.startswith("kmodsim: ")]

    def compare(self, *args, extra: tuple = (), files: bool = True,
                status: int | None = None) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        """Run both with ``args`` (kmodsim also with ``extra``): same stdout, same depmod lines
        on stderr, same files, same exit status (or ``status``)."""
        pa, pb = self.depmod(*args), self.kmodsim(*args, *extra)
        assert pb.returncode == (pa.returncode if status is None else status), (pa.returncode, pb.stderr[-2000:])
        assert pb.stdout == pa.stdout
        bins = "--bin" in extra
        assert self.depmod_lines(pb, self.b) == self.depmod_lines(pa, self.a)
        if files:
            self.same_files(bins)
        return pa, pb


def _write_layout(d: Path, layout: dict[str, bytes]) -> None:
    """Each file of ``layout`` (path relative to ``d`` -> bytes) written below ``d``."""
    for rel, data in layout.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)


def _tree(tmp: Path, kver: str, layout: dict[str, bytes], order: bytes | None = None) -> Path:
    d = tmp / "src" / kver
    _write_layout(d, layout)
    d.mkdir(parents=True, exist_ok=True)
    if order is not None:
        (d / "modules.order").write_bytes(order)
    return d


def _doctored_symvers(headers: str, tmp: Path) -> Path:
    """The kernel's Module.symvers with _printk's and module_layout's CRCs changed and
    kmalloc_caches left out: depmod -e then has disagreements and unknown symbols to report."""
    out = []
    for line in Path(headers, "Module.symvers").read_text().splitlines(keepends=True):
        f = line.split("\t")
        if f[1] in ("_printk", "module_layout"):
            line = "\t".join(["0x12345678", *f[1:]])
        elif f[1] == "kmalloc_caches":
            continue
        out.append(line)
    p = tmp / "doctored.symvers"
    p.write_text("".join(out))
    return p


def _system_map(headers: str, tmp: Path) -> Path:
    """A System.map with __ksymtab_ lines for half the kernel's exports, and one bad line."""
    rows = [ln.split("\t") for ln in Path(headers, "Module.symvers").read_text().splitlines()]
    names = sorted(r[1] for r in rows if r[2] == "vmlinux")[::2]
    p = tmp / "System.map"
    p.write_text("".join(f"ffffffff81000000 R __ksymtab_{n}\n" for n in names) + "not a map line\n"
                 + "ffffffff81000000 T _stext\n")
    return p


# ---------------------------------------------------------------------------------------------
# Debian's 6.1 tree (in CI) and 6.12 tree (KMODSIM_TEST_612=1)
# ---------------------------------------------------------------------------------------------

@pytest.mark.realkernel
@pytest.mark.slow
def test_debian61_byte_identical(debian61, real_depmod, tmp_path):
    pair = Pair(Path(debian61.modules_dir), debian61.kver, tmp_path, link=True)
    pair.compare(extra=("--no-cache",))
    dep = (pair.dir(pair.b) / "modules.dep").read_text().splitlines()
    n_files = sum(1 for _d, _s, fs in os.walk(pair.dir(pair.a)) for f in fs if ".ko" in f)
    assert len(dep) == n_files > 4000
    # -n writes the same bytes to stdout, in depmod's order, and nothing into the tree
    for f in FILES:
        (pair.dir(pair.a) / f).unlink()
        (pair.dir(pair.b) / f).unlink()
    pa, pb = pair.compare("-n")
    assert len(pb.stdout) > 2_000_000
    assert not any((pair.dir(pair.b) / f).exists() for f in FILES)


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian61_bin_indexes_and_modprobe(debian61, real_depmod, tmp_path):
    """--bin: the five .bin indexes byte-identical too, and kmod's own modprobe resolves modules,
    aliases and symbols from kmodsim's files exactly as from depmod's."""
    pair = Pair(Path(debian61.modules_dir), debian61.kver, tmp_path, link=True)
    pair.compare(extra=("--bin", "--no-cache"))
    modprobe = shutil.which("modprobe") or "/usr/sbin/modprobe"
    if not os.access(modprobe, os.X_OK):
        need("kmod's modprobe")
    for name in ("kvm_amd", "fs-ext4", "symbol:kvm_vcpu_kick", "crc32c", "pci:v00008086d00001572sv*sd*bc*sc*i*"):
        got = [subprocess.run([modprobe, "-d", str(root), "-S", debian61.kver, "--show-depends", name],
                              capture_output=True, text=True) for root in (pair.a, pair.b)]
        assert got[0].returncode == got[1].returncode == 0, (name, got[1].stderr)
        assert got[1].stdout.replace(str(pair.b), "ROOT") == got[0].stdout.replace(str(pair.a), "ROOT")
        assert "insmod ROOT/lib/modules/" in got[1].stdout.replace(str(pair.b), "ROOT")


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian61_errsyms(debian61, real_depmod, tmp_path):
    """-e -E with a doctored Module.symvers: every 'disagrees about version' and 'needs unknown
    symbol' line of depmod, in its order; the files too (-E changes nothing in them)."""
    pair = Pair(Path(debian61.modules_dir), debian61.kver, tmp_path, link=True)
    symvers = _doctored_symvers(debian61.headers_dir, tmp_path)
    pa, pb = pair.compare("-e", "-E", symvers)
    lines = pair.depmod_lines(pa, pair.a)
    assert sum("disagrees about version of symbol _printk" in ln for ln in lines) > 1000
    assert sum("needs unknown symbol kmalloc_caches" in ln for ln in lines) > 500
    # a second run comes from kmodsim's memo: same bytes, same messages
    for f in FILES:
        (pair.dir(pair.b) / f).unlink()
    pb2 = pair.kmodsim("-e", "-E", symvers)
    assert pb2.stderr == pb.stderr and pb2.returncode == pb.returncode
    pair.same_files()


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian612_byte_identical(debian612, real_depmod, tmp_path):
    pair = Pair(Path(debian612.modules_dir), debian612.kver, tmp_path, link=True)
    pair.compare(extra=("--bin",))


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian510_byte_identical(debian510, real_depmod, tmp_path):
    """Debian bullseye's 5.10: libkmod reads CRCs from absolute __crc_ symbols there (<5.19)."""
    pair = Pair(Path(debian510.modules_dir), debian510.kver, tmp_path, link=True)
    pair.compare(extra=("--bin", "--no-cache"))


FOREIGN = {  # arch -> meta-package: ELF32/ELF64, both byte orders (as tests/test_foreign_arch.py)
    "s390x": "linux-image-s390x",
    "i386": "linux-image-686",
    "armhf": "linux-image-armmp",
    "ppc64el": "linux-image-powerpc64le",
}


@pytest.mark.realkernel
@pytest.mark.slow
@pytest.mark.parametrize("arch", list(FOREIGN))
def test_foreign_arch_byte_identical(arch, real_depmod, tmp_path):
    """Debian's 6.1 trees of other architectures (s390x is big-endian, i386 and armhf ELF32),
    also with -e -E and the flavour's Module.symvers."""
    try:
        from kmodsim.debian import DebianError, DebianKernel, image_package

        k = DebianKernel(image_package(FOREIGN[arch], arch=arch), arch=arch)
        headers = k.headers()
    except (DebianError, TypeError) as exc:
        need(f"{arch} kernel package: {exc}")
    pair = Pair(Path(k.modules_dir), k.kver, tmp_path, link=True)
    pair.compare()
    pair.compare("-e", "-E", Path(headers) / "Module.symvers")


@pytest.mark.realkernel
def test_why_on_debian61(debian61, real_depmod, tmp_path):
    """kvm_amd needs irqbypass through kvm (depmod's modules.dep says kvm-amd.ko needs both), and
    the kvm -> irqbypass edge is kvm.ko's undefined symbols that irqbypass.ko exports."""
    tree = debian61.modules_dir
    env = dict(os.environ, KMODSIM_CACHE=str(tmp_path / "cache"))
    p = run_kmodsim("why", "--json", "-t", tree, "kvm-amd", "irqbypass", check=0, env=env)
    w = json.loads(p.stdout)
    assert w["chains"] == [["kvm_amd", "kvm", "irqbypass"]] and not w["direct"]
    rows = oracles.symvers(os.path.join(debian61.headers_dir, "Module.symvers"))
    kvm = os.path.join(tree, "kernel/arch/x86/kvm/kvm.ko")
    und = oracles.undefined(oracles.readelf_symbols([kvm])[kvm])
    want = [s for s in und if s in rows["virt/lib/irqbypass"]]
    edge = next(e for e in w["edges"] if (e["from"], e["to"]) == ("kvm", "irqbypass"))
    assert edge["symbols"] == want and len(want) >= 2
    p = run_kmodsim("deps", "--json", "-t", tree, "kvm_amd", check=0, env=env)
    t = json.loads(p.stdout)
    assert [d["name"] for d in t["deps"]] == ["kvm", "ccp"]
    # depmod -n (nothing written) on the cached tree: its modules.dep line for kvm-amd.ko
    root = Path(tree).parents[2]
    out = subprocess.run([DEPMOD, "-n", "-b", str(root), debian61.kver], capture_output=True, text=True,
                         check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("kernel/arch/x86/kvm/kvm-amd.ko:"))
    assert t["modules_dep"] == line.split(":")[1].split()


# ---------------------------------------------------------------------------------------------
# Fixture modules: cycles, hash order, priorities, compression, messages
# ---------------------------------------------------------------------------------------------

KVER = "6.1.0-kmodsim"


def _layout(build: Path, names: list[str], where: str = "extra") -> dict[str, bytes]:
    return {f"{where}/{n}.ko": (build / f"{n}.ko").read_bytes() for n in names}


ACYCLIC = ["kmcy_a", "kmcy-c", "kmcy_d", "kmcy_e", "kmcy_f", "kmcy_w", "kmcy_x", "kmcy_y"]


def _edges_oracle(build: Path, names: list[str], owners: dict[str, str]) -> dict[tuple[str, str], list[str]]:
    """(user, owner) -> the user's undefined symbols (readelf, symbol-table order) that the
    owner exports (``owners``: symbol -> module name, from depmod or Module.symvers)."""
    paths = {n: str(build / f"{n}.ko") for n in names}
    syms = oracles.readelf_symbols(list(paths.values()))
    out: dict[tuple[str, str], list[str]] = {}
    for n, p in paths.items():
        for s in oracles.undefined(syms[p]):
            o = owners.get(s)
            if o is not None:
                out.setdefault((n.replace("-", "_"), o), []).append(s)
    return out


def _symvers_owners(build: Path) -> dict[str, str]:
    return {s: os.path.basename(m).replace("-", "_")
            for m, rows in oracles.symvers(str(build / "Module.symvers")).items() for s in rows}


def test_cycles_like_depmod_plus_symbols(cycle_build, real_depmod, tmp_path):
    names = ["kmcy_a", "kmcy_b", "kmcy-c", "kmcy_d", "kmcy_e", "kmcy_f", "kmcy_w", "kmcy_x", "kmcy_y", "kmcy_z"]
    src = _tree(tmp_path, KVER, _layout(cycle_build, names))
    pair = Pair(src, KVER, tmp_path)
    pa, pb = pair.compare()
    assert pa.returncode == 1
    assert not (pair.dir(pair.a) / "modules.dep").exists()  # depmod writes nothing on a cycle
    assert any("Cycle detected" in ln for ln in pair.depmod_lines(pa, pair.a))
    # without --explain-cycles stderr is depmod's alone (kmod's testsuite compares it whole)
    assert pb.stderr.decode().replace(str(pair.b), "ROOT") == pa.stderr.decode().replace(str(pair.a), "ROOT")
    pa, pb = pair.compare(extra=("--explain-cycles",))
    # kmodsim's report: every elementary cycle of the oracle graph, each edge with its symbols
    edges = _edges_oracle(cycle_build, names, _symvers_owners(cycle_build))
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    want_cycles = set()

    def walk(start, node, path):
        for nxt in graph.get(node, ()):
            if nxt == start:
                want_cycles.add(tuple(path))
            elif nxt not in path and nxt > start:
                walk(start, nxt, path + [nxt])

    for s in graph:
        walk(s, s, [s])
    report = [ln for ln in pb.stderr.decode().splitlines() if ln.startswith("kmodsim: ")]
    got_cycles = {tuple(re.match(r"kmodsim: cycle \d+ of \d+: (.*)$", ln).group(1).split(" -> ")[:-1])
                  for ln in report if " cycle " in ln}
    assert got_cycles == want_cycles == {("kmcy_a", "kmcy_b"), ("kmcy_x", "kmcy_y", "kmcy_z")}
    got_edges = {}
    for ln in report:
        m = re.match(r"kmodsim:   (\S+) needs (\S+): (.*)$", ln)
        if m:
            got_edges[(m.group(1), m.group(2))] = m.group(3).split(", ")
    assert got_edges == {e: edges[e] for e in got_edges}
    assert got_edges[("kmcy_b", "kmcy_a")] and set(got_edges) == {
        ("kmcy_a", "kmcy_b"), ("kmcy_b", "kmcy_a"), ("kmcy_x", "kmcy_y"), ("kmcy_y", "kmcy_z"),
        ("kmcy_z", "kmcy_x")}


CYCLIC_SETS = {
    "two": ["kmcy_a", "kmcy_b"],
    "two-with-branches": ["kmcy_a", "kmcy_b", "kmcy-c", "kmcy_d"],
    "three-with-weak-user": ["kmcy_x", "kmcy_y", "kmcy_z", "kmcy_w"],
    "both": ["kmcy_b", "kmcy_a", "kmcy_z", "kmcy_y", "kmcy_x", "kmcy_w"],
}


@pytest.mark.parametrize("which", list(CYCLIC_SETS))
@pytest.mark.parametrize("order", ["none", "listed", "reversed"])
def test_cycle_reports_follow_depmod(which, order, cycle_build, real_depmod, tmp_path):
    """depmod's own cycle report (its walk depends on the module order) line for line."""
    names = CYCLIC_SETS[which]
    lines = "".join(f"extra/{n}.ko\n" for n in (names if order == "listed" else names[::-1]))
    src = _tree(tmp_path, KVER, _layout(cycle_build, names), None if order == "none" else lines.encode())
    pa, _pb = Pair(src, KVER, tmp_path).compare()
    assert pa.returncode == 1


def _mixed_tree(build: Path, basic: Path, tmp: Path, order: bytes | None) -> Path:
    """Priorities (updates/ over kernel/), compression (.ko.xz, .ko.zst; .ko.gz, which Debian's
    kmod 30 does not read), a dash in a name, two exporters of one name, weak imports, modules
    missing from modules.order, and the basic fixtures (aliases, a softdep, a weak import)."""
    layout = _layout(build, ["kmcy_a", "kmcy-c", "kmcy_f", "kmcy_w", "kmcy_x"])
    layout["kernel/x/kmcy_d.ko"] = (build / "kmcy_d.ko").read_bytes()
    layout["updates/sub/kmcy_d.ko"] = (build / "kmcy_d.ko").read_bytes()
    layout["kernel/x/kmcy_e.ko.xz"] = lzma.compress((build / "kmcy_e.ko").read_bytes(), format=lzma.FORMAT_XZ,
                                                    check=lzma.CHECK_CRC32)
    layout["kernel/x/kmcy_b.ko.gz"] = gzip.compress((build / "kmcy_b.ko").read_bytes())
    import zstandard

    layout["extra/kmcy_y.ko.zst"] = zstandard.ZstdCompressor().compress((build / "kmcy_y.ko").read_bytes())
    for n in ("kms_a", "kms_b", "kms_c"):
        layout[f"kernel/basic/{n}.ko"] = (basic / f"{n}.ko").read_bytes()
    # built-in modules (only the .bin indexes read them), with lines depmod rejects or skips
    layout["modules.builtin"] = b"kernel/fs/foo.ko\n\n9bad/line.ko\nkernel/x/bar-baz.ko\nkernel/x/foo.ko\n"
    layout["modules.builtin.modinfo"] = (b"foo.alias=fs-foo\0foo.license=GPL\0bar_baz.alias=char-major-1-2\0"
                                         b"bar_baz.alias=x[ab\0noperiod\0baz.nokey\0after.alias=zz\0"
                                         b"qux.alias=\0bar_baz.alias=fs-foo\0last.alias=end")
    return _tree(tmp, KVER, layout, order)


ORDERS = {
    "no-order": None,
    "partial-order": b"extra/kmcy_w.ko\nkernel/x/kmcy_e.ko\nnothere.ko\nextra/kmcy-c.ko\n\n"
                     b"kernel/basic/kms_b.ko\nextra/kmcy_w.ko\n",
    "corrupt-order": b"extra/kmcy_w.ko\nkernel/x/kmcy_e.ko",
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_fixture_trees_byte_identical(order, cycle_build, basic_build, real_depmod, tmp_path, headers61):
    src = _mixed_tree(cycle_build, basic_build, tmp_path, ORDERS[order])
    pair = Pair(src, KVER, tmp_path)
    pa, pb = pair.compare()
    assert pa.returncode == 0
    dep = (pair.dir(pair.a) / "modules.dep").read_text()
    assert "updates/sub/kmcy_d.ko" in dep and "kernel/x/kmcy_d.ko" not in dep and "kmcy_b" not in dep
    compare_options(pair, headers61, tmp_path)
    pair.compare("-w", extra=("--bin",))  # every file and every message, .bin indexes included


def compare_options(pair: Pair, headers: str, tmp: Path, n_files: bool = True) -> None:
    """The mixed tree's runs after the first, each compared (:meth:`Pair.compare`): -n (with the
    files left as they were, unless not ``n_files``), -w, -e, and -e with -E (a doctored
    Module.symvers) and with -F (a System.map) of ``headers``."""
    pair.compare("-n", files=n_files)
    pair.compare("-w")
    pair.compare("-e")
    pair.compare("-e", "-E", _doctored_symvers(headers, tmp))
    pair.compare("-e", "-F", _system_map(headers, tmp))


def test_depmod_d_configuration(cycle_build, basic_build, real_depmod, tmp_path):
    """-C: search order (built-in, external), override, exclude, external directories, bad lines."""
    layout = _layout(cycle_build, ["kmcy_a", "kmcy-c", "kmcy_f", "kmcy_e"])
    layout["kernel/x/kmcy_d.ko"] = (cycle_build / "kmcy_d.ko").read_bytes()
    layout["updates/sub/kmcy_d.ko"] = (cycle_build / "kmcy_d.ko").read_bytes()
    layout["kernel/x/kmcy_e.ko"] = (cycle_build / "kmcy_e.ko").read_bytes()
    layout["skipme/kmcy_q.ko"] = (cycle_build / "kmcy_x.ko").read_bytes()
    pair = Pair(_tree(tmp_path, KVER, layout), KVER, tmp_path)
    ext = tmp_path / "external"
    ext.mkdir()
    shutil.copy(basic_build / "kms_c.ko", ext / "kms-cc.ko")
    shutil.copy(basic_build / "kms_a.ko", ext / "kmcy_d.ko")
    conf = tmp_path / "depmod.d"
    conf.mkdir()
    (conf / "a.conf").write_text(f"search extra built-in updates\noverride kmcy_e * extra\nexclude skipme\n"
                                 f"bogus line here\nexternal 6.1.* {ext}\noverride kmcy_q 5.* skipme\n")
    (conf / "b.conf").write_text("# comment\nsearch kernel\n")
    (conf / "ignored.txt").write_text("search nothing\n")
    pair.compare("-C", conf)
    assert str(ext / "kmcy_d.ko") in (pair.dir(pair.b) / "modules.dep").read_text()
    (conf / "b.conf").write_text("search updates extra external built-in\n")
    pair.compare("-C", conf)
    pair.compare("-C", conf / "b.conf")


def test_quick_mode(cycle_build, real_depmod, tmp_path):
    """-A: nothing is done while no module is newer than modules.dep."""
    pair = Pair(_tree(tmp_path, KVER, _layout(cycle_build, ACYCLIC)), KVER, tmp_path)
    pair.compare("-A")
    for root in (pair.a, pair.b):
        os.utime(pair.dir(root) / "modules.dep", (1e9, 1e9))
        os.utime(pair.dir(root) / "extra/kmcy_a.ko", (0, 0))
    compare_quick_mode(pair, "modules.alias", "stale\n")


def compare_quick_mode(pair: Pair, stale: str, text: str) -> None:
    """-A compared (:meth:`Pair.compare`) on a tree whose file ``stale`` is overwritten with
    ``text``: with every module older than modules.dep nothing is written (``text`` stays), with
    one module newer every file is written again."""
    for root in (pair.a, pair.b):
        (pair.dir(root) / stale).write_text(text)
        for f in pair.dir(root).rglob("*.ko"):  # every module older than modules.dep: up to date
            os.utime(f, (0, 0))
    pair.compare("-A")
    assert (pair.dir(pair.b) / stale).read_text() == text
    for root in (pair.a, pair.b):
        os.utime(pair.dir(root) / "extra/kmcy_w.ko", (2e9, 2e9))
    pair.compare("-A")
    assert (pair.dir(pair.b) / stale).read_text() != text


def test_dash_a_and_module_arguments(cycle_build, real_depmod, tmp_path):
    """Modules named on the command line (absolute paths) instead of a tree walk."""
    src = _tree(tmp_path, KVER, _layout(cycle_build, ACYCLIC))
    pair = Pair(src, KVER, tmp_path)
    pick = ["extra/kmcy_f.ko", "extra/kmcy-c.ko", "extra/kmcy_a.ko"]
    pa = subprocess.run([DEPMOD, "-b", str(pair.a), KVER, *[str(pair.dir(pair.a) / p) for p in pick]],
                        capture_output=True)
    pb = subprocess.run(["kmodsim", "depmod", "-b", str(pair.b), KVER, *[str(pair.dir(pair.b) / p) for p in pick]],
                        capture_output=True, env=pair.env)
    assert pa.returncode == pb.returncode == 0, pb.stderr
    pair.same_files()


def test_unreadable_module_is_listed_and_reported(cycle_build, real_depmod, tmp_path):
    layout = _layout(cycle_build, ACYCLIC)
    layout["extra/broken.ko"] = b"\x7fELF this is not a module"
    layout["extra/empty.ko"] = b""
    pair = Pair(_tree(tmp_path, KVER, layout), KVER, tmp_path)
    pa, pb = pair.depmod(), pair.kmodsim()
    pair.same_files()  # depmod keeps such modules, with no dependencies
    assert "extra/broken.ko:\n" in (pair.dir(pair.a) / "modules.dep").read_text()
    assert pa.returncode == 0 and pb.returncode == 2
    # depmod's 'failed to load symbols' lines become kmodsim's one line per bad file
    theirs = [ln for ln in pair.depmod_lines(pa, pair.a) if "failed to load symbols" not in ln]
    assert pair.depmod_lines(pb, pair.b) == theirs
    failed = sorted(re.findall(r"failed to load symbols from ROOT(\S+):", pa.stderr.decode().replace(str(pair.a), "ROOT")))
    mine = [ln for ln in pb.stderr.decode().splitlines() if ln.startswith("kmodsim: ")]
    assert sorted(re.match(r"kmodsim: (\S+): .+", ln).group(1).replace(str(pair.b), "") for ln in mine) == failed
    assert len(mine) == 2


BAD_INVOCATIONS = {  # the errors that stop depmod: depmod's words and exit status 1 (tools/depmod.c)
    "missing-tree": ["-b", "{root}/nope", "{kver}"],
    "bad-version": ["-b", "{root}", "not-a-version"],
    "prefix-too-long": ["-b", "{root}", "-P", "ab", "{kver}"],
    "missing-symvers": ["-b", "{root}", "-E", "{root}/nope.symvers", "{kver}"],
    "missing-system-map": ["-b", "{root}", "-F", "{root}/nope.map", "{kver}"],
    "symvers-is-a-directory": ["-b", "{root}", "-E", "{root}", "{kver}"],
    "relative-module": ["-b", "{root}", "{kver}", "extra/kmcy_a.ko"],
    "missing-module": ["-b", "{root}", "{kver}", "{dir}/extra/nope.ko"],
    "module-twice": ["-b", "{root}", "{kver}", "{dir}/extra/kmcy_a.ko", "{dir}/extra/kmcy_a.ko"],
    "one-name-two-paths": ["-b", "{root}", "{kver}", "{dir}/extra/kmcy_a.ko", "{dir}/other/kmcy_a.ko"],
}


def bad_invocation(case: str, cycle_build: Path, tmp: Path, depmod: list[str], kmodsim: list[str]) -> dict[str, tuple]:
    """``BAD_INVOCATIONS[case]`` run by ``depmod`` (as "a") and by ``kmodsim`` (as "b"), each on
    its own tree holding kmcy_a.ko twice (extra/ and other/): who -> (exit status, stdout, stderr
    with the tree's root as ROOT, the names in the module directory afterwards)."""
    out = {}
    for who, cmd in (("a", depmod), ("b", kmodsim)):
        root = tmp / who
        d = root / "lib" / "modules" / KVER
        (d / "extra").mkdir(parents=True)
        (d / "other").mkdir()
        shutil.copy(cycle_build / "kmcy_a.ko", d / "extra")
        shutil.copy(cycle_build / "kmcy_a.ko", d / "other")
        argv = [a.format(root=root, kver=KVER, dir=d) for a in BAD_INVOCATIONS[case]]
        p = subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=600)
        out[who] = (p.returncode, p.stdout, p.stderr.replace(str(root), "ROOT"),
                    sorted(f.name for f in d.iterdir()))
    return out


@pytest.mark.parametrize("case", list(BAD_INVOCATIONS))
def test_bad_invocations_like_depmod(case, cycle_build, real_depmod, tmp_path):
    """Where depmod stops (its FATAL and 'Bad version' errors) kmodsim says what it says, exits 1
    as it does, and writes nothing either."""
    out = bad_invocation(case, cycle_build, tmp_path, [DEPMOD], ["kmodsim", "depmod", "--no-cache", "--bin"])
    assert out["b"] == out["a"]
    if case != "symvers-is-a-directory":  # depmod reads a directory as an empty file and goes on
        assert out["a"][0] == 1 and out["a"][2].startswith("depmod: ") and out["a"][3] == ["extra", "other"]


def test_cache_follows_changes(cycle_build, real_depmod, tmp_path):
    """Warm runs (module cache and result memo) give depmod's bytes, and follow a changed tree."""
    pair = Pair(_tree(tmp_path, KVER, _layout(cycle_build, ACYCLIC)), KVER, tmp_path)
    settle_timestamps()  # so that the first run's memo is kept (a fresh tree is racily clean)
    pair.compare()
    pair.compare()  # from the memo
    for root in (pair.a, pair.b):  # replace one module by another build of the same name, drop one
        d = pair.dir(root)
        (d / "extra/kmcy_x.ko").unlink()
        shutil.copy(cycle_build / "kmcy_z.ko", d / "extra/kmcy_w.ko")
    pair.compare()


def test_why_and_deps_on_fixtures(cycle_build, real_depmod, tmp_path):
    pair = Pair(_tree(tmp_path, KVER, _layout(cycle_build, ACYCLIC)), KVER, tmp_path)
    pair.depmod()
    d = pair.dir(pair.a)
    owners = {ln.split()[1][len("symbol:"):]: ln.split()[2]
              for ln in (d / "modules.symbols").read_text().splitlines()[1:]}
    dep = {ln.split(":")[0]: ln.split(":")[1].split() for ln in (d / "modules.dep").read_text().splitlines()}
    edges = _edges_oracle(cycle_build, ACYCLIC, owners)
    env = pair.env
    # kmcy_f needs kmcy_a only through kmcy_c (a weak import of kmcy_c_fn)
    w = json.loads(run_kmodsim("why", "--json", "-t", d, "kmcy_f", "kmcy_a", check=0, env=env).stdout)
    assert "extra/kmcy_a.ko" in dep["extra/kmcy_f.ko"]
    assert w["chains"] == [["kmcy_f", "kmcy_c", "kmcy_a"]] and not w["direct"]
    got = {(e["from"], e["to"]): e["symbols"] + e["weak"] for e in w["edges"]}
    assert got == {k: edges[k] for k in (("kmcy_f", "kmcy_c"), ("kmcy_c", "kmcy_a"))}
    assert next(e for e in w["edges"] if e["from"] == "kmcy_f")["weak"] == ["kmcy_c_fn"]
    # the name two modules export belongs to the one depmod gives it to
    w = json.loads(run_kmodsim("why", "--json", "-t", d, "kmcy_f", owners["kmcy_shared"], check=0,
                               env=env).stdout)
    assert "kmcy_shared" in w["edges"][0]["symbols"]
    p = run_kmodsim("why", "-t", d, "kmcy_a", "kmcy_f", env=env)
    assert p.returncode == 1 and p.stdout == "kmcy_a does not need kmcy_f\n"
    assert run_kmodsim("why", "-t", d, "kmcy_a", "nosuch", env=env).returncode == 2
    # deps: the tree's edges are the oracle's, the last line is depmod's modules.dep line
    for m in ("kmcy_f", "kmcy_w", "kmcy-c"):
        t = json.loads(run_kmodsim("deps", "--json", "-t", d, m, check=0, env=env).stdout)
        assert t["modules_dep"] == dep[t["path"]]
        stack = [t]
        while stack:
            n = stack.pop()
            for c in n.get("deps", []):
                assert c["symbols"] + c["weak"] == edges[(n["name"], c["name"])]
                stack.append(c)
        text = run_kmodsim("deps", "-t", d, m, check=0, env=env).stdout.splitlines()
        assert text[-1] == f"{t['path']}:" + "".join(" " + x for x in dep[t["path"]])


@pytest.mark.realkernel
def test_progress_on_a_terminal_only(debian61, real_depmod, tmp_path):
    """A cold run shows scan's progress bar when stderr is a terminal, and nothing else changes:
    the files are depmod's, and stdout (here a pipe) stays empty. Piped, stderr is depmod's alone
    (every other test here compares it whole)."""
    import pty

    pair = Pair(Path(debian61.modules_dir), debian61.kver, tmp_path, link=True)
    pa = pair.depmod()
    main, sub = pty.openpty()
    p = subprocess.Popen(["kmodsim", "depmod", "--no-cache", "-b", str(pair.b), pair.kver], stdout=subprocess.PIPE,
                         stderr=sub, env=pair.env)
    os.close(sub)
    tty = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    out, _ = p.communicate(timeout=600)
    os.close(main)
    assert p.returncode == pa.returncode == 0 and out == b""
    shown = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", tty).decode("utf-8", "replace")
    n = len((pair.dir(pair.a) / "modules.dep").read_text().splitlines())  # every module, as depmod found them
    assert "reading modules" in shown and f"{n}/{n}" in shown and n > 4000, shown[-500:]
    assert "Traceback" not in shown and "depmod:" not in shown
    pair.same_files()


@pytest.mark.parametrize("argv", [["--bogus"], ["-X"], ["-aX"], ["-b"], ["--basedir"], ["-nb"], ["--all=1"],
                                  ["--bogus=3"], ["--bas"], ["-a", "--warn=x"]])
def test_option_errors_are_getopts(argv, real_depmod, tmp_path):
    """A bad option: getopt_long()'s own line and exit 1, as kmod's depmod gives them (nothing written)."""
    # getopt names argv[0]: run kmod's as "depmod", as a user types it
    real = subprocess.run(["depmod", *argv], executable=real_depmod, capture_output=True, text=True, cwd=tmp_path)
    ours = run_kmodsim("depmod", *argv, cwd=tmp_path)
    assert (ours.returncode, ours.stdout, ours.stderr) == (real.returncode, real.stdout, real.stderr)
    assert real.returncode == 1 and real.stderr.startswith("depmod: ")
    assert list(tmp_path.iterdir()) == []
