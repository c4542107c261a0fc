"""The symbol index and its owner policies (kmodsim.symbols), each against an independent oracle:

* DEPMOD  — real depmod's modules.symbols and modules.dep on a tree where three modules export one
  name, in an order fixed by modules.order (so the order does not come from kmodsim either);
* LOADER  — the real 6.1 kernel's recorded answers (tests/scenarios/recorded/<release>/): whom
  ``exports duplicate symbol ... (owned by ...)`` names;
* MODPOST — Debian 6.1's modpost on an external (M=) build: which duplicates it reports;
* namespaces — the ``module:`` rule is one function used by check, ldd and the loader; Debian's 6.12
  modpost is the oracle (before 6.16 ``module:kvm`` is an ordinary namespace). No 6.16+ kernel or
  module is at hand here: the 6.16 branch (module-only namespaces) is pinned only by the kernel
  source's rule (see test_module_match_is_the_kernels_rule), not by a real kernel's answer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KBUILD_SRC, TESTS, kbuild_set, need, run_kmodsim

sys.path.insert(0, str(TESTS / "scenarios"))
import workspace as ws_mod  # noqa: E402

# -- DEPMOD: real depmod ----------------------------------------------------------------------------

EXPORTERS = ["basic/kms_a.ko", "consumers/kmc_dup.ko", "loader/kml_dups.ko"]  # all export kms_a_counter


def _depmod_tree(workspace: Path, root: Path, order: list[str], real_depmod: str) -> tuple[Path, dict, dict]:
    """lib/modules/<kver>/kernel/* with modules.order = ``order`` (then kms_b, kms_c), real depmod
    run on it; (tree, {symbol: owner} from modules.symbols, {module: [deps]} from modules.dep)."""
    kver = "6.1.0-kmodsim"
    tree = root / "lib" / "modules" / kver
    (tree / "kernel").mkdir(parents=True)
    rels = [*order, "basic/kms_b.ko", "basic/kms_c.ko"]
    for rel in rels:
        shutil.copy(workspace / rel, tree / "kernel" / Path(rel).name)
    (tree / "modules.order").write_text("".join(f"kernel/{Path(r).name}\n" for r in rels))
    subprocess.run([real_depmod, "-b", str(root), kver], check=True, capture_output=True)
    owners = {}
    for line in (tree / "modules.symbols").read_text().splitlines():
        if line.startswith("alias symbol:"):
            sym, mod = line[len("alias symbol:"):].split()
            owners[sym] = mod
    deps = {}
    for line in (tree / "modules.dep").read_text().splitlines():
        mod, _, rest = line.partition(":")
        deps[Path(mod).name] = [Path(d).name for d in rest.split()]
    return tree, owners, deps


@pytest.mark.parametrize("order", [EXPORTERS, EXPORTERS[::-1]], ids=["a-dup-dups", "dups-dup-a"])
def test_depmod_policy_is_real_depmods(workspace, real_depmod, tmp_path, order):
    from kmodsim.module import read_module
    from kmodsim.symbols import DEPMOD, LOADER, SymbolIndex

    tree, owners, deps = _depmod_tree(workspace, tmp_path, order, real_depmod)
    text = (tree / "modules.order").read_text().split()
    index = SymbolIndex.build(None, [read_module(str(tree / rel)) for rel in text])
    assert owners and set(owners) == set(index.by_name)
    for sym, owner in owners.items():
        assert DEPMOD.pick(index.providers(sym)).owner == owner, sym
    # three exporters: depmod's owner is the last in its order, the kernel's the first
    last, first = read_module(str(workspace / order[-1])).name, read_module(str(workspace / order[0])).name
    assert owners["kms_a_counter"] == last
    assert LOADER.pick(index.providers("kms_a_counter")).owner == first != last
    # ... and kms_b (which imports kms_a_counter) depends on depmod's owner
    assert f"{last}.ko" in deps["kms_b.ko"]


def test_depmod_tables_use_the_policy(workspace, real_depmod, tmp_path):
    """kmodsim depmod's flat tables (Depmod.owner, Depmod.symbols) give the same owners."""
    from kmodsim.dependencies.graph import run

    tree, owners, _deps = _depmod_tree(workspace, tmp_path, EXPORTERS, real_depmod)
    dm = run(str(tmp_path), tree.name, use_cache=False)
    got = {n.decode(): dm.mods[i].name for n, i in dm.owner.items()}
    assert got == owners
    assert {n.decode(): dm.mods[s[0]].name for n, s in dm.symbols.items() if s[0] is not None} == owners


# -- LOADER: the real kernel's recorded answers -------------------------------------------------------

DUP = re.compile(r"^(\S+): exports duplicate symbol (\S+) \(owned by (\S+)\)$")


def test_loader_policy_is_the_kernels(workspace, kernel61):
    """Every "exports duplicate symbol S (owned by O)" the real kernel logged in the scenarios: the
    index, filled in load order (vmlinux, the live modules oldest first), names O by LOADER."""
    from kmodsim.module import ModuleError, read_module
    from kmodsim.symbols import DEPMOD, LOADER, SymbolIndex

    recorded = ws_mod.RECORDED / kernel61.release
    if not recorded.is_dir():
        need(f"recorded kernel answers for {kernel61.release} in {recorded}")
    seen = 0
    differs = 0
    built = {read_module(str(f)).name: str(f) for d in ("basic", "consumers", "loader") for f in (workspace / d).glob("*.ko")}
    for doc_path in sorted(recorded.glob("*.json")):
        doc = json.loads(doc_path.read_text())
        paths = dict(built)  # modprobe'd modules; insmod'ed ones by their path
        live: list[str] = []  # names, newest first, as /proc/modules lists them
        for step in doc["steps"]:
            cmd = step["cmd"].split()
            if cmd[0] == "insmod":
                path = str(workspace / cmd[1])
                try:
                    new = read_module(path)
                except ModuleError:  # a malformed module (the kernel refused it, no clash logged)
                    assert not any(DUP.match(x) for x in step["messages"])
                    live = [x["name"] for x in step["modules"]]
                    continue
                paths[new.name] = path
                for msg in step["messages"]:
                    m = DUP.match(msg)
                    if not m:
                        continue
                    assert m.group(1) == new.name
                    loaded = [read_module(paths[n]) for n in reversed(live)]
                    index = SymbolIndex.build(kernel61, [*loaded, new])
                    provs = index.providers(m.group(2), exclude=new.name)
                    owner = LOADER.pick(provs).owner
                    assert ("kernel" if owner == "vmlinux" else owner) == m.group(3), (doc_path.name, msg)
                    seen += 1
                    differs += DEPMOD.pick(index.providers(m.group(2))).owner != owner
            live = [x["name"] for x in step["modules"]]
    assert seen >= 3 and differs >= 1  # scenarios 02, 03 (module owner), 19 (vmlinux); DEPMOD would differ


# -- MODPOST: Debian's modpost -----------------------------------------------------------------------

REPORT = re.compile(r"(\S+): '(\S+)' exported twice\. Previous export was in (\S+?)(?:\.ko)?$")


def _kbuild_kmp(src: Path, headers: str, mods: dict[str, str]) -> str:
    src.mkdir()
    for name, body in mods.items():
        (src / f"{name}.c").write_text(f"#include <linux/module.h>\n{body}MODULE_LICENSE(\"GPL\");\n")
    (src / "Kbuild").write_text("obj-m += " + " ".join(f"{n}.o" for n in mods) + "\n")
    p = subprocess.run(["make", "-C", headers, f"M={src}", "CONFIG_DEBUG_INFO_BTF_MODULES=",
                        "KBUILD_MODPOST_WARN=1", "modules"], capture_output=True, text=True)
    return p.stdout + p.stderr


def test_modpost_policy_is_modposts(headers61, tmp_path):
    """An external build of three modules: two export one name (modpost silent: external build, the
    previous export is not vmlinux's), one exports a vmlinux name (reported, previous: vmlinux).
    MODPOST.duplicate_reports() on the index in modpost's read order says the same."""
    from kmodsim.kernel import Kernel
    from kmodsim.module import read_module
    from kmodsim.symbols import MODPOST, SymbolIndex

    if shutil.which("make") is None:
        need("make")
    vm = "xxh32"  # a vmlinux export (lib/xxhash.c) that linux/module.h does not declare
    assert f"\t{vm}\tvmlinux\t" in (Path(headers61) / "Module.symvers").read_text()

    def mods(name: str) -> dict[str, str]:
        return {"kmp_one": "int kmp_shared;\nEXPORT_SYMBOL(kmp_shared);\n",
                "kmp_two": "int kmp_shared;\nEXPORT_SYMBOL(kmp_shared);\n",
                "kmp_vm": f"int {name};\nEXPORT_SYMBOL({name});\n"}

    # the oracle: modpost on the real sources (the duplicate of vmlinux is fatal: no .ko is linked)
    out = _kbuild_kmp(tmp_path / "kmp", headers61, mods(vm))
    if "MODPOST" not in out:
        need(f"kbuild of the modpost fixture failed: {out[-1500:]}")
    real = set()
    for line in out.splitlines():
        m = REPORT.search(line)
        if m:
            real.add((Path(m.group(1)).name, m.group(2), Path(m.group(3)).name))
    assert real == {("kmp_vm", vm, "vmlinux")}, out[-2000:]

    # the modules, with kmp_vm's export renamed in the source and its name patched back in the .ko
    src = tmp_path / "kmpx"
    out = _kbuild_kmp(src, headers61, mods("xxh3x"))
    if not (src / "kmp_vm.ko").is_file():
        need(f"kbuild of the modpost fixture failed: {out[-1500:]}")
    (src / "kmp_vm.ko").write_bytes((src / "kmp_vm.ko").read_bytes().replace(b"xxh3x", vm.encode()))
    kernel = Kernel.load(headers61)
    order = [ln.strip() for ln in (src / "modules.order").read_text().splitlines() if ln.strip()]
    index = SymbolIndex.build(kernel, [read_module(str(src / Path(o).with_suffix(".ko"))) for o in order])
    ours = {(new.owner, name, prev.owner) for name, provs in index.duplicates().items()
            for new, prev in MODPOST.duplicate_reports(provs, external=True)}
    assert ours == real
    # in-tree (not external) modpost would also report the second kmp_shared
    assert ("kmp_two", "kmp_shared", "kmp_one") in {
        (new.owner, name, prev.owner) for name, provs in index.duplicates().items()
        for new, prev in MODPOST.duplicate_reports(provs, external=False)}
    # and resolves kmp_shared to the newest export
    assert MODPOST.pick(index.providers("kmp_shared")).owner == "kmp_two"


# -- namespaces: one rule for check, ldd and the loader ----------------------------------------------

@pytest.mark.realkernel
def test_module_namespace_rule_in_check_ldd_and_loader(headers612, tmp_path):
    """Debian's 6.12 exports anon_inode_make_secure_inode in "module:kvm"; before 6.16 that is an
    ordinary namespace (Debian's 6.12 modpost refuses the module without the import: the oracle).
    check, ldd and the loader model take the verdict from kmodsim.symbols.namespace_problem and
    agree: the module that imports module:kvm may use it, the one that imports module:kvX may not."""
    from kmodsim.kernel import Kernel
    from kmodsim.loader.image import load_image
    from kmodsim.loader.model import KernelModel

    built = kbuild_set("modns612", headers612)
    src = tmp_path / "noimport"
    shutil.copytree(KBUILD_SRC / "modns612", src)
    text = subprocess.run(["make", "-C", headers612, f"M={src}", "CONFIG_DEBUG_INFO_BTF_MODULES=",
                           "ccflags-y=-DKMS_NO_IMPORT", "modules"], capture_output=True, text=True)
    m = re.search(r"module (\w+) uses symbol (\w+) from namespace (\S+), but does not import it",
                  text.stdout + text.stderr)
    assert m and m.groups() == ("kms_modns", "anon_inode_make_secure_inode", "module:kvm")
    good = built / "kms_modns.ko"
    bad = tmp_path / "kms_modns.ko"
    bad.write_bytes(good.read_bytes().replace(b"import_ns=module:kvm", b"import_ns=module:kvX"))

    kernel = Kernel.load(headers612)
    for path, ok in ((good, True), (bad, False)):
        ldd = json.loads(run_kmodsim("ldd", "--json", "--kernel", headers612, path).stdout)
        (imp,) = [i for i in ldd["imports"] if i["symbol"] == "anon_inode_make_secure_inode"]
        assert imp["namespace"] == "module:kvm" and imp["namespace_ok"] is ok
        check = json.loads(run_kmodsim("check", "--no-cache", "--format", "json", "--kernel", headers612,
                                       path).stdout)["findings"]
        assert [(f["check"], f["symbol"]) for f in check if f["check"] == "namespace"] == \
            ([] if ok else [("namespace", "anon_inode_make_secure_inode")])
        model = KernelModel(kernel)
        assert not model.module_namespaces  # 6.12: before v6.16
        call = model.load_module(load_image(str(path)))
        msg = ("kms_modns: module uses symbol (anon_inode_make_secure_inode) from namespace module:kvm, "
               "but does not import it.")
        assert (msg in call.messages) is (not ok), call.messages


def test_module_match_is_the_kernels_rule():
    """kernel/module/main.c verify_module_namespace() as merged for v6.16 (8f945479021a and the
    follow-ups in that release): comma-separated names, a trailing ``*`` the only glob, ``-`` and
    ``_`` equal (mod_strncmp()). Expected values read off that C code, not from kmodsim; no 6.16
    kernel is at hand to ask."""
    from kmodsim.symbols import module_match, namespace_problem

    assert module_match("kvm", "kvm") and module_match("kvm_intel", "kvm,kvm-*")
    assert not module_match("kvm_intel", "kvm") and not module_match("kv", "kvm*")
    assert module_match("snd-hda", "snd_hda") and not module_match("kvmx", "kv?x")
    # 6.16+: a listed module may use it, another may not (the kernel still honours an explicit
    # import; modpost forbids importing a module: namespace, so check does not count one)
    assert namespace_problem("module:kvm", "kvm_amd", (), True) == "module-only"
    assert namespace_problem("module:kvm*", "kvm_amd", (), True) == ""
    assert namespace_problem("module:kvm", "kms", ("module:kvm",), True) == ""
    assert namespace_problem("module:kvm", "kms", ("module:kvm",), True, import_counts=False) == "module-only"
    # before 6.16: an ordinary namespace
    assert namespace_problem("module:kvm", "kvm", (), False) == "not-imported"
    assert namespace_problem("module:kvm", "kms", ("module:kvm",), False) == ""


def test_check_skip_self_rule_with_two_modules_of_one_name(basic_build, headers61, tmp_path):
    """check's fast path must not hide what the per-import rules find: two files named kms_a (one
    renamed copy) — imports of kms_a's exports by either resolve to the other file's name, which
    the skip-self rule drops; findings equal those of the slow path (a symbol list forces it)."""
    d = tmp_path / "two"
    d.mkdir()
    shutil.copy(basic_build / "kms_a.ko", d / "kms_a.ko")
    shutil.copy(basic_build / "kms_b.ko", d / "kms_b.ko")
    sl = tmp_path / "all.txt"
    sl.write_text("".join(f"{ln.split()[1]}\n" for ln in (Path(headers61) / "Module.symvers").read_text().splitlines()))
    fast = json.loads(run_kmodsim("check", "--no-cache", "--format", "json", "--kernel", headers61, d,
                                  basic_build).stdout)["findings"]
    slow = json.loads(run_kmodsim("check", "--no-cache", "--format", "json", "--kernel", headers61, d,
                                  basic_build, "--symbol-list", sl).stdout)["findings"]
    assert fast == [f for f in slow if f["check"] != "symbol-list"] and fast
