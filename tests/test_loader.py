"""The loader model (``kmodsim load``) against the real kernel (``kmodsim verify``).

* slow + realkernel: every scenario of tests/scenarios is run on Debian's 6.1 kernel under QEMU
  (one boot per scenario, two at a time) and the model must equal the kernel on every step: errno,
  every message line, the modules (name, refcnt, users, state, taints), the formed modules' sizes
  and the taint mask; the same on Debian's 6.12 kernel with KMODSIM_TEST_612=1.
* fast: the model against the real kernel's recorded answers for the kernel Debian's archive serves
  today (tests/scenarios/recorded/<release>/, written by ``workspace.py --record``; a scenario with no
  recording there is recorded by the test run itself under QEMU into the cache,
  ``$KMODSIM_CACHE/loader-recorded/<image>/``, or into the repository with KMODSIM_RECORD_REPO=1; it
  cannot be had -> skipped, or failed under KMODSIM_REQUIRE_REAL=1); the model against every older
  release's recordings in tests/scenarios/recorded/ (regression data: the workspace is rebuilt
  against that release's headers); the parameter parser, script errors, the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import TESTS, need, run_kmodsim

sys.path.insert(0, str(TESTS / "scenarios"))
import workspace as ws_mod  # noqa: E402

SCENARIOS = ws_mod.SCENARIOS


def _vmlinuz(debian61) -> str:
    if shutil.which("qemu-system-x86_64") is None:
        need("qemu-system-x86_64 (apt-get install qemu-system-x86)")
    if not os.path.isfile("/bin/busybox") and not os.path.isfile("/usr/bin/busybox"):
        need("busybox (apt-get install busybox-static)")
    return debian61.vmlinuz


# -- the real kernel ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kernel_runs(workspace, kernel61, debian61) -> dict[str, dict]:
    """Every scenario on the real 6.1 kernel (one boot each, two in parallel)."""
    from kmodsim.oracle import OracleError

    vmlinuz = _vmlinuz(debian61)

    def one(script: Path) -> dict:
        try:
            return ws_mod.kernel_run(script, workspace, kernel61, vmlinuz)
        except OracleError as exc:
            pytest.fail(f"{script.name}: {exc}")

    with ThreadPoolExecutor(2) as ex:
        return dict(zip((s.stem for s in SCENARIOS), ex.map(one, SCENARIOS), strict=True))


@pytest.mark.realkernel
@pytest.mark.slow
def test_model_equals_kernel_on_every_step(workspace, kernel61, kernel_runs):
    from kmodsim.loader.run import compare
    from kmodsim.render.loader import run_from_json

    assert len(SCENARIOS) >= 20
    report = {}
    for script in SCENARIOS:
        real = kernel_runs[script.stem]
        assert real["steps"] and all(s["tainted"] is not None for s in real["steps"])
        # the do_init_module() probe ran (so compare() also checks every formed module's sizes)
        assert all(s["formed"] is not None for s in real["steps"]), real["notes"]
        diffs = compare(ws_mod.model_run(script, workspace, kernel61), run_from_json(real))
        if diffs:
            report[script.name] = diffs
    assert report == {}, json.dumps(report, indent=1)


@pytest.mark.realkernel
@pytest.mark.slow
def test_model_equals_kernel_612_on_every_step(debian612, tmp_path_factory):
    """The 6.12 profile on Debian's real 6.12 kernel (fixtures built against its headers): every
    scenario, every step, formed-module sizes included (6.4+'s mod_mem[] layout)."""
    from kmodsim.kbuild import KbuildError
    from kmodsim.kernel import Kernel
    from kmodsim.loader.profiles import profile_for
    from kmodsim.loader.run import compare
    from kmodsim.oracle import OracleError
    from kmodsim.render.loader import run_from_json

    if shutil.which("make") is None:
        need("make")
    try:
        ws = ws_mod.prepare(tmp_path_factory.mktemp("scenarios612"), debian612.headers_dir)
    except KbuildError as exc:
        need(str(exc))
    kernel = Kernel.load(debian612.headers_dir)
    assert profile_for(kernel.release).series == "6.12" and profile_for(kernel.release).verified
    vmlinuz = _vmlinuz(debian612)

    def one(script: Path) -> list[str]:
        try:
            real = ws_mod.kernel_run(script, ws, kernel, vmlinuz)
        except OracleError as exc:
            pytest.fail(f"{script.name}: {exc}")
        assert all(s["formed"] is not None for s in real["steps"]), real["notes"]
        return compare(ws_mod.model_run(script, ws, kernel), run_from_json(real))

    with ThreadPoolExecutor(2) as ex:
        report = {s.name: d for s, d in zip(SCENARIOS, ex.map(one, SCENARIOS), strict=True) if d}
    assert report == {}, json.dumps(report, indent=1)


# What the suite must exercise, checked on the real kernel's output (not the model's).
COVERAGE = {
    "out-of-tree taint": r": loading out-of-tree module taints kernel\.$",
    "signature taint": r": module verification failed: signature and/or required key missing",
    "license taint": r": module license '.*' taints kernel\.$",
    "vermagic": r": version magic '.*' should be '.*'$",
    "crc": r": disagrees about version of symbol ",
    "unknown symbol": r": Unknown symbol \S+ \(err -2\)$",
    "namespace": r": module uses symbol \(.*\) from namespace \S+, but does not import it\.$",
    "duplicate export": r": exports duplicate symbol \S+ \(owned by \S+\)$",
    "duplicate of vmlinux": r"\(owned by kernel\)$",
    "invalid parameter": r": `.*' invalid for parameter `.*'$",
    "unknown parameter": r": unknown parameter '.*' ignored$",
    "inherited taint": r"inheriting taint\.$",
    # check_version() / check_modstruct_version() / check_module_license_and_versions()
    "no symbol version": r": no symbol version for kms_a_plain$",
    "no module_layout version": r": no symbol version for module_layout$",
    "forced: no __versions": r"^kms_c: module_layout: kernel tainted\.$",
    "forced: exports without CRCs": r": no versions for exported symbols: kernel tainted\.$",
    "GPL-only user of a proprietary export": r": module using GPL-only symbols uses symbols \S+ from proprietary module",
}


@pytest.mark.realkernel
@pytest.mark.slow
def test_scenarios_cover_every_failure(kernel_runs):
    steps = [s for doc in kernel_runs.values() for s in doc["steps"]]
    messages = [m for s in steps for m in s["messages"]]
    for what, pattern in COVERAGE.items():
        assert any(re.search(pattern, m) for m in messages), what
    errnames = {s["errname"] for s in steps}
    assert {"ENOEXEC", "EEXIST", "EINVAL", "ENOENT", "EAGAIN", "EBUSY", "ERANGE", "ENODEV"} <= errnames
    rm = [s for s in steps if s["cmd"].startswith("rmmod")]
    assert {"EAGAIN", "ENOENT", ""} <= {s["errname"] for s in rm}
    # the probe sees modules whose own init fails (they never reach /proc/modules) ...
    failed_inits = [s for s in steps if s["errname"] == "ENODEV" and s["cmd"].startswith("insmod")]
    assert failed_inits and all(s["formed"] for s in failed_inits)
    # ... and what it reads is what /proc/modules shows: after a successful load the init memory is
    # gone and the size shown is the core size read at do_init_module()
    checked = 0
    for s in steps:
        if s["cmd"].startswith("insmod") and not s["errno"] and s["formed"]:
            f = s["formed"][-1]
            shown = {m["name"]: m["size"] for m in s["modules"]}
            assert shown[f["name"]] == f["core"], (s["cmd"], f, shown)
            checked += 1
    assert checked >= 10
    # both load orders of two exporters of one name
    owners = {m.rsplit("(owned by ", 1)[1] for m in messages if "exports duplicate symbol kms_a_counter" in m}
    assert {"kms_a)", "kmc_dup)"} <= owners


@pytest.mark.realkernel
@pytest.mark.slow
def test_verify_cli_compare(workspace, headers61, debian61):
    """``kmodsim verify --compare`` end to end: exit 0, the JSON shape. (How long a boot takes is
    bench/loader_bench.py's to measure: a timed assertion fails on a busy machine, not on a slow tool.)"""
    vmlinuz = _vmlinuz(debian61)
    script = TESTS / "scenarios" / "24_refused_then_robust.script"
    p = run_kmodsim("verify", "--kernel", headers61, "--vmlinuz", vmlinuz, "--modules", "basic",
                    "--script", script, "--json", "--compare", cwd=workspace)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr)
    doc = json.loads(p.stdout)
    assert doc["source"] == "kernel" and doc["differences"] == []
    assert all(isinstance(m["size"], int) and m["size"] > 0 for m in doc["modules"])
    assert isinstance(doc["boot_seconds"], float) and doc["boot_seconds"] > 0
    for s in doc["steps"]:
        assert set(s) >= {"cmd", "errno", "errname", "messages"}


@pytest.mark.realkernel
@pytest.mark.slow
def test_verify_boot_failure_is_clear(workspace, headers61, tmp_path):
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"not a kernel" * 100)
    if shutil.which("qemu-system-x86_64") is None:
        need("qemu-system-x86_64")
    p = run_kmodsim("verify", "--kernel", headers61, "--vmlinuz", bogus, "--timeout", "30",
                    "--script", TESTS / "scenarios" / "18_no_vermagic.script", cwd=workspace)
    assert p.returncode == 2 and p.stderr.startswith("kmodsim: ") and "Traceback" not in p.stderr, p.stderr


def test_verify_without_qemu_is_clear(tmp_path, headers61):
    script = tmp_path / "s.script"
    script.write_text("rmmod nothing\n")
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))
    p = run_kmodsim("verify", "--kernel", headers61, "--vmlinuz", "/nonexistent", "--script", script, env=env)
    assert p.returncode == 2
    assert "qemu-system-x86_64: not installed (apt-get install qemu-system-x86)" in p.stderr


# -- the model against the kernel's recorded answers (fast) -------------------------------------------

def recorded_answers(scripts, repo: Path, cache: Path, cached_name, record, report=print) -> dict[str, dict]:
    """The kernel's answer to each script: ``repo/<stem>.json``, else ``cache/<cached_name(script)>``,
    else recorded now by ``record(missing scripts)`` (which writes them to the cache). A recording that
    cannot be made is need()ed: skipped, or failed under KMODSIM_REQUIRE_REAL=1 — never silent."""
    import time

    from kmodsim.oracle import OracleError

    def found(script: Path) -> Path | None:
        for p in (repo / f"{script.stem}.json", cache / cached_name(script)):
            if p.is_file():
                return p
        return None

    missing = [s for s in scripts if found(s) is None]
    if missing:
        t0 = time.monotonic()
        try:
            record(missing)
        except OracleError as exc:
            need(f"no recorded kernel answers in {repo} and recording them failed: {exc}")
        report(f"test_loader: recorded {len(missing)} scenario(s) on the real kernel under QEMU in "
               f"{time.monotonic() - t0:.1f} s -> {cache}")
    docs = {}
    for s in scripts:
        p = found(s)
        assert p is not None, f"{s.name}: recorded, yet no answer in {repo} or {cache}"
        docs[s.stem] = json.loads(p.read_text())
    return docs


@pytest.fixture(scope="session")
def recorded_kernel(request, workspace, kernel61, debian61) -> dict[str, dict]:
    """The real kernel's answer to every scenario, for the 6.1 kernel the archive serves today: from
    tests/scenarios/recorded/<release>/, else from the cache of earlier runs, else recorded now (QEMU,
    two boots at a time; into the cache, or the repository with KMODSIM_RECORD_REPO=1)."""
    repo = ws_mod.RECORDED / kernel61.release
    image = Path(debian61.deb).name.removesuffix(".deb")
    into_repo = os.environ.get("KMODSIM_RECORD_REPO") == "1"
    cache = repo if into_repo else ws_mod.cache_dir(image)

    def cached_name(script: Path) -> str:
        return f"{script.stem}.json" if into_repo else f"{script.stem}-{ws_mod.scenario_key(script)}.json"

    def record(missing):
        vmlinuz = _vmlinuz(debian61)  # no QEMU or busybox: need() (a failure under KMODSIM_REQUIRE_REAL=1)
        ws_mod.record_scenarios(workspace, kernel61, vmlinuz, missing, cache, name=cached_name)

    def report(line: str) -> None:  # on the terminal, past pytest's capture of fixture output
        tr = request.config.pluginmanager.get_plugin("terminalreporter")
        capman = request.config.pluginmanager.get_plugin("capturemanager")
        if tr is None or capman is None:
            print(line)
            return
        with capman.global_and_fixture_disabled():
            tr.write_line(line)

    return recorded_answers(SCENARIOS, repo, cache, cached_name, record, report=report)


def test_missing_recording_is_recorded_or_fails(tmp_path, monkeypatch):
    """The harness of the fast tests: a scenario recorded in the repository is read from there, a
    missing one from the cache or recorded; a recording that cannot be made fails under
    KMODSIM_REQUIRE_REAL=1 and is skipped (visibly) otherwise."""
    from kmodsim.oracle import OracleError

    repo, cache = tmp_path / "repo", tmp_path / "cache"
    repo.mkdir()
    a, b = SCENARIOS[0], SCENARIOS[1]
    (repo / f"{a.stem}.json").write_text('{"from": "repo"}')
    made = []

    def record(missing):
        made.extend(s.stem for s in missing)
        cache.mkdir(exist_ok=True)
        for s in missing:
            (cache / f"{s.stem}-k.json").write_text('{"from": "run"}')

    docs = recorded_answers([a, b], repo, cache, lambda s: f"{s.stem}-k.json", record, report=lambda m: None)
    assert docs == {a.stem: {"from": "repo"}, b.stem: {"from": "run"}} and made == [b.stem]
    made.clear()
    assert recorded_answers([a, b], repo, cache, lambda s: f"{s.stem}-k.json", record,
                            report=lambda m: None)[b.stem] == {"from": "run"} and made == []  # cached

    def broken(missing):
        raise OracleError("qemu-system-x86_64: not installed")

    monkeypatch.setenv("KMODSIM_REQUIRE_REAL", "1")
    with pytest.raises(pytest.fail.Exception, match="no recorded kernel answers .* recording them failed"):
        recorded_answers([a, b], repo, tmp_path / "empty", lambda s: "x.json", broken)
    monkeypatch.delenv("KMODSIM_REQUIRE_REAL")
    with pytest.raises(pytest.skip.Exception):
        recorded_answers([a, b], repo, tmp_path / "empty", lambda s: "x.json", broken)


@pytest.mark.parametrize("script", SCENARIOS, ids=[s.stem for s in SCENARIOS])
def test_model_equals_recorded_kernel(script, workspace, kernel61, recorded_kernel):
    """The model against the answers of the kernel the archive serves today (never skipped for want
    of a recording: the run records the missing ones)."""
    from kmodsim.loader.run import compare
    from kmodsim.render.loader import run_from_json

    real = recorded_kernel[script.stem]
    assert real["source"] == "kernel" and real["kernel"] == kernel61.release
    assert compare(ws_mod.model_run(script, workspace, kernel61), run_from_json(real)) == []


REGRESSION = sorted((d.name, s.stem) for d in ws_mod.RECORDED.iterdir() if d.is_dir()
                    for s in SCENARIOS if (d / f"{s.stem}.json").is_file())


@pytest.fixture(scope="session")
def release_workspace(tmp_path_factory):
    """(kernel, workspace) for a release's headers: the current ones as installed, older ones unpacked
    from Debian's archive (linux-headers-<release>), the fixtures rebuilt against them."""
    from kmodsim.debian import DebianError, unpacked_headers
    from kmodsim.kbuild import KbuildError
    from kmodsim.kernel import Kernel

    made: dict[str, tuple] = {}

    def get(release: str):
        if release not in made:
            try:
                headers = unpacked_headers(release)
                ws = ws_mod.prepare(tmp_path_factory.mktemp(f"scenarios-{release}"), headers)
            except (DebianError, KbuildError) as exc:
                need(f"headers of {release}: {exc}")
            made[release] = (Kernel.load(headers), ws)
        return made[release]

    return get


@pytest.mark.parametrize("release,stem", REGRESSION, ids=[f"{r}-{s}" for r, s in REGRESSION])
def test_model_equals_every_recording(release, stem, release_workspace, kernel61, workspace):
    """Regression data: the model against every release's recorded answers, the fixtures built
    against that release's headers (6.1.0-56's recordings stay, whatever the archive serves)."""
    from kmodsim.loader.run import compare
    from kmodsim.render.loader import run_from_json

    kernel, ws = (kernel61, workspace) if release == kernel61.release else release_workspace(release)
    assert kernel.release == release
    real = json.loads((ws_mod.RECORDED / release / f"{stem}.json").read_text())
    assert compare(ws_mod.model_run(ws_mod.HERE / f"{stem}.script", ws, kernel), run_from_json(real)) == []


def test_recorded_answers_are_real_and_complete():
    """Every recording in the repository came from a kernel run (the oracle's shape: the taint mask
    after every step; the do_init_module() probe's sizes in all but 6.1.0-56's, which predate it), and
    the current 6.1 ABI's recordings cover every scenario."""
    assert REGRESSION
    for release, stem in REGRESSION:
        doc = json.loads((ws_mod.RECORDED / release / f"{stem}.json").read_text())
        assert doc["source"] == "kernel" and doc["kernel"] == release, (release, stem)
        assert all(s["tainted"] is not None for s in doc["steps"]), (release, stem)
        if release != "6.1.0-56-amd64":
            assert all(s["formed"] is not None for s in doc["steps"]), (release, stem)
    assert {s for r, s in REGRESSION if r == "6.1.0-57-amd64"} == {s.stem for s in SCENARIOS}


def test_load_cli_json_and_text(workspace, headers61, recorded_kernel):
    script = TESTS / "scenarios" / "22_modprobe.script"
    p = run_kmodsim("load", "--kernel", headers61, "--modules", "basic", "--script", script, "--json",
                    cwd=workspace, check=0)
    doc = json.loads(p.stdout)
    assert [m["name"] for m in doc["modules"]] == ["kms_c", "kms_b", "kms_a"]
    # sizes from the footprint model, equal to what the real 6.1 kernel showed for these builds
    real = recorded_kernel["22_modprobe"]
    assert [(m["name"], m["size"]) for m in doc["modules"]] == [(m["name"], m["size"]) for m in real["modules"]]
    assert any("footprint model" in n for n in doc["notes"])
    assert [c["module"] for c in doc["steps"][0]["calls"]] == ["kms_a", "kms_b", "kms_c"]
    # kms_b is loaded: kmod_module_probe_insert_module() returns before it builds a probe list
    assert doc["steps"][1]["calls"] == [{"module": "kms_b", "skipped": True, "errno": 0}]
    t = run_kmodsim("load", "--kernel", headers61, "--script", TESTS / "scenarios" / "02_dup_export_owner_first.script",
                    cwd=workspace, check=0).stdout
    assert "[kernel] kmc_dup: exports duplicate symbol kms_a_counter (owned by kms_a)" in t
    assert "insmod: ERROR: could not insert module consumers/kmc_dup.ko: Invalid module format" in t


@pytest.mark.parametrize("text,problem", [
    ("insmod\n", ":1: insmod needs a path"),
    ("# fine\nfrobnicate x\n", ":2: unknown command 'frobnicate'"),
    ("rmmod a b\n", ":1: rmmod takes one module name"),
    ("insmod nothere.ko\n", ":1: nothere.ko: No such file or directory"),
    ("insmod basic/kms_a.ko  # init=5\n", ":1: init=5: a positive init result"),
    ("insmod basic/kms_a.ko  # init=-EBOGUS\n", ":1: unknown errno name EBOGUS"),
    ("modprobe kms_a\n", ":1: modprobe needs --modules TREE"),
])
def test_script_errors(workspace, headers61, text, problem):
    s = workspace / "bad.script"
    s.write_text(text)
    p = run_kmodsim("load", "--kernel", headers61, "--script", "bad.script", cwd=workspace)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("kmodsim: bad.script:") and problem in p.stderr, p.stderr
    assert len(p.stderr.splitlines()) == 1


def test_modprobe_unknown_module(workspace, headers61):
    s = workspace / "mp.script"
    s.write_text("modprobe kms_zzz\n")
    p = run_kmodsim("load", "--kernel", headers61, "--modules", "basic", "--script", "mp.script", cwd=workspace)
    assert p.returncode == 2 and "mp.script:1: module kms_zzz not found in --modules" in p.stderr


# -- pure units ----------------------------------------------------------------------------------------

def test_kstrto_matches_kernel_rules():
    import errno as E

    from kmodsim.loader.params import kstrto, kstrtobool

    assert kstrto("0x10", True, 32) == (0, 16)
    assert kstrto("010", True, 32) == (0, 8)
    assert kstrto("-2147483648", True, 32) == (0, -2147483648)
    assert kstrto("2147483648", True, 32)[0] == E.ERANGE
    assert kstrto("5\n", True, 32) == (0, 5)
    assert kstrto("5 ", True, 32)[0] == E.EINVAL
    assert kstrto("", True, 32)[0] == E.EINVAL
    assert kstrto("-1", False, 32)[0] == E.EINVAL
    assert kstrto("+7", False, 8) == (0, 7)
    assert kstrto("0x", True, 32)[0] == E.EINVAL  # base 8, then 'x' is junk after "0"
    assert kstrtobool("on") == (0, True) and kstrtobool("of") == (0, False)
    assert kstrtobool("maybe")[0] == E.EINVAL


def test_next_arg_quotes():
    from kmodsim.loader.params import next_arg

    assert next_arg('a="b c" d') == ("a", "b c", "d")
    assert next_arg('"a=b c" d') == ("a", "b c", "d")
    assert next_arg("flag  x=1") == ("flag", None, "x=1")
    assert next_arg("x=") == ("x", "", "")


def test_profiles_are_data():
    from kmodsim.loader.profiles import PROFILES, profile_for

    assert PROFILES["6.1"].verified and PROFILES["6.12"].verified  # both run on the real kernels
    assert PROFILES["6.12"].taints_after_unformed and not PROFILES["6.1"].taints_after_unformed
    assert profile_for("6.1.0-56-amd64").series == "6.1"
    assert profile_for("6.12.117+deb12-amd64").series == "6.12"
    p = profile_for("6.6.1")
    assert p.series == "6.1" and not p.verified


def test_config_options_come_from_the_target(workspace, kernel61):
    """The profile's configuration fields are the target's .config (Debian: FORCE_LOAD, MODVERSIONS
    and MODULE_SIG on, SIG_FORCE and ALLOW_MISSING_NAMESPACE_IMPORTS off); with CONFIG_MODULE_FORCE_LOAD
    unset, try_to_force_load() returns -ENOEXEC silently (kernel/module/main.c), so a module without
    __versions is refused at check_modstruct_version(). Not reachable on Debian's kernels (both set
    FORCE_LOAD): the expected values are the 6.1 source's, the rest of the step is the recorded one."""
    import dataclasses

    from kmodsim.loader.image import load_image
    from kmodsim.loader.model import KernelModel

    m = KernelModel(kernel61)
    assert (m.profile.force_load, m.profile.modversions, m.profile.module_sig) == (True, True, True)
    assert (m.profile.sig_force, m.profile.allow_missing_ns_imports) == (False, False)
    strict = dataclasses.replace(kernel61, config={**kernel61.config, "CONFIG_MODULE_FORCE_LOAD": "n"})
    m = KernelModel(strict)
    call = m.load_module(load_image(str(workspace / "patched" / "kms_a_noversions.ko")))
    assert (call.errno, call.messages, m.tainted) == (8, [], 0)
    call = m.load_module(load_image(str(workspace / "patched" / "kms_a_nocrcs.ko")))
    assert call.errno == 8 and not any("kernel tainted" in x for x in call.messages)
    # without CONFIG_MODVERSIONS there is no check_version(): a missing record is not looked at
    loose = dataclasses.replace(kernel61, config={**kernel61.config, "CONFIG_MODVERSIONS": "n"})
    m = KernelModel(loose)
    assert m.load_module(load_image(str(workspace / "patched" / "kms_c_nolayout.ko"))).errno == 0


def test_check_names_what_the_kernel_refuses_for_missing_versions(workspace, recorded_kernel):
    """``kmodsim check`` of scenario 26's modules reports exactly the "no symbol version for" lines
    the real kernel printed when it refused kms_b (its recording), and no CRC finding for the
    untouched kms_b."""
    real = recorded_kernel["26_versions_no_symbol_version"]
    refused = next(s for s in real["steps"] if s["cmd"] == "insmod patched/kms_b_noversion.ko")
    expected = sorted(m for m in refused["messages"] if "no symbol version for" in m)
    assert expected
    p = run_kmodsim("check", "--no-cache", "--format", "json", "basic/kms_a.ko", "patched/kms_b_noversion.ko",
                    cwd=workspace, check=1)
    got = sorted(f["message"] for f in json.loads(p.stdout)["findings"] if f["check"] == "crc")
    assert got == expected
    p = run_kmodsim("check", "--no-cache", "--format", "json", "basic/kms_a.ko", "basic/kms_b.ko",
                    cwd=workspace)
    assert [f for f in json.loads(p.stdout)["findings"] if f["check"] == "crc"] == []


def test_run_reads_back_every_recording():
    """The typed run and its JSON document are one format: every recording in the repository reads
    back (``run_from_json``) and, where it has every field of today's shape (the ones made since the
    init_log/formed fields), is written again byte for byte; the older ones read with those fields
    empty (not observed)."""
    from kmodsim.render.loader import run_from_json, run_json

    whole = older = 0
    for p in sorted(ws_mod.RECORDED.glob("*/*.json")):
        doc = json.loads(p.read_text())
        run = run_from_json(doc)
        assert run.source == "kernel" and len(run.steps) == len(doc["steps"]) > 0, p
        if all("formed" in s and "init_log" in s for s in doc["steps"]):
            assert json.dumps(run_json(run), indent=1) == json.dumps(doc, indent=1), p
            whole += 1
        else:
            assert all(s.formed is None and s.init_log == [] for s in run.steps), p
            older += 1
    assert whole >= 34 and older >= 1
