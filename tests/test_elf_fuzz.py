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


@settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=mutation, cut=st.one_of(st.none(), st.integers(min_value=0)))
def test_mutated_module(seed, muts, cut):
    data = bytearray(seed)
    # bias mutations towards the headers and tables, where they matter most
    for pos, val in muts:
        data[pos % (len(data) if pos % 3 else 64)] = val
    if cut is not None:
        data = data[: cut % len(data)]
    try:
        m = parse_module(bytes(data), "fuzz.ko")
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
