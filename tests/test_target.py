"""kmodsim.target: one description of the target kernel — the behaviour table (each fact citing its
release and commit, or its Debian patch), the one lookup with one fallback rule (and its warning),
Kconfig from the target's own .config, BTF read lazily."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kmodsim.target import BEHAVIOUR, FACTS, KCONFIG, VERIFIED, Target, profile_for

from conftest import need, run_kmodsim


def test_every_fact_cites_its_release_and_commit_or_patch():
    names = [f.name for f in BEHAVIOUR]
    assert len(names) == len(set(names))
    for f in BEHAVIOUR:
        assert len(f.since) == 2 and all(isinstance(x, int) for x in f.since), f
        assert f.title and f.used_by, f
        if f.origin == "upstream":
            assert re.fullmatch(r"[0-9a-f]{12}", f.cite), f  # an upstream commit, abbreviated as git does
        else:  # a distribution's patch: its file in the distribution's source package
            assert f.origin == "debian" and re.fullmatch(r"debian/patches/[\w/.-]+\.patch", f.cite), f
    for opt in KCONFIG.values():
        assert re.fullmatch(r"CONFIG_[A-Z0-9_]+", opt.option), opt


def test_the_loader_and_footprint_read_the_one_table():
    """The loader's profile fields that depend on the release are facts of the table, and the
    footprint layout is chosen by its mod_mem fact: no second table."""
    from kmodsim.loader.profiles import CONFIG_FIELDS, PROFILES, RELEASE_FIELDS
    from kmodsim.memory_layout import layout_of, named_layout

    assert set(RELEASE_FIELDS) <= set(FACTS) and set(CONFIG_FIELDS) <= set(KCONFIG)
    assert set(PROFILES) == {f"{v.series[0]}.{v.series[1]}" for v in VERIFIED}
    for rel, layout in (("6.1.0-57-amd64", "6.1"), ("6.3.0", "6.1"), ("6.4.0", "6.4"), ("6.12.118+deb12-amd64", "6.4")):
        t = Target.of(None, rel)
        assert layout_of(t).name == layout and layout_of(t).mod_mem == (layout == "6.4")
    assert named_layout("6.4").mod_mem and not named_layout("6.1").mod_mem


def test_one_lookup_one_fallback_rule():
    """Nearest verified series at or below the release, else the lowest; a warning unless exact.
    The library returns the warning as data and prints nothing."""
    assert [profile_for(r)[:2] for r in ("6.1.0-56-amd64", "6.12.117+deb12-amd64")] == [((6, 1), True),
                                                                                        ((6, 12), True)]
    assert profile_for("6.7.0")[:3] == ((6, 1), False, "nearest below")
    assert profile_for("6.17.2")[:3] == ((6, 12), False, "nearest below")
    assert profile_for("5.10.0-32-amd64")[:3] == ((6, 1), False, "lowest")
    assert profile_for("")[:3] == ((6, 1), False, "no release")
    t = Target.of(None, "6.7.0")
    assert t.warnings == ["no verified profile for 6.7.0: using 6.1's (nearest below), with the behaviour "
                          "table read at 6.7"]
    assert Target.of(None, "6.1.0-57-amd64").warnings == []
    # the facts are read at the target's own release: 6.16's module: namespaces on a 6.17 kernel
    assert Target.of(None, "6.17.2").has("module_namespaces") and not Target.of(None, "6.12.1").has(
        "module_namespaces")


def _headers_copy(headers: str, dest: Path, release: str | None = None, config: dict[str, str] | None = None) -> Path:
    """A headers directory as kmodsim reads it (Module.symvers, .config, the release), with the
    release and .config options changed."""
    dest.mkdir(parents=True)
    os.symlink(os.path.join(headers, "Module.symvers"), dest / "Module.symvers")
    text = Path(headers, ".config").read_text()
    for opt, val in (config or {}).items():
        new = f"{opt}={val}" if val != "n" else f"# {opt} is not set"
        text, n = re.subn(rf"^(?:{opt}=.*|# {opt} is not set)$", new, text, flags=re.M)
        assert n == 1, opt
    (dest / ".config").write_text(text)
    from kmodsim.kernel import headers_release

    (dest / "include" / "generated").mkdir(parents=True)
    (dest / "include" / "generated" / "utsrelease.h").write_text(
        f'#define UTS_RELEASE "{release or headers_release(headers)}"\n')
    return dest


WARN_67 = ("kmodsim: warning: no verified profile for 6.7.0: using 6.1's (nearest below), with the behaviour "
           "table read at 6.7\n")


def test_unknown_release_warns_on_stderr(headers61, basic_build, tmp_path):
    """A target whose release has no verified profile: load, footprint and check run, and each says
    so in one stderr line (the same line whether check's findings come from its cache or not)."""
    k = _headers_copy(headers61, tmp_path / "k67", release="6.7.0")
    script = tmp_path / "s.txt"
    script.write_text(f"insmod {basic_build / 'kms_a.ko'}\n")
    p = run_kmodsim("load", "--kernel", k, "--script", script)
    assert (p.returncode, p.stderr) == (0, WARN_67)
    assert p.stdout.startswith("# model: kernel 6.7.0 (profile 6.1, unverified)\n")
    p = run_kmodsim("footprint", "--json", "--kernel", k, basic_build / "kms_a.ko")
    assert (p.returncode, p.stderr) == (0, WARN_67)
    assert json.loads(p.stdout)["profile"] == "6.4"  # 6.7 has 6.4's mod_mem[] (ac3b43283923)
    env = dict(os.environ, KMODSIM_CACHE=str(tmp_path / "cache"))
    for _ in range(2):  # cold, then from the findings cache
        p = run_kmodsim("check", "--format", "json", "--kernel", k, basic_build / "kms_a.ko", env=env)
        assert (p.returncode, p.stderr) == (0, WARN_67)
    # the verified kernel itself: no warning
    p = run_kmodsim("footprint", "--kernel", headers61, basic_build / "kms_a.ko")
    assert (p.returncode, p.stderr) == (0, "")
    # the library returns it as data and prints nothing
    t = Target.load(str(k))
    assert t.release == "6.7.0" and not t.verified and t.series == "6.1" and t.warnings == [WARN_67[18:-1]]


def test_config_drives_the_loader(headers61, basic_build, tmp_path):
    """CONFIG_MODULE_SIG_FORCE=y in the target's .config: module_sig_check() (kernel/module/signing.c
    of v6.1) refuses an unsigned module before anything else: pr_notice("Loading of %s is
    rejected\\n", "unsigned module"), -EKEYREJECTED. Debian's .config leaves it unset (the same
    module loads, with the unsigned-module taint)."""
    script = tmp_path / "s.txt"
    script.write_text(f"insmod {basic_build / 'kms_a.ko'}\n")
    p = run_kmodsim("load", "--json", "--kernel", headers61, "--script", script)
    step = json.loads(p.stdout)["steps"][0]
    assert step["errno"] == 0 and any("module verification failed" in m for m in step["messages"])
    forced = _headers_copy(headers61, tmp_path / "sigforce", config={"CONFIG_MODULE_SIG_FORCE": "y"})
    p = run_kmodsim("load", "--json", "--kernel", forced, "--script", script)
    assert p.returncode == 0 and p.stderr == ""
    step = json.loads(p.stdout)["steps"][0]
    assert (step["errname"], step["messages"]) == ("EKEYREJECTED", ["Loading of unsigned module is rejected"])


def test_config_drives_the_footprint(headers61, basic_build, tmp_path):
    """CONFIG_KALLSYMS unset: kernel/module/Makefile builds kallsyms.o only with it (internal.h's
    layout_symtab() is then empty), so no core kallsyms copy is laid out."""
    doc = json.loads(run_kmodsim("footprint", "--json", "--kernel", headers61, basic_build / "kms_a.ko").stdout)
    assert doc["modules"][0]["kallsyms_bytes"] > 0
    k = _headers_copy(headers61, tmp_path / "nokallsyms", config={"CONFIG_KALLSYMS": "n"})
    p = run_kmodsim("footprint", "--json", "--kernel", k, basic_build / "kms_a.ko")
    assert p.returncode == 0 and p.stderr == ""
    m = json.loads(p.stdout)["modules"][0]
    assert m["kallsyms_bytes"] == 0 and "kallsyms" not in m["by_type"]


@pytest.mark.realkernel
@pytest.mark.slow
def test_btf_from_the_target_agrees_with_the_table(debian61, tmp_path):
    """A vmlinuz target exposes its BTF: struct module's name lies where the real module's
    .gnu.linkonce.this_module holds its name (objcopy), and struct module has core_layout (no
    mem[]) exactly as the table's mod_mem fact (v6.4) says for this release."""
    import glob

    import oracles

    t = Target.load(debian61.vmlinuz)
    assert t.btf_source == debian61.vmlinuz and t.verified
    got = t.struct_layout("module", ["name", "core_layout.size", "mem[0].size"])
    assert got is not None and ("mem[0].size" in got) == t.has("mod_mem") and "core_layout.size" in got
    ko = sorted(glob.glob(f"{debian61.modules_dir}/kernel/drivers/net/dummy.ko*"))[0]
    plain = tmp_path / "dummy.ko"
    plain.write_bytes(oracles.elf_bytes(ko))
    if shutil.which("objcopy") is None:
        need("objcopy")
    data = subprocess.run(["objcopy", "-O", "binary", "--only-section=.gnu.linkonce.this_module", str(plain),
                           "/dev/stdout"], capture_output=True, check=True).stdout
    off, size = got["name"]
    assert data[off:off + size].rstrip(b"\0") == b"dummy"
    # a headers directory ships no vmlinux: no BTF, and nothing is opened
    assert Target.of(None, "6.1.0").btf is None
