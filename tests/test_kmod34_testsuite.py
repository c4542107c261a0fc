"""kmod 34's own depmod testsuite (``testsuite/test-depmod.c`` of kmod 34.2) run against ``kmodsim
depmod --kmod-version 34``, beside kmod 30's (tests/test_kmod_testsuite.py).

The testsuite and the oracle come from Debian 13's (trixie) ``kmod`` source package, fetched at
test time through a private apt state (:func:`kmodsim.debian.upstream_source`); the oracle is that
source built with meson into ``~/.cache/kmodsim/kmod-34.2`` (:func:`kmodsim.kmod_build.build_kmod`),
never installed over the system's kmod 30. None of kmod's code or files is in this repository.

kmod 34 ships no prebuilt modules: ``module-playground`` is built by Debian's kbuild against the
6.1 headers. Each case of test-depmod.c is read from the file itself — its root file system (a copy
of ``rootfs-pristine/test-depmod/<case>`` populated as ``scripts/setup-rootfs.sh`` maps modules,
compressed as the built depmod's features allow), its ``uname -r``, its arguments
(``EXEC_DEPMOD(...)``: ``--outdir /outdir/``, ``-m /foobar``, ``-m foobar2``) and its expected
outputs. kmodsim runs ``kmodsim depmod --kmod-version 34 --bin -b ROOT -C ROOT/<dir>...`` with the
case's arguments (an absolute ``--outdir`` put under ROOT, as the testsuite's ``path.so`` puts it)
and its results are compared with three oracles: the testsuite's expectations; kmod 34's depmod run
the same way (every file, ``.bin`` included, stderr, exit status, byte for byte); kmod 34's depmod
run the testsuite's way, under ``path.so`` and ``uname.so`` compiled from the fetched testsuite
(which must itself pass the testsuite's checks).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_kmod_testsuite import (
    Run,
    _c_string,
    build_traps,
    case_of,
    check_case,
    populate,
    run_depmod_b,
    run_depmod_trapped,
    run_kmodsim,
)

pytestmark = pytest.mark.kbuild

# kmod 34's default depmod.d directories as Debian builds it (DISTCONFDIR /usr/lib, 8463809)
CFG_DIRS = ("etc/depmod.d", "run/depmod.d", "usr/local/lib/depmod.d", "usr/lib/depmod.d", "lib/depmod.d")
TEXT = ("modules.dep", "modules.alias", "modules.softdep", "modules.weakdep", "modules.symbols",
        "modules.devname")

# What test-depmod.c of kmod 34.2 holds: (rootfs, depmod's arguments, expected fail); the parse is
# checked against it, so that a changed testsuite is noticed rather than half-run.
V34_CASES = {
    "depmod_modules_order_for_compressed": ("test-depmod/modules-order-compressed", [], False),
    "depmod_modules_outdir": ("test-depmod/modules-outdir", ["--outdir", "/outdir/"], False),
    "depmod_search_order_simple": ("test-depmod/search-order-simple", [], False),
    "depmod_another_moddir": ("test-depmod/another-moddir", ["-m", "/foobar"], False),
    "depmod_another_moddir_relative": ("test-depmod/another-moddir", ["-m", "foobar2"], False),
    "depmod_search_order_same_prefix": ("test-depmod/search-order-same-prefix", [], False),
    "depmod_detect_loop": ("test-depmod/detect-loop", [], True),
    "depmod_search_order_external_first": ("test-depmod/search-order-external-first", [], False),
    "depmod_search_order_external_last": ("test-depmod/search-order-external-last", [], False),
    "depmod_search_order_override": ("test-depmod/search-order-override", [], False),
    "depmod_check_weakdep": ("test-depmod/check-weakdep", [], False),
}
MODULE_DIRECTORY = "/lib/modules"  # the build's moduledir (kmodsim.kmod_build), as Debian's


@pytest.fixture(scope="session")
def features34(depmod34) -> str:
    return subprocess.run([depmod34, "--version"], capture_output=True, text=True).stdout.splitlines()[1]


def parse_cases34(test_depmod_c: str) -> dict[str, dict]:
    """Every DEFINE_TEST of kmod 34's test-depmod.c: rootfs, uname, depmod's arguments (its
    ``EXEC_DEPMOD(...)``), expected files [(correct, generated)], expected stderr, must-fail."""
    src = re.sub(r"/\*.*?\*/", "", test_depmod_c, flags=re.S)
    src = re.sub(r"\\\n", " ", src)  # macro continuation lines
    macros = {"TESTSUITE_ROOTFS": "", "MODULE_DIRECTORY": MODULE_DIRECTORY, "TOOLS_DIR": ""}
    for name, expr in re.findall(r"^#define\s+(\w+)\s+(.+)$", src, re.M):
        try:
            macros[name] = _c_string(expr, macros)
        except KeyError:
            pass
    bodies = dict(re.findall(r"static noreturn int (\w+)\(const struct test \*t\)\s*\{(.*?)\n\}", src, re.S))
    cases = {}
    for name, spec in re.findall(r"DEFINE_TEST\((\w+),(.*?)^\s*\}\);", src, re.S | re.M):
        call = re.search(r"EXEC_DEPMOD\((.*?)\);", bodies[name], re.S)
        assert call is not None, name
        args = [_c_string(a, macros) for a in call.group(1).split(",") if a.strip()]
        files = []
        if ".files" in spec:
            for a, b in re.findall(r"\{\s*([^{},]+?),\s*([^{},]+?)\s*\}", spec.split(".files", 1)[1]):
                a, b = _c_string(a, macros), _c_string(b, macros)
                files.append((a, b) if os.path.basename(a).startswith("correct") else (b, a))
        cases[name] = case_of(spec, macros, args, files)
    return cases


@pytest.fixture(scope="session")
def cases34(kmod34_src) -> dict[str, dict]:
    got = parse_cases34((kmod34_src / "testsuite" / "test-depmod.c").read_text())
    assert sorted(got) == sorted(V34_CASES)
    for name, (rootfs, argv, fail) in V34_CASES.items():
        c = got[name]
        assert (c["rootfs"], c["uname"], c["args"], c["fail"]) == (rootfs, "4.4.4", argv, fail), (name, c)
        assert (c["err"] is not None) == fail and (not c["files"]) == fail, c
    return got


@pytest.fixture(scope="session")
def traps34(kmod34_src, depmod34, tmp_path_factory) -> tuple[Path, Path]:
    """kmod 34's testsuite path.so and uname.so, compiled from the fetched sources with the build's
    config.h (which says which libc entry points to trap: open64, stat64, ...)."""
    config_h = Path(depmod34).parent.parent / "config.h"
    return build_traps(kmod34_src, tmp_path_factory.mktemp("traps34"), ["-include", str(config_h)],
                       "kmod 34's testsuite")


def populate34(kmod_src: Path, case: dict, modules: Path, features: str, root: Path) -> None:
    """scripts/setup-rootfs.sh for one case (MODULE_DIRECTORY /lib/modules, sysconfdir /etc):
    rootfs-pristine copied, modules installed, compressed with the formats the depmod reads."""
    script = (kmod_src / "scripts" / "setup-rootfs.sh").read_text().replace("$MODULE_DIRECTORY", MODULE_DIRECTORY)
    populate(kmod_src, case, modules, features, root, script)


def rooted_args(root: Path, args: list[str]) -> list[str]:
    """The case's arguments as the trap sees them: an absolute --outdir/-o put under ROOT (-m is
    always below the base: no change)."""
    out = list(args)
    for i, a in enumerate(out[:-1]):
        if a in ("--outdir", "-o") and out[i + 1].startswith("/"):
            out[i + 1] = str(root) + out[i + 1]
    return out


def output_dir(root: Path, case: dict, kver: str) -> Path:
    """Where the case's depmod writes: OUTDIR or the base, then the module directory, then KVER."""
    args = case["args"]
    base, moddir = root, MODULE_DIRECTORY
    for i, a in enumerate(args[:-1]):
        if a in ("--outdir", "-o"):
            base = root / args[i + 1].lstrip("/")
        elif a in ("-m", "--moduledir"):
            moddir = args[i + 1]
    return base / moddir.lstrip("/") / kver


def _at_output(r: Run, case: dict) -> Run:
    r.dir = output_dir(r.root, case, case["uname"])
    return r


def run_kmodsim34(root: Path, case: dict, cache: Path) -> Run:
    return _at_output(run_kmodsim(root, case["uname"], cache, "34", CFG_DIRS, rooted_args(root, case["args"])), case)


def run_depmod34_b(depmod: str, root: Path, case: dict) -> Run:
    return _at_output(run_depmod_b(root, case["uname"], depmod, CFG_DIRS, rooted_args(root, case["args"])), case)


def run_depmod34_trapped(depmod: str, root: Path, case: dict, traps: tuple[Path, Path]) -> Run:
    return _at_output(run_depmod_trapped(root, case["uname"], case["args"], traps, depmod), case)


@pytest.mark.parametrize("name", list(V34_CASES))
def test_kmod_v34_depmod_case(name, cases34, playground34, traps34, depmod34, features34, kmod34_src, tmp_path):
    case = cases34[name]
    ts_root = kmod34_src / "testsuite" / "rootfs-pristine"
    roots = {who: tmp_path / who for who in ("sim", "dmb", "dmt")}  # one length: .bin files comparable
    for root in roots.values():
        populate34(kmod34_src, case, playground34, features34, root)
    sim = run_kmodsim34(roots["sim"], case, tmp_path / "cache")
    ref = run_depmod34_b(depmod34, roots["dmb"], case)
    trapped = run_depmod34_trapped(depmod34, roots["dmt"], case, traps34)

    check_case(case, sim, ref, trapped, ts_root, TEXT)  # kmod 34's text files: modules.weakdep too
