"""kmodsim.cache.cached_dir: the one way a cache directory (kbuild builds, unpacked packages, source
trees) comes into being — whole or not at all."""

from __future__ import annotations

import os

import pytest

from kmodsim.cache import cached_dir


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
