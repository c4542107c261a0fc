"""kmod v30's own depmod testsuite (``testsuite/test-depmod.c``) run against ``kmodsim depmod``.

The testsuite comes from Debian 12's ``kmod`` source package (``apt-get source`` through a private
apt state for bookworm, :func:`kmodsim.debian.upstream_source`), fetched at test time into the
cache; none of kmod's code or files is in this repository. Each case of test-depmod.c is read
from the file itself: its root file system (a copy of ``rootfs-pristine/test-depmod/<case>``,
populated with modules as ``populate-modules.sh`` maps them, compressed as the installed depmod's
``KMOD_FEATURES`` allow), its ``uname -r``, its arguments (none) and its expected outputs (files
compared with depmod's, or stderr compared exactly, and whether depmod must fail). Every case runs
twice: with the testsuite's prebuilt modules (``module-playground/cache``) and with
``module-playground`` built by Debian's kbuild against the 6.1 headers.

The testsuite runs depmod with no arguments under ``LD_PRELOAD`` traps (``path.so`` puts every
absolute path under the case's root, ``uname.so`` fakes the release). kmodsim runs the equivalent
``kmodsim depmod --bin -b ROOT -C ROOT/etc/depmod.d -C ROOT/run/depmod.d -C
ROOT/usr/local/lib/depmod.d -C ROOT/lib/depmod.d KVER`` — the same configuration directories the
trap gives depmod, and ``external`` directories of the copied configuration prefixed with ROOT
(``-b`` does not move them, the trap does). Its results are compared with three oracles:

* the testsuite's expectations (its ``correct-*`` files and ``correct.txt``, and the exit status),
  with ROOT taken out of the paths kmodsim prints;
* kmod 30's real depmod run the same way (``-b``, ``-C``), on a copy whose ROOT has the same
  length: every text file, every ``.bin`` index, stderr and the exit status, byte for byte;
* kmod 30's real depmod run the testsuite's way, under ``path.so`` and ``uname.so`` compiled from
  the fetched testsuite: the text files, stderr and exit status with ROOT taken out, and the
  ``.bin`` indexes that hold no path.

The last oracle must itself meet the testsuite's expectations, which checks this harness.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DEPMOD, kmod_source, need

pytestmark = pytest.mark.kbuild

CFG_DIRS = ("etc/depmod.d", "run/depmod.d", "usr/local/lib/depmod.d", "lib/depmod.d")  # kmod 30's defaults
TEXT = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols", "modules.devname")
BINS = ("modules.dep.bin", "modules.alias.bin", "modules.symbols.bin", "modules.builtin.bin",
        "modules.builtin.alias.bin")


# ---------------------------------------------------------------------------------------------
# The testsuite, its cases and its modules
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kmod_src() -> Path:
    """kmod's upstream tree from bookworm's source package (kmod 30)."""
    return kmod_source("bookworm")


@pytest.fixture(scope="session")
def depmod_features(real_depmod) -> str:
    """The feature line of ``depmod --version`` (e.g. ``+ZSTD +XZ -ZLIB +LIBCRYPTO``)."""
    return subprocess.run([real_depmod, "--version"], capture_output=True, text=True).stdout.splitlines()[1]


def _c_string(expr: str, macros: dict[str, str]) -> str:
    """A C string expression of adjacent literals and macros (``ROOTFS "/lib/modules/x"``)."""
    out = ""
    for lit, name in re.findall(r'"((?:[^"\\]|\\.)*)"|([A-Z_][A-Z0-9_]*)', expr):
        out += lit if not name else macros[name]
    return out


def parse_cases(test_depmod_c: str) -> dict[str, dict]:
    """Every DEFINE_TEST of test-depmod.c: rootfs (relative to the testsuite's rootfs), uname,
    depmod's arguments, expected files [(correct, generated)], expected stderr file, must-fail."""
    src = re.sub(r"/\*.*?\*/", "", test_depmod_c, flags=re.S)
    macros = {"TESTSUITE_ROOTFS": "", "ABS_TOP_BUILDDIR": ""}
    for name, expr in re.findall(r"^#define\s+(\w+)\s+(.+)$", src, re.M):
        try:
            macros[name] = _c_string(expr, macros)
        except KeyError:
            pass
    cases = {}
    for m in re.finditer(r"static noreturn int (\w+)\(const struct test \*t\)\s*\{(.*?)\n\}\s*DEFINE_TEST\(\1,"
                         r"(.*?)\}\);", src, re.S):
        name, body, spec = m.groups()
        args = re.search(r"args\[\] = \{(.*?)\};", body, re.S).group(1)
        argv = [a.strip() for a in args.split(",") if a.strip()]
        assert argv[0] == "progname" and argv[-1] == "NULL", argv
        files = [tuple(_c_string(x, macros) for x in pair)
                 for pair in re.findall(r"\{\s*([^{},]+?),\s*([^{},]+?)\s*\}", spec.split(".files", 1)[-1])
                 if ".files" in spec]
        cases[name] = case_of(spec, macros, [_c_string(a, macros) for a in argv[1:-1]], files)
    return cases


def case_of(spec: str, macros: dict[str, str], args: list[str], files: list[tuple[str, str]]) -> dict:
    """A DEFINE_TEST's case from its ``spec`` (the struct's initialiser): rootfs and uname
    (TC_ROOTFS, TC_UNAME_R), depmod's ``args``, the expected ``files`` [(correct, generated)], the
    expected stderr file (``.err``, or None) and whether depmod must fail (``.expected_fail``)."""
    err = re.search(r"\.err\s*=\s*([^,\n]+),", spec)
    return {
        "rootfs": _c_string(re.search(r"\[TC_ROOTFS\]\s*=\s*([^,]+),", spec).group(1), macros),
        "uname": _c_string(re.search(r"\[TC_UNAME_R\]\s*=\s*([^,]+),", spec).group(1), macros),
        "args": args,
        "files": files,
        "err": _c_string(err.group(1), macros) if err else None,
        "fail": bool(re.search(r"\.expected_fail\s*=\s*true", spec)),
    }


# What test-depmod.c held when this test was written (kmod 30): the parse is checked against it,
# so that a changed testsuite is noticed rather than half-run.
V30_CASES = {
    "depmod_modules_order_for_compressed": ("test-depmod/modules-order-compressed", "alias", False),
    "depmod_search_order_simple": ("test-depmod/search-order-simple", "dep", False),
    "depmod_search_order_same_prefix": ("test-depmod/search-order-same-prefix", "dep", False),
    "depmod_detect_loop": ("test-depmod/detect-loop", "err", True),
    "depmod_search_order_external_first": ("test-depmod/search-order-external-first", "dep", False),
    "depmod_search_order_external_last": ("test-depmod/search-order-external-last", "dep", False),
    "depmod_search_order_override": ("test-depmod/search-order-override", "dep", False),
}


@pytest.fixture(scope="session")
def cases(kmod_src) -> dict[str, dict]:
    got = parse_cases((kmod_src / "testsuite" / "test-depmod.c").read_text())
    assert sorted(got) == sorted(V30_CASES)
    for name, (rootfs, what, fail) in V30_CASES.items():
        c = got[name]
        assert (c["rootfs"], c["uname"], c["args"], c["fail"]) == (rootfs, "4.4.4", [], fail), (name, c)
        if what == "err":
            assert c["err"] == f"{rootfs}/correct.txt" and not c["files"]
        else:
            assert c["err"] is None and c["files"] == [
                (f"{rootfs}/lib/modules/4.4.4/correct-modules.{what}", f"{rootfs}/lib/modules/4.4.4/modules.{what}")]
    return got


@pytest.fixture(scope="session")
def playground(kmod_src, headers61) -> dict[str, Path]:
    """The testsuite's modules: its prebuilt ones, and module-playground built by Debian's kbuild."""
    from kmodsim.kbuild import KbuildError, build

    pg = kmod_src / "testsuite" / "module-playground"
    if shutil.which("make") is None:
        need("make")
    try:
        built = Path(build(str(pg), headers61))
    except KbuildError as exc:
        if os.environ.get("KMODSIM_REQUIRE_REAL") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return {"prebuilt": pg / "cache", "kbuild": built}


def build_traps(kmod_src: Path, out: Path, cflags: list[str], what: str) -> tuple[Path, Path]:
    """The testsuite's path.so and uname.so, compiled from the fetched sources with ``cflags``."""
    libs = []
    for name in ("path", "uname"):
        so = out / f"{name}.so"
        p = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", *cflags,
                            f"-DABS_TOP_BUILDDIR=\"{out}/no-build-dir\"", "-I", str(kmod_src),
                            "-I", str(kmod_src / "testsuite"), "-o", str(so),
                            str(kmod_src / "testsuite" / f"{name}.c"), "-ldl"], capture_output=True, text=True)
        if p.returncode != 0:
            need(f"{what} {name}.so: {p.stderr[-500:]}")
        libs.append(so)
    return libs[0], libs[1]


@pytest.fixture(scope="session")
def traps(kmod_src, tmp_path_factory) -> tuple[Path, Path]:
    """The testsuite's path.so and uname.so, compiled from the fetched sources."""
    return build_traps(kmod_src, tmp_path_factory.mktemp("traps"), ["-D_GNU_SOURCE", "-include", "stdbool.h"],
                       "the testsuite's")


def populate(kmod_src: Path, case: dict, modules: Path, features: str, root: Path, script: str | None = None) -> None:
    """populate-modules.sh for one case: rootfs-pristine copied, modules installed, compressed
    with the formats the installed depmod reads (the testsuite asks its config.h the same).
    ``script``: the text of the script that maps the modules (kmod 34's scripts/setup-rootfs.sh);
    kmod 30's populate-modules.sh by default."""
    ts = kmod_src / "testsuite"
    shutil.copytree(ts / "rootfs-pristine" / case["rootfs"], root, symlinks=True)
    if script is None:
        script = (ts / "populate-modules.sh").read_text()
    prefix = case["rootfs"] + "/"
    for dst, mod in re.findall(r'^\s*\["([^"]+)"\]="([^"]+)"', script, re.M):
        if not dst.startswith(prefix):
            continue
        d = root / dst[len(prefix):]
        if dst.endswith("/"):
            d.mkdir(parents=True, exist_ok=True)
            shutil.copy(modules / mod, d / mod)
        else:
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(modules / mod, d)
    for array, feature, suffix, compress in (("gzip_array", "ZLIB", ".gz", gzip.compress),
                                             ("xz_array", "XZ", ".xz", lzma.compress),
                                             ("zstd_array", "ZSTD", ".zst", None)):
        if f"+{feature}" not in features.split():
            continue
        body = re.search(rf"^{array}=\((.*?)\)", script, re.M | re.S).group(1)
        for rel in re.findall(r'"([^"]+)"', body):
            if not rel.startswith(prefix):
                continue
            f = root / rel[len(prefix):]
            data = f.read_bytes()
            if compress is None:
                import zstandard

                compress = zstandard.ZstdCompressor(level=3).compress
            Path(str(f) + suffix).write_bytes(compress(data))
            f.unlink()


def externals_under(root: Path, cfg_dirs: tuple[str, ...] = CFG_DIRS) -> None:
    """``external`` lines of the copied configuration, prefixed with ``root`` (the trap's view)."""
    for d in cfg_dirs:
        for conf in sorted((root / d).glob("*.conf")) if (root / d).is_dir() else ():
            text = conf.read_text()
            conf.write_text(re.sub(r"^(\s*external\s+\S+\s+)(/\S*)", lambda m: m.group(1) + str(root) + m.group(2),
                                   text, flags=re.M))


def cfg_args(root: Path, cfg_dirs: tuple[str, ...] = CFG_DIRS) -> list[str]:
    return [x for d in cfg_dirs for x in ("-C", str(root / d))]


class Run:
    def __init__(self, root: Path, kver: str, p: subprocess.CompletedProcess) -> None:
        self.root, self.p = root, p
        self.dir = root / "lib" / "modules" / kver

    def file(self, name: str) -> bytes | None:
        f = self.dir / name
        return f.read_bytes() if f.exists() else None

    def unrooted(self, data: bytes | None) -> bytes | None:
        """Paths as the trapped depmod prints them: ROOT taken out."""
        return None if data is None else data.replace(str(self.root).encode(), b"")


def run_kmodsim(root: Path, kver: str, cache: Path, version: str = "30", cfg_dirs: tuple[str, ...] = CFG_DIRS,
                args: list[str] | None = None) -> Run:
    """``kmodsim depmod --kmod-version VERSION --bin -b ROOT -C ROOT/<dir>... ARGS KVER``."""
    externals_under(root, cfg_dirs)
    p = subprocess.run(["kmodsim", "depmod", "--kmod-version", version, "--bin", "-b", str(root),
                        *cfg_args(root, cfg_dirs), *(args or ()), kver],
                       capture_output=True, timeout=300, env=dict(os.environ, KMODSIM_CACHE=str(cache)))
    assert b"Traceback" not in p.stderr, p.stderr.decode()[-3000:]
    return Run(root, kver, p)


def run_depmod_b(root: Path, kver: str, depmod: str = DEPMOD, cfg_dirs: tuple[str, ...] = CFG_DIRS,
                 args: list[str] | None = None) -> Run:
    """The real ``depmod`` run as :func:`run_kmodsim` runs kmodsim (``-b``, ``-C``)."""
    externals_under(root, cfg_dirs)
    return Run(root, kver, subprocess.run([depmod, "-b", str(root), *cfg_args(root, cfg_dirs), *(args or ()), kver],
                                          capture_output=True, timeout=300))


def run_depmod_trapped(root: Path, kver: str, args: list[str], traps: tuple[Path, Path], depmod: str = DEPMOD) -> Run:
    """The real ``depmod`` run the testsuite's way: under its path.so and uname.so."""
    env = dict(os.environ, LD_PRELOAD=f"{traps[0]}:{traps[1]}", TESTSUITE_ROOTFS=str(root),
               TESTSUITE_UNAME_R=kver)
    return Run(root, kver, subprocess.run([depmod, *args], capture_output=True, timeout=300, env=env))


# ---------------------------------------------------------------------------------------------
# The cases
# ---------------------------------------------------------------------------------------------

def check_expectations(case: dict, run: Run, ts_root: Path) -> list[str]:
    """The testsuite's own verdict on a run: [] when it passes."""
    bad = []
    if (run.p.returncode != 0) != case["fail"]:
        bad.append(f"exit status {run.p.returncode}, expected_fail={case['fail']}")
    prefix = case["rootfs"] + "/"
    for correct, generated in case["files"]:
        want = (ts_root / correct).read_bytes()
        got = run.unrooted((run.root / generated[len(prefix):]).read_bytes()
                           if (run.root / generated[len(prefix):]).exists() else None)
        if got != want:
            bad.append(f"{generated[len(prefix):]} != {correct}: {got!r} vs {want!r}")
    if case["err"] is not None:
        want = (ts_root / case["err"]).read_bytes()
        if run.unrooted(run.p.stderr) != want:
            bad.append(f"stderr != {case['err']}: {run.p.stderr!r} vs {want!r}")
    return bad


@pytest.mark.parametrize("modules", ["prebuilt", "kbuild"])
@pytest.mark.parametrize("name", list(V30_CASES))
def test_kmod_v30_depmod_case(name, modules, cases, playground, traps, depmod_features, kmod_src, tmp_path):
    case = cases[name]
    kver = case["uname"]
    ts_root = kmod_src / "testsuite" / "rootfs-pristine"
    # three copies whose roots have one length: the .bin of a path-holding file stays comparable
    roots = {who: tmp_path / who for who in ("sim", "dmb", "dmt")}
    for root in roots.values():
        populate(kmod_src, case, playground[modules], depmod_features, root)
    sim = run_kmodsim(roots["sim"], kver, tmp_path / "cache")
    ref = run_depmod_b(roots["dmb"], kver)
    trapped = run_depmod_trapped(roots["dmt"], kver, case["args"], traps)

    check_case(case, sim, ref, trapped, ts_root, TEXT)


def check_case(case: dict, sim: Run, ref: Run, trapped: Run, ts_root: Path, text: tuple[str, ...]) -> None:
    """A case's three oracles: the testsuite's expectations (met by the real depmod run the
    testsuite's way, ``trapped``, and by kmodsim, ``sim``); the real depmod run as kmodsim is
    (``ref``): every file, stderr and exit status, byte for byte; ``trapped``: the ``text`` files,
    stderr and exit status with ROOT taken out, and the ``.bin`` indexes that hold no path."""
    # the harness: real depmod, run the testsuite's way, passes the testsuite's case
    assert check_expectations(case, trapped, ts_root) == []
    # kmodsim passes the testsuite's case
    assert check_expectations(case, sim, ts_root) == []
    # kmodsim == depmod run the same way: every file (.bin included), stderr, exit status
    assert sim.p.returncode == ref.p.returncode
    assert sim.unrooted(sim.p.stderr) == ref.unrooted(ref.p.stderr)
    assert sim.p.stdout == ref.p.stdout == b""
    written = sorted(f.name for f in ref.dir.glob("modules.*")) if ref.dir.is_dir() else []
    assert (sorted(f.name for f in sim.dir.glob("modules.*")) if sim.dir.is_dir() else []) == written
    for f in written:
        assert sim.unrooted(sim.file(f)) == ref.unrooted(ref.file(f)), f
    # kmodsim == depmod run the testsuite's way (ROOT taken out of kmodsim's paths)
    assert sim.p.returncode == trapped.p.returncode
    assert sim.unrooted(sim.p.stderr) == trapped.p.stderr
    assert (sorted(f.name for f in trapped.dir.glob("modules.*")) if trapped.dir.is_dir() else []) == written
    for f in text:
        assert sim.unrooted(sim.file(f)) == trapped.file(f), f
    for f in BINS:
        if sim.file(f) is not None and str(sim.root).encode() not in sim.file(f):
            assert sim.file(f) == trapped.file(f), f
    outputs = set(text + BINS)
    if case["fail"]:
        assert not outputs & set(written)  # depmod writes nothing when it stops on a cycle
    else:
        assert outputs <= set(written)


# ---------------------------------------------------------------------------------------------
# Beyond the cases: the testsuite's modules in other trees
# ---------------------------------------------------------------------------------------------

PLAYGROUND = [f"mod-loop-{c}" for c in "abcdefghijk"] + ["mod-foo", "mod-foo-a", "mod-foo-b", "mod-foo-c",
                                                         "mod-simple"]


@pytest.mark.parametrize("kmod", ["30", "34"])
@pytest.mark.parametrize("seed", range(24))
def test_playground_trees_like_depmod(seed, kmod, request, tmp_path):
    """Random subsets of module-playground's modules (its loops, its chains), in random places,
    with or without a modules.order: kmodsim's stderr, exit status and files equal depmod's.
    Where depmod's cycle report never ends (a walk going round a cycle without its start prints
    ever longer lines), kmodsim prints the same lines up to its cut, says so, and ends. With
    ``kmod`` 34: kmod 34's depmod (conftest's depmod34) and its playground, built by kbuild."""
    import random

    if kmod == "30":
        playground, depmod = request.getfixturevalue("playground"), DEPMOD
        request.getfixturevalue("real_depmod")
    else:
        playground = {"kbuild": request.getfixturevalue("playground34")}
        depmod = request.getfixturevalue("depmod34")
    rnd = random.Random(seed)
    modules = playground[rnd.choice(sorted(playground))]
    names = rnd.sample(PLAYGROUND, rnd.randint(2, len(PLAYGROUND)))
    where = {n: rnd.choice(["kernel", "kernel/x", "extra", "updates"]) for n in names}
    order = rnd.choice([None, "listed", "reversed"])
    dirs = {}
    for who in ("a", "b"):
        d = tmp_path / who / "lib" / "modules" / "4.4.4"
        for n in names:
            (d / where[n]).mkdir(parents=True, exist_ok=True)
            shutil.copy(modules / f"{n}.ko", d / where[n])
        if order:
            lines = [f"{where[n]}/{n}.ko\n" for n in names]
            (d / "modules.order").write_text("".join(lines if order == "listed" else lines[::-1]))
        dirs[who] = d
    argv = ["-C", str(tmp_path / "no-config"), "4.4.4"]
    pb = subprocess.run(["kmodsim", "depmod", "--kmod-version", kmod, "--bin", "--no-cache", "-b", str(tmp_path / "b"),
                         *argv],
                        capture_output=True, timeout=120)
    mine = pb.stderr.replace(str(tmp_path / "b").encode(), b"ROOT")
    cut = b"kmodsim: depmod's cycle report does not end"
    pa = subprocess.Popen([depmod, "-b", str(tmp_path / "a"), *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if cut not in mine:
        _, err = pa.communicate(timeout=60)
        assert pb.returncode == pa.returncode
        assert mine == err.replace(str(tmp_path / "a").encode(), b"ROOT")
        for f in sorted(set(os.listdir(dirs["a"])) | set(os.listdir(dirs["b"]))):
            if f.startswith("modules."):
                assert (dirs["a"] / f).read_bytes() == (dirs["b"] / f).read_bytes(), f
    else:  # depmod's lines, as far as kmodsim went: read that much of its endless report
        head = mine[:mine.index(cut)]
        theirs = b""
        try:
            while len(theirs) < len(head) + 4096:
                chunk = pa.stderr.read1(65536)
                if not chunk:
                    break
                theirs += chunk
        finally:
            pa.kill()
            pa.wait()
        assert pb.returncode == 1
        assert theirs.replace(str(tmp_path / "a").encode(), b"ROOT").startswith(head) and head.count(b"\n") > 100
        assert not (dirs["b"] / "modules.dep").exists()
