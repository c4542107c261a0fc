"""kmodsim.cache: the one way a cache directory (kbuild builds, unpacked packages, source trees)
comes into being — whole or not at all — and the one checked result file (depmod's memo, check's
findings): any doubt reads as "not cached"."""

from __future__ import annotations

import os

import pytest

from kmodsim.cache import cached_dir, load_checked, store_checked


def test_made_once(tmp_path):
    calls = []

    def fill(tmp: str) -> None:
        calls.append(tmp)
        with open(os.path.join(tmp, "f"), "w") as f:
            f.write("x")

    dest = str(tmp_path / "c" / "d")
    assert cached_dir(dest, fill) == dest
    assert cached_dir(dest, fill) == dest
    assert len(calls) == 1 and not os.path.exists(calls[0])  # the temporary directory was renamed
    assert open(os.path.join(dest, "f")).read() == "x"
    assert sorted(os.listdir(tmp_path / "c")) == ["d"]


def test_interrupted_fill_leaves_nothing(tmp_path):
    def fill(tmp: str) -> None:
        with open(os.path.join(tmp, "half"), "w") as f:
            f.write("x")
        raise KeyboardInterrupt

    dest = str(tmp_path / "d")
    with pytest.raises(KeyboardInterrupt):
        cached_dir(dest, fill)
    assert os.listdir(tmp_path) == []  # neither dest nor a temporary directory


def test_two_runs_racing_keep_the_first(tmp_path):
    dest = str(tmp_path / "d")

    def first(tmp: str) -> None:  # while this run fills, another one finishes
        with open(os.path.join(tmp, "who"), "w") as f:
            f.write("second")
        os.mkdir(dest)
        with open(os.path.join(dest, "who"), "w") as f:
            f.write("first")
        with open(os.path.join(dest, "more"), "w") as f:
            f.write("non-empty, so the rename fails")

    assert cached_dir(dest, first) == dest
    assert open(os.path.join(dest, "who")).read() == "first"
    assert sorted(os.listdir(tmp_path)) == ["d"]


def test_checked_result_round_trip_and_every_doubt(tmp_path):
    path = str(tmp_path / "r" / "x.result")
    store_checked(path, b"KMSTEST1", b"key-1", b"payload \0 bytes")
    assert load_checked(path, b"KMSTEST1", b"key-1") == b"payload \0 bytes"
    assert load_checked(path, b"KMSTEST1", b"key-2") is None  # another key's answer
    assert load_checked(path, b"KMSTEST2", b"key-1") is None  # another format
    assert load_checked(str(tmp_path / "missing"), b"KMSTEST1", b"key-1") is None
    blob = open(path, "rb").read()
    for cut in (0, 5, 13, len(blob) - 1):  # torn files
        open(path, "wb").write(blob[:cut])
        assert load_checked(path, b"KMSTEST1", b"key-1") is None
    for i in range(12, len(blob)):  # one flipped byte anywhere after the checksum
        open(path, "wb").write(blob[:i] + bytes([blob[i] ^ 0x40]) + blob[i + 1:])
        assert load_checked(path, b"KMSTEST1", b"key-1") is None, i
    with pytest.raises(ValueError):
        store_checked(path, b"short", b"k", b"")
