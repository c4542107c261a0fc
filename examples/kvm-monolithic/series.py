"""The KVM monolithic conversion as a patch series on Debian's 6.1 KVM, for ``kmodsim series``.

Three small patches, written here (not taken from the 2019 thread), applied to the source of
Debian's ``linux-source-6.1`` that build.py fetches at run time:

* **glue** (``KVM: x86: monolithic: the glue init and the list of kvm's objects``): adds
  ``mono_glue.c`` (kvm's init, then the vendor's), names kvm.ko's objects plus the glue
  ``kvm-mono-y`` in KVM's Makefile, and renames x86.c's ``init_module``/``cleanup_module``;
* **vendors** (``KVM: VMX, SVM: monolithic: link kvm's objects into the vendor modules``):
  ``kvm-intel-y``/``kvm-amd-y`` take ``$(kvm-mono-y)``, the vendor files' init and exit renamed
  for the glue;
* **drop** (``KVM: x86: monolithic: no kvm.ko, and no exports, once the vendors link its
  objects``): kvm.o leaves ``obj-m`` and ``-D__DISABLE_EXPORTS`` (include/linux/export.h: every
  ``EXPORT_SYMBOL`` empty) is added — both only when ``kvm-mono-y`` is defined.

The patches touch separate lines: each applies without the others. What each *does* depends on
the others (``kvm-mono-y`` is the glue's), so the order decides whether every step is good:

* glue, vendors, drop (the order one would write them in): step 2 builds kvm.ko and two vendor
  modules that link the same objects — every kvm.ko export exported again by kvm-intel and
  kvm-amd (``kmodsim check``: duplicate exports); step 3 fixes it;
* glue first is always bad (with drop next: nothing exports what the vendor modules import, and
  modpost stops; with vendors next: the duplicates); glue last is good: vendors, drop, glue or
  drop, vendors, glue — until the glue comes, kvm-mono-y is empty and nothing changes but the
  renamed vendor inits.

The base tree is KVM as build.py builds it in the normal layout: ``arch/x86/kvm`` (its Makefile's
two ``$(srctree)`` paths made relative) and ``virt/kvm``, with a ``Kbuild`` that includes the
Makefile. ``write_series(src_tree, out)`` makes the base tree and the patch files
(``git format-patch``) in ``out``.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import build

HERE = os.path.dirname(os.path.abspath(__file__))
KVM = "arch/x86/kvm"

GIT_ENV = {"GIT_AUTHOR_NAME": "kmodsim example", "GIT_AUTHOR_EMAIL": "example@kmodsim.invalid",
           "GIT_COMMITTER_NAME": "kmodsim example", "GIT_COMMITTER_EMAIL": "example@kmodsim.invalid",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd: str, *args: str) -> str:
    p = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True)
    if p.returncode != 0:
        raise build.BuildError(f"git {' '.join(args[:2])}: {p.stderr.strip()}")
    return p.stdout


def kbuild_text() -> str:
    """The base tree's arch/x86/kvm/Kbuild: build.py's normal layout, including the Makefile itself."""
    return build.kbuild_text("normal").replace("include $(src)/kvm.mk", "include $(src)/Makefile")


def base_tree(src_tree: str, dest: str) -> str:
    """KVM's source of ``src_tree`` as an out-of-tree module tree in ``dest`` (made; returned)."""
    for d in (KVM, "virt/kvm"):
        shutil.copytree(os.path.join(src_tree, d), os.path.join(dest, d))
    with open(os.path.join(dest, KVM, "Makefile"), "w", encoding="utf-8") as f:
        f.write(build.kvm_makefile(src_tree))
    with open(os.path.join(dest, KVM, "Kbuild"), "w", encoding="utf-8") as f:
        f.write(kbuild_text())
    return dest


def _edit(path: str, old: str, new: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.count(old) != 1:
        raise build.BuildError(f"{path}: expected one {old!r} (the 6.1 Makefile is expected)")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))


XEN = "kvm-$(CONFIG_KVM_XEN)\t+= xen.o\n"
SGX = "kvm-intel-$(CONFIG_X86_SGX_KVM)\t+= vmx/sgx.o\n"
AMD = "kvm-amd-y\t\t+= svm/svm.o svm/vmenter.o svm/pmu.o svm/nested.o svm/avic.o svm/sev.o\n"
OBJ_KVM = "obj-$(CONFIG_KVM)\t+= kvm.o\n"


def glue(tree: str) -> str:
    shutil.copy(os.path.join(HERE, "mono_glue.c"), os.path.join(tree, KVM, "mono_glue.c"))
    _edit(os.path.join(tree, KVM, "Makefile"), XEN, XEN + (
        "\n# monolithic: kvm.ko's objects and the one init that runs kvm's, then the vendor's\n"
        "kvm-mono-y\t\t:= $(kvm-y) mono_glue.o\n"
        "CFLAGS_x86.o\t\t+= -Dinit_module=kvm_mono_x86_init -Dcleanup_module=kvm_mono_x86_exit\n"))
    return "KVM: x86: monolithic: the glue init and the list of kvm's objects"


VENDOR_INIT = "-Dinit_module=kvm_mono_vendor_init -Dcleanup_module=kvm_mono_vendor_exit"


def vendors(tree: str) -> str:
    mk = os.path.join(tree, KVM, "Makefile")
    _edit(mk, SGX, SGX + f"kvm-intel-y\t\t+= $(kvm-mono-y)\nCFLAGS_vmx/vmx.o\t+= {VENDOR_INIT}\n")
    _edit(mk, AMD, AMD + f"kvm-amd-y\t\t+= $(kvm-mono-y)\nCFLAGS_svm/svm.o\t+= {VENDOR_INIT}\n")
    return "KVM: VMX, SVM: monolithic: link kvm's objects into the vendor modules"


def drop(tree: str) -> str:
    _edit(os.path.join(tree, KVM, "Makefile"), OBJ_KVM,
          "# monolithic: no kvm.ko, and nothing to export, once the vendor modules link its objects\n"
          "obj-$(CONFIG_KVM)\t+= $(if $(kvm-mono-y),,kvm.o)\n"
          "ccflags-y\t\t+= $(if $(kvm-mono-y),-D__DISABLE_EXPORTS)\n")
    return "KVM: x86: monolithic: no kvm.ko, and no exports, once the vendors link its objects"


STEPS = {"glue": glue, "vendors": vendors, "drop": drop}
BAD_ORDER = ("glue", "vendors", "drop")  # step 2 leaves kvm.ko and the vendor modules exporting the same
GOOD_ORDER = ("vendors", "drop", "glue")


def write_series(src_tree: str, out: str) -> dict[str, str]:
    """The base tree (``out/base``) and each patch as ``git format-patch`` wrote it
    (``out/<name>.patch``), every patch made against the base alone; {name: path}, "base" too."""
    base = base_tree(src_tree, os.path.join(out, "base"))
    work = os.path.join(out, "work")
    shutil.copytree(base, work)
    git(work, "init", "-q", "-b", "main")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "KVM: Debian's 6.1 KVM, built out of tree")
    paths = {"base": base}
    for name, step in STEPS.items():
        git(work, "checkout", "-q", "-B", name, "main")
        subject = step(work)
        git(work, "add", ".")
        git(work, "commit", "-q", "-m", subject, "-m", "Written by kmodsim's examples/kvm-monolithic/series.py.")
        text = git(work, "format-patch", "--stdout", "main..HEAD")
        paths[name] = os.path.join(out, f"{name}.patch")
        with open(paths[name], "w", encoding="utf-8") as f:
            f.write(text)
    shutil.rmtree(work)
    return paths
