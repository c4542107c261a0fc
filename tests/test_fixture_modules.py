"""The reader on real modules built by Debian's kbuild (tests/kbuild/basic), against independent
readers: pyelftools, readelf and the Module.symvers kbuild wrote."""

from __future__ import annotations

import io

import pytest
from elftools.elf.elffile import ELFFile

from kmodsim.module import read_module

import oracles

pytestmark = pytest.mark.kbuild

NAMES = ("kms_a", "kms_b", "kms_c")


@pytest.fixture(scope="module")
def mods(basic_build):
    return {n: read_module(str(basic_build / f"{n}.ko")) for n in NAMES}


def test_exports_equal_kbuild_module_symvers(basic_build, mods):
    rows = oracles.symvers(str(basic_build / "Module.symvers"))
    for n, m in mods.items():
        got = {e.name: (e.crc, e.gpl, e.namespace) for e in m.exports}
        want = {sym: v for mod, syms in rows.items() if mod.endswith("/" + n) or mod == n
                for sym, v in syms.items()}
        assert got == want, n
    # the fixture's intent, spelled out
    a = {e.name: e for e in mods["kms_a"].exports}
    assert set(a) == {"kms_a_plain", "kms_a_gpl", "kms_a_ns", "kms_a_counter"}
    assert not a["kms_a_plain"].gpl and a["kms_a_gpl"].gpl
    assert a["kms_a_ns"].namespace == "KMSIM_NS" and a["kms_a_ns"].gpl
    assert mods["kms_c"].exports == []


def test_imports_equal_readelf_undefined_with_versions_crcs(basic_build, mods):
    paths = [str(basic_build / f"{n}.ko") for n in NAMES]
    syms = oracles.readelf_symbols(paths)
    for p, n in zip(paths, NAMES, strict=True):
        m = mods[n]
        vers = oracles.versions(open(p, "rb").read())
        assert [i.name for i in m.imports] == oracles.undefined(syms[p])
        assert {i.name: i.crc for i in m.imports} == {s: vers.get(s) for s in oracles.undefined(syms[p])}
    b = {i.name for i in mods["kms_b"].imports}
    assert {"kms_a_plain", "kms_a_gpl", "kms_a_ns", "kms_a_counter"} <= b
    weak = [i for i in mods["kms_c"].imports if i.weak]
    assert [i.name for i in weak] == ["kms_b_twice"]


def test_sections_and_modinfo_equal_pyelftools(basic_build, mods):
    for n in NAMES:
        data = open(basic_build / f"{n}.ko", "rb").read()
        elf = ELFFile(io.BytesIO(data))
        want = [(s.name, s["sh_type"], s["sh_flags"], s["sh_size"], s["sh_addralign"])
                for s in elf.iter_sections()][1:]
        got = [(s.name, s.type, s.flags, s.size, s.align) for s in mods[n].sections]
        # pyelftools names section types; compare the names through its own table
        assert [g[0] for g in got] == [w[0] for w in want]
        assert [g[2:] for g in got] == [w[2:] for w in want]
        assert [f"{k}={v}" for k, v in mods[n].modinfo] == oracles.modinfo(data)
        # each key's values found in the record's text, as the oracle's entries split them
        pairs = [kv.partition("=")[::2] for kv in oracles.modinfo(data)]
        for key in {k for k, _v in pairs} | {"no_such_key", "licens", "e"}:
            values = [v for k, v in pairs if k == key]
            assert mods[n].info(key) == values
            assert mods[n].info1(key, "-") == (values[0] if values else "-")
        assert mods[n].machine == 62 and mods[n].ei_class == 2 and mods[n].little_endian
        assert mods[n].signature is None


def test_modinfo_views(mods):
    a, b, c = mods["kms_a"], mods["kms_b"], mods["kms_c"]
    params = {p.name: (p.type, p.description) for p in a.params}
    assert params == {"count": ("int", "how many things to count"), "label": ("charp", "a label"),
                      "verbose": ("bool", "")}
    assert sorted(a.aliases) == ["kmsim-provider", "kmsim:a*"]
    assert a.softdeps == ["pre: kms_c"]
    assert b.depends == ["kms_a"] and b.import_ns == ["KMSIM_NS"]
    assert c.license == "Dual BSD/GPL"
    assert a.vermagic.endswith(" ")  # the kernel's VERMAGIC_STRING keeps its trailing space
    assert a.name == "kms_a"
