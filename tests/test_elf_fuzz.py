"""Property-based: the ELF/module reader on mutated real modules either parses or raises its own
error (ElfError) — never another exception, never a hang."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmodsim.elf import ElfError, ElfFile
from kmodsim.kernel import vmlinux_exports
from kmodsim.module import parse_module

pytestmark = pytest.mark.kbuild


@pytest.fixture(scope="module")
def seed(basic_build) -> bytes:
    return (basic_build / "kms_b.ko").read_bytes()


mutation = st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)),
                    min_size=1, max_size=24)


def _mutated(seed: bytes, muts, cut) -> bytes:
    """The seed with bytes overwritten — biased towards the headers and tables, where they matter
    most (one mutation in three lands in the first 64 bytes) — then cut, if ``cut`` is given."""
    data = bytearray(seed)
    for pos, val in muts:
        data[pos % (len(data) if pos % 3 else 64)] = val
    if cut is not None:
        data = data[: cut % len(data)]
    return bytes(data)


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutation, cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_mutated_module(seed, muts, cut):
    try:
        m = parse_module(_mutated(seed, muts, cut), "fuzz.ko")
    except ElfError:
        return
    assert isinstance(m.exports, list) and isinstance(m.imports, list)


@settings(max_examples=200, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutation)
def test_mutated_section_headers(seed, muts):
    data = bytearray(seed)
    shoff = int.from_bytes(data[0x28:0x30], "little")
    span = len(data) - shoff
    for pos, val in muts:
        data[shoff + pos % span] = val
    try:
        parse_module(bytes(data), "fuzz.ko")
    except ElfError:
        pass


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=512))
def test_random_bytes_with_elf_magic(data):
    for blob in (data, b"\x7fELF" + data, b"\x7fELF\x02\x01\x01" + data):
        try:
            e = ElfFile(blob)
            list(e.symbols())
            vmlinux_exports(e)
        except ElfError:
            pass


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutation, cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_file_image_reads_what_bytes_read(seed, muts, cut, tmp_path_factory):
    """The hot path reads files on demand (FileImage: preads, a cached tail block); it must see
    exactly what a reader of the whole file in memory sees, errors included."""
    from kmodsim.module import FileImage, open_image, parse_record

    data = bytearray(seed)
    for pos, val in muts:
        data[pos % len(data)] = val
    if cut is not None:
        data = data[: max(1, cut % len(data))]
    path = tmp_path_factory.mktemp("img") / "m.ko"
    path.write_bytes(bytes(data))

    def outcome(buf):
        try:
            return parse_record(buf, "m.ko")
        except ElfError as exc:
            return f"ElfError: {exc}"

    want = outcome(bytes(data))
    if data[:6].startswith((b"\xfd7zXZ", b"\x28\xb5\x2f\xfd", b"\x1f\x8b")):
        return  # a compressed file: not read on demand
    default = FileImage.TAIL
    try:
        for tail in (default, 4096, 256):  # small tails: slices across the tail's start, preads
            FileImage.TAIL = tail
            img, fmt, size, _key = open_image(str(path))
            try:
                assert isinstance(img, FileImage) and fmt == "" and size == len(data)
                assert outcome(img) == want, f"tail {tail}"
            finally:
                img.close()
    finally:
        FileImage.TAIL = default


# -- depmod's own decoder (kmodsim.depmod.kmod_view: libkmod's view of a module, decoded by hand) --
# It must give a record or its own _Bad for every input: read_record reports any other exception
# as "unreadable module (<type>: ...)", which would hide a decoder bug as a bad module.


def _kmod_view_outcome(data: bytes) -> list:
    from kmodsim.depmod.kmod_view import EMPTY_RECORD, _Bad, kmod_view

    out = []
    for crcs in (True, False):
        try:
            rec = kmod_view(data, crcs)
        except _Bad as exc:
            out.append(f"bad: {exc}")
            continue
        assert isinstance(rec, tuple) and len(rec) == len(EMPTY_RECORD) and rec[-1] == ""
        out.append(rec)
    return out


def _symtab_span(data: bytes) -> tuple[int, int]:
    e = ElfFile(data)
    s = e.section(".symtab")
    t = e.section(".strtab")
    lo = min(s.offset, t.offset)
    return lo, max(s.offset + s.size, t.offset + t.size) - lo


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutation, cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_kmod_view_mutated_module(seed, muts, cut):
    _kmod_view_outcome(_mutated(seed, muts, cut))


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutation, where=st.sampled_from(["shdr", "symtab"]))
def test_kmod_view_mutated_tables(seed, muts, where):
    """Mutations inside the section header table, or inside .symtab/.strtab (the __crc_ symbols,
    the undefined ones, the name offsets kmod_view follows)."""
    data = bytearray(seed)
    if where == "shdr":
        lo = int.from_bytes(data[0x28:0x30], "little")
        span = len(data) - lo
    else:
        lo, span = _symtab_span(seed)
    for pos, val in muts:
        data[lo + pos % span] = val
    _kmod_view_outcome(bytes(data))


@settings(max_examples=200, deadline=2000)
@given(data=st.binary(min_size=0, max_size=1024))
def test_kmod_view_random_bytes(data):
    for blob in (data, b"\x7fELF" + data, b"\x7fELF\x02\x01\x01" + data, b"\x7fELF\x01\x02\x01" + data):
        _kmod_view_outcome(blob)


def test_kmod_view_reads_the_seed_as_depmod_does(seed, basic_build):
    """The fuzzed decoder is the one depmod's outputs come from: on the unmutated seed it finds the
    exports and CRCs of Module.symvers and every undefined symbol readelf lists."""
    import subprocess
    from array import array

    rec = _kmod_view_outcome(seed)[0]
    crcs = array("Q")
    crcs.frombytes(rec[1])
    exports = dict(zip([n.decode() for n in rec[0].split(b"\0")[:-1]], crcs, strict=True))
    rows = [ln.split("\t") for ln in (basic_build / "Module.symvers").read_text().splitlines()]
    symvers = {r[1]: int(r[0], 16) for r in rows if r[2].endswith("/kms_b")}
    assert symvers and exports == symvers
    out = subprocess.run(["readelf", "-sW", basic_build / "kms_b.ko"], capture_output=True, text=True,
                         check=True).stdout
    undefined = {f[7] for f in map(str.split, out.splitlines()) if len(f) == 8 and f[6] == "UND"}
    assert undefined and undefined <= {n.decode() for n in rec[3].split(b"\0")[:-1]}
