"""One module model (issue 15, item 1): named, versioned records whose version follows their
fields, the caches that rely on that version alone, and readers that read each file once.

Expected values come from the real fixture modules (built by kbuild) and readelf, not from kmodsim."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from kmodsim.dependencies.kmod_view import RECORD_SCHEMA as KMOD_SCHEMA
from kmodsim.dependencies.kmod_view import RECORD_VERSION as KMOD_VERSION
from kmodsim.dependencies.kmod_view import KmodRecord
from kmodsim.module import RECORD_SCHEMA, RECORD_VERSION, ModuleRecord, read_module
from kmodsim.scan_cache import ScanCache
from kmodsim.tree import scan

from conftest import settle_timestamps


def test_module_record_version_is_derived_from_its_fields():
    assert RECORD_VERSION == (RECORD_SCHEMA, ModuleRecord._fields)
    assert KMOD_VERSION == (KMOD_SCHEMA, KmodRecord._fields)


def test_record_round_trip_by_name(basic_build):
    m = read_module(str(basic_build / "kms_b.ko"))
    rec = m.to_record()
    assert isinstance(rec, ModuleRecord) and rec.path == m.path and rec.name == "kms_b"
    again = ModuleRecord.loads(rec.dumps())
    assert again == rec and type(again) is ModuleRecord
    with pytest.raises(ValueError):
        ModuleRecord.of(tuple(rec)[:-1])  # a record of another layout is refused, not misread


@pytest.mark.parametrize("reader", ["scan", "depmod"])
def test_cache_of_another_record_version_is_rebuilt(basic_build, tmp_path, reader):
    """A cache written for records with other fields (as a record that gains a field would see
    the files of the version before) is discarded and rebuilt: nothing but the fields decides."""
    kdir = tmp_path / "lib" / "modules" / "6.1.0-t" / "kernel"
    kdir.mkdir(parents=True)
    for n in ("kms_a", "kms_b", "kms_c"):
        shutil.copy(basic_build / f"{n}.ko", kdir / f"{n}.ko")
    settle_timestamps()  # the files' ctime before the run's second: trusted by the racy-clean rule
    cache = str(tmp_path / "cache")
    root = str(kdir.parent)
    if reader == "scan":
        schema = RECORD_VERSION
        assert scan([root], cache_dir=cache).parsed == 3
        assert scan([root], cache_dir=cache).cached == 3
    else:
        from kmodsim.dependencies.plan import cache_dir_for, load_records, plan

        schema = KMOD_VERSION
        pl = plan(str(tmp_path), "6.1.0-t")
        first = load_records(pl, jobs=1, cache_dir=cache)
        assert all(isinstance(r, KmodRecord) for r in first.values())
        root, cache = pl.cache_root, cache_dir_for(cache)
    ours = ScanCache(root, cache, schema)
    ours.load()
    assert len(ours.entries) == 3 and not ours.problem
    grown = (schema[0], (*schema[1], "a_new_field"))
    theirs = ScanCache(root, cache, grown)
    assert theirs.file != ours.file  # the version is in the name: two versions do not evict each other
    os.replace(ours.file, theirs.file)  # the file of our records, found by a reader of grown ones
    theirs.load()
    assert theirs.entries == {} and "records of version" in theirs.problem


def test_loader_reads_a_module_once(basic_build, monkeypatch):
    """The loader's image (record, symbols, __versions, layout input) comes from one open and one
    parse of the file; its footprint does not reopen it."""
    from kmodsim import elf, module
    from kmodsim.loader import image

    opened: list[str] = []
    parsed: list[int] = []
    real_open, real_init = os.open, elf.ElfFile.__init__

    def counting_open(path, *a, **kw):
        if str(path).endswith(".ko"):
            opened.append(str(path))
        return real_open(path, *a, **kw)

    def counting_init(self, buf, strict=True):
        parsed.append(1)
        real_init(self, buf, strict)

    monkeypatch.setattr(module.os, "open", counting_open)
    monkeypatch.setattr(elf.ElfFile, "__init__", counting_init)
    path = str(basic_build / "kms_c.ko")
    img = image.load_image(path)
    fp = img.footprint("6.1")
    assert opened == [path] and len(parsed) == 1
    assert fp is not None and fp.size > 0
    # the imports are the undefined symbols readelf lists, in symbol-table order
    out = subprocess.run(["readelf", "-sW", path], capture_output=True, text=True, check=True).stdout
    und = [f[7] for f in map(str.split, out.splitlines()) if len(f) == 8 and f[6] == "UND"]
    assert [n for n, _weak in img.imports] == und


def test_footprint_reads_a_module_once(basic_build, monkeypatch):
    from kmodsim import memory_layout, module

    opened: list[str] = []
    real_open = os.open

    def counting_open(path, *a, **kw):
        if str(path).endswith(".ko"):
            opened.append(str(path))
        return real_open(path, *a, **kw)

    monkeypatch.setattr(module.os, "open", counting_open)
    path = str(basic_build / "kms_a.ko")
    m, inp = memory_layout.read_input(path)
    assert opened == [path] and m.name == "kms_a"
    assert memory_layout.layout(inp, "6.1", path, m.name) == memory_layout.module_footprint(path, "6.1", m.name)
