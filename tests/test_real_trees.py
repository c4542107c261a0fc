"""Acceptance on Debian's real kernels: every module's exports equal its Module.symvers rows
(name, GPL, namespace, CRC); every module's imports equal the undefined symbols ``readelf -s``
lists, with the CRCs of ``__versions`` as pyelftools reads them.

6.1 (4023 plain .ko) runs in CI; 6.12 (4230 .ko.xz) with KMODSIM_TEST_612=1.
"""

from __future__ import annotations

import os
import subprocess
import tempfile

import pytest

from kmodsim.kernel import Kernel
from kmodsim.tree import find_modules, scan

import oracles

pytestmark = [pytest.mark.realkernel, pytest.mark.slow]


def _check_tree(kernel_pkg, expect_count: int | None):
    root = kernel_pkg.modules_dir
    rows = oracles.symvers(os.path.join(kernel_pkg.headers_dir, "Module.symvers"))
    res = scan([root], use_cache=False)
    assert res.errors == []
    mods = res.modules
    assert [(m.path, m.name, len(m.exports), len(m.imports)) for m in mods] == res.summaries
    if expect_count is not None:
        assert len(mods) == expect_count
    # exports: per module, the Module.symvers rows whose module column is the path below kernel/
    exported_modules = {mod for mod in rows if mod != "vmlinux"}
    seen = set()
    for m in mods:
        rel = os.path.relpath(m.path, os.path.join(root, "kernel"))
        key = rel[: rel.index(".ko")]
        got = {e.name: (e.crc, e.gpl, e.namespace) for e in m.exports}
        assert got == rows.get(key, {}), m.path
        if got:
            seen.add(key)
    assert seen == exported_modules  # no Module.symvers module is missing from the tree
    # imports: readelf's UND symbols, CRCs from pyelftools' view of __versions
    with tempfile.TemporaryDirectory() as tmp:
        plain = {}
        for m in mods:
            if m.path.endswith(".xz"):
                p = os.path.join(tmp, f"{len(plain)}.ko")
                with open(p, "wb") as f:
                    f.write(oracles.elf_bytes(m.path))
                plain[m.path] = p
            else:
                plain[m.path] = m.path
        syms = oracles.readelf_symbols(list(plain.values()))
        n_imports = 0
        for m in mods:
            want = oracles.undefined(syms[plain[m.path]])
            assert [i.name for i in m.imports] == want, m.path
            vers = oracles.versions(open(plain[m.path], "rb").read())
            assert [i.crc for i in m.imports] == [vers.get(s) for s in want], m.path
            n_imports += len(want)
    return mods, n_imports


def test_debian_61_every_module(debian61):
    mods, n_imports = _check_tree(debian61, 4023)
    assert sum(len(m.exports) for m in mods) == 14180
    assert n_imports > 100_000


def test_debian_612_every_module(debian612):
    _check_tree(debian612, 4230)


def test_debian_510_every_module_absolute_crcs(debian510):
    """Debian bullseye's 5.10: before 5.19 a CRC is the value of an absolute ``__crc_<S>`` symbol
    (SHN_ABS), not a u32 in ``__kcrctab`` — the other CRC layout, on a whole real tree."""
    mods, n_imports = _check_tree(debian510, None)
    assert len(mods) > 3000 and n_imports > 100_000
    assert sum(len(m.exports) for m in mods) > 10_000
    # the layout really is the absolute one: readelf shows __crc_ symbols as ABS, no __kcrctab data
    kvm = next(m.path for m in mods if m.path.endswith("/kvm.ko"))
    syms = oracles.readelf_symbols([kvm])[kvm]
    crc_ndx = {ndx for _t, _b, ndx, name in syms if name.startswith("__crc_")}
    assert crc_ndx == {"ABS"}, crc_ndx
    k = Kernel.load(debian510.headers_dir)
    assert k.vermagic == subprocess.run(["modinfo", "-F", "vermagic", kvm], capture_output=True, text=True,
                                        check=True).stdout.rstrip("\n")


def test_vermagic_computed_from_headers_equals_every_module(debian61):
    """include/linux/vermagic.h computed from .config + UTS_RELEASE vs modinfo(8) on real modules."""
    k = Kernel.load(debian61.headers_dir)
    paths = find_modules(debian61.modules_dir)
    out = subprocess.run(["modinfo", "-F", "vermagic", *paths], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert len(out) == len(paths) == 4023
    assert set(out) == {k.vermagic}  # trailing space included
    assert k.vermagic.endswith("modversions ")
    assert k.release == debian61.kver and k.machine == 62


def test_vmlinuz_exports_equal_module_symvers(debian61):
    """Exports read from the ksymtab of Debian's vmlinuz payload vs the headers' Module.symvers."""
    k = Kernel.load(debian61.vmlinuz)
    rows = oracles.symvers(os.path.join(debian61.headers_dir, "Module.symvers"))["vmlinux"]
    assert {e.name: (e.crc, e.gpl, e.namespace) for e in k.exports.values()} == rows
    assert k.release == debian61.kver
    assert k.vermagic == Kernel.load(debian61.headers_dir).vermagic


def test_discovery_matches_modules_order(debian61):
    """Every module of modules.order is found, in that order, first (depmod_modules_sort)."""
    root = debian61.modules_dir
    order = [line.strip() for line in open(os.path.join(root, "modules.order")) if line.strip()]
    found = [os.path.relpath(p, root) for p in find_modules(root)]
    present = [o for o in order if os.path.exists(os.path.join(root, o))]
    assert found[: len(present)] == present
    assert len(found) == len(present) == 4023
