"""docs/api.md, run: every example of the public API on real inputs (the fixture modules of
tests/kbuild/basic built by Debian's kbuild against Debian 12's 6.1 headers; kmod's depmod; for
verify, Debian's 6.1 kernel under QEMU). Each example asserts against something independent of
kmodsim (the fixtures' C source, kmod's depmod, the real kernel). The blocks run in order in one
namespace, as a reader would type them; a block whose first line says ``# needs QEMU`` runs in the
slow tier only."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest

import kmodsim

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "api.md"
QEMU = "# needs QEMU"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def _run(blocks: list[str], ns: dict) -> None:
    for i, code in enumerate(blocks):
        exec(compile(code, f"{DOC}:block{i + 1}", "exec"), ns)  # noqa: S102 - the documentation's own examples


def _namespace(basic_build, headers61, tmp_path) -> dict:
    return {"BASIC": str(basic_build), "HEADERS": headers61, "TMP": str(tmp_path), "__name__": "docs_api"}


def test_every_public_name_is_documented():
    text = DOC.read_text()
    for name in kmodsim.__all__:
        if name in ("Error", "__version__", "Target"):
            continue
        assert f"## `{name}(" in text, name
        assert getattr(kmodsim, name).__doc__, name  # and has a docstring
    assert callable(kmodsim.check) and callable(kmodsim.depmod) and callable(kmodsim.footprint)


def test_api_examples(basic_build, headers61, tmp_path):
    if shutil.which("depmod") is None:
        pytest.fail("kmod's depmod is the oracle of the depmod example")
    blocks = [b for b in _blocks() if not b.startswith(QEMU)]
    assert len(blocks) >= 10
    _run(blocks, _namespace(basic_build, headers61, tmp_path))


@pytest.mark.slow
def test_api_examples_with_the_real_kernel(basic_build, headers61, debian61, tmp_path):
    if shutil.which("qemu-system-x86_64") is None:
        pytest.fail("qemu-system-x86_64 is needed (scripts/setup.sh installs it)")
    ns = _namespace(basic_build, headers61, tmp_path)
    ns["VMLINUZ"] = debian61.vmlinuz
    blocks = _blocks()
    assert any(b.startswith(QEMU) for b in blocks)
    _run(blocks, ns)
