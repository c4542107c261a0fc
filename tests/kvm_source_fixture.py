"""KVM's source as a git tree for ``kmodsim series`` and its series written by ``kmodsim ops --emit
series`` (tests/test_series_emit.py, bench/series_bench.py --static-call, --kvm-direct): SOURCE_DIRS of Debian's
linux-source package unpacked once into the cache (fetched at run time, never committed), a git
repository of them with a Kbuild that builds KVM with ``M=``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from series_fixture import git

SOURCE_DIRS = ("arch/x86/kvm", "arch/x86/include", "virt/kvm")
CENSUS = SOURCE_DIRS  # where the ops census of kvm_x86_ops reads
# the subsets: members whose calls are in .c files of kvm.ko (one object recompiled a step), so
# the test stays within minutes; the first commit of the static-call series (the X-macro list in
# asm/kvm_host.h) rebuilds everything anyway
SUBSET_510 = "get_segment_base,migrate_timers,get_mt_mask,vcpu_after_set_cpuid"
SUBSET_61 = "hardware_enable,get_cpl,migrate_timers,has_wbinvd_exit,complete_emulated_msr"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "kvm-monolithic"
# where a series may change asm/kvm_host.h: this tree's arch/x86/include before the headers'
NOSTDINC = "NOSTDINC_FLAGS += -I$(src)/../include"
# 5.10's KVM Makefile, built with M=
KBUILD_510 = ("# KVM's own Makefile, built with M= (kmodsim's tests)\n" + NOSTDINC + "\n"
              "ccflags-y += -I$(src)\nCFLAGS_x86.o += -I $(src)/..\ninclude $(src)/Makefile\n")


def unpack_source(package: str, deb: str, version: str) -> Path:
    """SOURCE_DIRS of a linux-source .deb, unpacked once into the cache."""
    from kmodsim.cache import cache_root, cached_dir

    def fill(tmp: str) -> None:
        dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", tmp, f"./usr/src/{package}.tar.xz"], stdin=dpkg.stdout, check=True)
        assert dpkg.stdout is not None
        dpkg.stdout.close()
        assert dpkg.wait() == 0
        tarball = os.path.join(tmp, "usr", "src", f"{package}.tar.xz")
        subprocess.run(["tar", "-xJf", tarball, "-C", tmp, *(f"{package}/{d}" for d in SOURCE_DIRS)], check=True)
        os.remove(tarball)

    return Path(cached_dir(os.path.join(cache_root(), "src", f"{package}_{version}-emit"), fill)) / package


def kvm_repo(where: Path, src: Path, kbuild: str, extra: dict[str, Path] | None = None) -> Path:
    """A git tree of KVM's source (SOURCE_DIRS) with a Kbuild that builds it with M=."""
    repo = where / "kvm"
    for d in SOURCE_DIRS:
        shutil.copytree(src / d, repo / d, symlinks=True)
    (repo / "arch/x86/kvm/Kbuild").write_text(kbuild)
    for name, path in (extra or {}).items():
        shutil.copy(path, repo / name)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "KVM as Debian ships it, and a Kbuild for M=")
    return repo


def example_build() -> ModuleType:
    """examples/kvm-monolithic/build.py (source_tree, kbuild_text, kvm_makefile, BuildError)."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import build
    finally:
        sys.path.remove(str(EXAMPLE))
    return build


def monolithic_repo(where: Path, src: Path) -> Path:
    """KVM of Debian's linux-source-6.1 ``src`` (example_build().source_tree) as a git tree in the
    monolithic layout (every kvm object linked into kvm-intel.ko: build.py's Kbuild, mono_glue.c),
    this tree's arch/x86/include before the headers', KVM's Makefile with its paths in this tree."""
    build = example_build()
    kbuild = build.kbuild_text("mono-intel").replace("include $(src)/kvm.mk", NOSTDINC + "\ninclude $(src)/kvm.mk")
    repo = kvm_repo(where, src, kbuild, {"arch/x86/kvm/mono_glue.c": EXAMPLE / "mono_glue.c"})
    (repo / "arch/x86/kvm/kvm.mk").write_text(build.kvm_makefile(str(repo)))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "KVM's Makefile with its paths in this tree")
    return repo


def cc_vars(headers: str) -> list[str]:
    """``CC=gcc`` when the compiler the headers name (Debian's .kernelvariables) is not installed."""
    try:
        text = Path(headers, ".kernelvariables").read_text()
    except OSError:
        return []
    m = re.search(r"^CC\s*=.*\)\s*(\S+)\s*$", text, re.M)
    cc = (m.group(1) if m else "gcc").replace("$(CROSS_COMPILE)", "")
    return [] if shutil.which(cc) else ["CC=gcc"]
