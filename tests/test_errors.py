"""``kmodsim.Error`` is the root of every error the library raises: every exception class defined in
a kmodsim module derives from it, except the three used only for control flow inside their module."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import kmodsim

INTERNAL = {"kmodsim.dependencies.kmod_view._Bad", "kmodsim.loader.model._Fail",
            "kmodsim.loader.btf_check._Fail"}  # raised and caught in one module


def test_every_error_class_derives_from_kmodsim_error():
    found = []
    for info in pkgutil.walk_packages(kmodsim.__path__, "kmodsim."):
        if info.name.endswith("__main__"):
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append((f"{info.name}.{name}", obj))
    assert len(found) >= 15
    strays = [n for n, c in found if not issubclass(c, (kmodsim.Error, Warning)) and n not in INTERNAL]
    assert strays == []
    assert {n for n, _ in found} >= INTERNAL  # the exemptions still exist (else drop them)


def test_module_error_names_the_file(tmp_path):
    from kmodsim.module import read_image

    p = tmp_path / "x.ko"
    p.write_bytes(b"")
    try:
        read_image(str(p))
    except kmodsim.Error as exc:
        assert exc.path == str(p) and str(exc) == f"{p}: empty file"
    else:
        raise AssertionError("an empty module was read")


def test_library_warns_and_the_cli_says_it_in_one_line(basic_build, tmp_path, monkeypatch):
    """A cache that cannot be written only costs time: the library never prints it, it warns
    (``KmodsimWarning``, which a library user can filter or record); the CLI shows it as one
    ``kmodsim: warning:`` line and still succeeds."""
    import subprocess

    import pytest

    from kmodsim.errors import KmodsimWarning

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    monkeypatch.setenv("KMODSIM_CACHE", str(blocked))
    with pytest.warns(KmodsimWarning, match=r"cannot write cache .*not-a-directory/scan/.*: Not a directory"):
        res = kmodsim.scan([str(basic_build)])
    assert sorted(m.name for m in res.modules) == ["kms_a", "kms_b", "kms_c"]
    p = subprocess.run(["kmodsim", "scan", str(basic_build)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kmodsim: warning: cannot write cache {blocked}/scan/"), lines
