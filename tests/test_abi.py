"""``kmodsim abi diff`` / ``abi history`` on Debian's real kernels.

The oracle is an independent diff of the two Module.symvers files that kbuild wrote (read by
tests/oracles.py, not by kmodsim), computed here in a few lines; for module trees, the owners come
from kmod's own depmod (``modules.symbols`` of ``depmod -n``) and the CRCs, licenses and
namespaces from the Module.symvers of the matching headers package. Every change kmodsim reports
must be one of the oracle's, and every one of the oracle's must be reported.

Debian 12's 6.1 ABIs are fetched from the archive (the network: slow tier); an ABI the archive no
longer serves fails the run under KMODSIM_REQUIRE_REAL=1 (``need``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from conftest import DEPMOD, need, run_kmodsim, series_with_headers
from oracles import symvers

# Debian 12's 6.1 ABIs in the archive, in order (Debian bumps the ABI name when an export changes)
ABIS = ["6.1.0-47-amd64", "6.1.0-50-amd64", "6.1.0-53-amd64", "6.1.0-54-amd64", "6.1.0-55-amd64",
        "6.1.0-56-amd64", "6.1.0-57-amd64"]
STEPS = list(zip(ABIS, ABIS[1:], strict=False))
KINDS = ("removed", "crc", "license", "namespace", "owner", "added")


# ---------------------------------------------------------------------------------------------
# The oracle
# ---------------------------------------------------------------------------------------------

def exports_of(path: str) -> dict[str, tuple]:
    """Module.symvers -> {symbol: (crc, owner, gpl, namespace)}, the owner a module's name (its
    file name, '-' as '_', as the kernel names modules) or "vmlinux"."""
    out = {}
    for mod, syms in symvers(path).items():
        owner = mod if mod == "vmlinux" else mod.rsplit("/", 1)[-1].replace("-", "_")
        for sym, (crc, gpl, ns) in syms.items():
            assert sym not in out, f"{path}: {sym} exported twice"
            out[sym] = (crc, owner, gpl, ns)
    return out


def expected_changes(old: dict[str, tuple], new: dict[str, tuple]) -> set[tuple]:
    out = set()
    for sym in old.keys() | new.keys():
        o, n = old.get(sym), new.get(sym)
        if o is None:
            out.add((sym, "added", None, n))
        elif n is None:
            out.add((sym, "removed", o, None))
        else:
            for i, kind in enumerate(("crc", "owner", "license", "namespace")):
                if o[i] != n[i]:
                    out.add((sym, kind, o, n))
    return out


def _tuple(e):
    return None if e is None else (e["crc"], e["owner"], e["gpl"], e["namespace"])


def reported(doc, btf: bool = False) -> set[tuple]:
    changes = [(c["symbol"], c["change"], _tuple(c["old"]), _tuple(c["new"])) for c in doc["changes"]]
    assert len(set(changes)) == len(changes)  # one entry per symbol and kind of change
    # headers packages carry no BTF: every CRC change is "unexplained (no BTF)", the rest have none
    # (images and trees carry BTF: their causes are tests/test_abi_causes.py's)
    no_btf = [{"type": None, "change": "unexplained (no BTF)", "path": []}]
    if btf:
        assert all(bool(c["causes"]) == (c["change"] == "crc") for c in doc["changes"])
    else:
        assert all(c["causes"] == (no_btf if c["change"] == "crc" else []) for c in doc["changes"])
    return set(changes)


def diff_json(old, new, *extra, check):
    p = run_kmodsim("abi", "diff", "--json", old, new, *extra, check=check)
    assert "Traceback" not in p.stderr
    return json.loads(p.stdout), p


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kver612() -> str:
    """The 6.12 ABI bookworm serves today (what linux-image-6.12-amd64 points at)."""
    from kmodsim.debian import DebianError, image_package

    try:
        return image_package("linux-image-6.12-amd64").removeprefix("linux-image-")
    except DebianError as exc:
        need(f"bookworm's linux-image-6.12-amd64: {exc}")


@pytest.fixture(scope="session")
def debian612_tree():
    """Debian's 6.12 image (its modules and vmlinuz), unpacked, with its headers (not gated by
    KMODSIM_TEST_612: abi's tree tests always run)."""
    return series_with_headers("6.12")


# ---------------------------------------------------------------------------------------------
# Headers: every step of Debian 12's 6.1 ABIs, and 6.1 -> 6.12
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("old,new", STEPS, ids=[f"{a[6:8]}-{b[6:8]}" for a, b in STEPS])
def test_debian_61_step_equals_the_symvers_diff(old, new, headers_of):
    a, b = headers_of(old), headers_of(new)
    want = expected_changes(exports_of(f"{a}/Module.symvers"), exports_of(f"{b}/Module.symvers"))
    doc, p = diff_json(a, b, check=1 if want else 0)
    assert reported(doc) == want
    assert (doc["old"], doc["new"]) == (old, new)
    s = doc["summary"]
    assert s["compatible"] is (not want)
    assert {k: s[k] for k in KINDS} == {k: sum(c[1] == k for c in want) for k in KINDS}
    assert p.stderr == ""


@pytest.mark.slow
def test_known_facts_of_debian_61(headers_of):
    """What the issue measured: 47 -> 50 changed 18,107 of 24,618 export CRCs; 55 -> 56 -> 57 none."""
    doc, _ = diff_json(headers_of("6.1.0-47-amd64"), headers_of("6.1.0-50-amd64"), check=1)
    assert (doc["summary"]["crc"], doc["summary"]["old_exports"]) == (18107, 24618)
    for old, new in (("6.1.0-55-amd64", "6.1.0-56-amd64"), ("6.1.0-56-amd64", "6.1.0-57-amd64")):
        doc, p = diff_json(headers_of(old), headers_of(new), check=0)
        assert doc["changes"] == [] and doc["summary"]["compatible"]
        text = run_kmodsim("abi", "diff", headers_of(old), headers_of(new), check=0).stdout
        assert text.splitlines()[0] == f"{old} -> {new}: compatible"


@pytest.mark.slow
def test_61_to_612_equals_the_symvers_diff(headers_of, kver612):
    a, b = headers_of("6.1.0-57-amd64"), headers_of(kver612)
    want = expected_changes(exports_of(f"{a}/Module.symvers"), exports_of(f"{b}/Module.symvers"))
    doc, _ = diff_json(a, b, check=1)
    assert reported(doc) == want
    kinds = {c[1] for c in want}
    assert kinds == set(KINDS)  # every kind of change happens between 6.1 and 6.12


@pytest.mark.slow
def test_symbol_lists_decide_the_verdict(headers_of, kver612, tmp_path):
    """A module built against OLD still links against NEW unless an export it uses is removed, has
    another CRC, becomes GPL-only or enters another namespace: owner moves (depmod resolves them
    when the kernel is installed), additions, GPL-only exports opened and namespaces dropped are
    compatible. Checked on the real 6.1 -> 6.12 changes, the lists made from the oracle's diff."""
    a, b = headers_of("6.1.0-57-amd64"), headers_of(kver612)
    old, new = exports_of(f"{a}/Module.symvers"), exports_of(f"{b}/Module.symvers")
    want = expected_changes(old, new)
    by_sym: dict[str, set[str]] = {}
    for c in want:
        by_sym.setdefault(c[0], set()).add(c[1])

    def only(kinds, pred=lambda s: True):
        return sorted(s for s, k in by_sym.items() if k <= kinds and pred(s))

    def run(names, gki=False, check=0):
        f = tmp_path / f"list{len(list(tmp_path.iterdir()))}"
        body = "".join(f"  {n}\n" for n in names) if gki else "".join(f"{n}\n" for n in names)
        f.write_text(("[abi_symbol_list]\n# kmodsim test\n" if gki else "") + body)
        doc, _ = diff_json(a, b, "--symbol-list", f, check=check)
        assert reported(doc) == {c for c in want if c[0] in set(names)}
        assert doc["summary"]["in_scope"] == len(set(names))
        return doc

    moved = only({"owner"})
    assert len(moved) > 10 and {new[s][1] for s in moved} & {"vmlinux"} and {old[s][1] for s in moved} & {"vmlinux"}
    run(moved)
    run(only({"added"}), gki=True)
    dropped = only({"namespace"}, lambda s: not new[s][3])
    opened = only({"license"}, lambda s: not new[s][2])
    run(dropped + opened)  # (6.12 has a namespace dropped and no GPL-only export opened)
    assert dropped
    tightened = only({"license"}, lambda s: new[s][2])
    added_ns = only({"namespace"}, lambda s: new[s][3] != "")
    assert tightened and added_ns
    for names in (tightened[:1], added_ns[:1], only({"removed"})[:1], only({"crc"})[:1]):
        assert names
        run(moved + names, check=1)
    # a list naming only symbols that neither kernel exports: nothing in scope, compatible
    assert run(["kmodsim_no_such_export"])["changes"] == []


@pytest.mark.slow
def test_history_of_debian_61(headers_of, tmp_path):
    """``abi history`` over the ABIs in order: each step's counts are the oracle's."""
    dirs = [headers_of(k) for k in ABIS]
    p = run_kmodsim("abi", "history", "--json", *dirs, check=1)
    doc = json.loads(p.stdout)
    s0 = doc["steps"][0]["summary"]["crc"]  # headers: every CRC change unexplained (no BTF)
    assert [k["release"] for k in doc["kernels"]] == ABIS
    tables = [exports_of(f"{d}/Module.symvers") for d in dirs]
    for i, step in enumerate(doc["steps"]):
        want = expected_changes(tables[i], tables[i + 1])
        assert (step["old"], step["new"]) == (ABIS[i], ABIS[i + 1])
        assert {k: step["summary"][k] for k in KINDS} == {k: sum(c[1] == k for c in want) for k in KINDS}
    text = run_kmodsim("abi", "history", *dirs, check=1).stdout.splitlines()
    assert text[0].split() == ["step", "exports", *KINDS, "verdict", "causes"]
    assert len(text) == len(ABIS)
    assert text[1].startswith(f"{ABIS[0]} -> {ABIS[1]} ") and text[1].endswith(f"INCOMPATIBLE  {s0} unexplained")
    assert text[-1].endswith(" compatible")


# ---------------------------------------------------------------------------------------------
# Module trees: owners from kmod's depmod, the rest from Module.symvers
# ---------------------------------------------------------------------------------------------

def tree_exports(root: str, kver: str, headers: str) -> dict[str, tuple]:
    """The exports of an unpacked image: module exports and their owners from real depmod's
    modules.symbols (``depmod -n``: nothing written), vmlinux's from the headers' Module.symvers;
    CRC, license and namespace of each from that Module.symvers (the same build)."""
    out = subprocess.run([DEPMOD, "-n", "-b", root, kver], capture_output=True, text=True, check=True).stdout
    owners = dict(re.findall(r"^alias symbol:(\S+) (\S+)$", out, re.M))
    rows = exports_of(f"{headers}/Module.symvers")
    vmlinux = {s for s, r in rows.items() if r[1] == "vmlinux"}
    assert not vmlinux & owners.keys()
    # the oracle needs the headers to describe the same modules: every module export has a row
    assert owners.keys() == rows.keys() - vmlinux
    return {s: (r[0], owners.get(s, "vmlinux"), r[2], r[3]) for s, r in rows.items()}


@pytest.mark.slow
def test_tree_diff_61_to_612(debian61, debian612_tree, tmp_path):
    """Two root file systems (the unpacked image packages: lib/modules/<kver> and boot/vmlinuz):
    every change, owner moves included, equals the oracle's."""
    old = tree_exports(debian61.root, debian61.kver, debian61.headers_dir)
    new = tree_exports(debian612_tree.root, debian612_tree.kver, debian612_tree.headers_dir)
    want = expected_changes(old, new)
    t = time.monotonic()
    doc, p = diff_json(debian61.root, debian612_tree.root, check=1)
    elapsed = time.monotonic() - t
    assert reported(doc, btf=True) == want
    assert (doc["old"], doc["new"]) == (debian61.kver, debian612_tree.kver)
    moves = {(c[2][1] == "vmlinux", c[3][1] == "vmlinux") for c in want if c[1] == "owner"}
    assert moves == {(True, False), (False, True), (False, False)}  # vmlinux <-> module, module -> module
    # a module tree alone (lib/modules/<kver>) finds the kernel in the root's boot/ the same way
    doc2, _ = diff_json(debian61.modules_dir, debian612_tree.modules_dir, check=1)
    assert doc2 == doc
    print(f"abi diff of two trees: {elapsed:.1f} s")


@pytest.mark.slow
def test_tree_against_headers_compares_the_same(debian61, headers_of):
    """A root file system and the headers of the same build export the same: no change at all."""
    doc, p = diff_json(debian61.root, debian61.headers_dir, check=0)
    assert doc["changes"] == [] and p.stderr == ""
    # a vmlinuz alone knows vmlinux's exports only: the module exports are left out, and it says so
    doc, p = diff_json(debian61.headers_dir, debian61.vmlinuz, check=0)
    assert doc["changes"] == []
    assert doc["summary"]["old_exports"] == len([r for r in exports_of(f"{debian61.headers_dir}/Module.symvers").values()
                                                  if r[1] == "vmlinux"])
    assert p.stderr.count("\n") == 1 and "left out" in p.stderr


# ---------------------------------------------------------------------------------------------
# Fast: the installed headers, determinism, bad input
# ---------------------------------------------------------------------------------------------

def test_same_kernel_twice_is_compatible(headers61):
    rows = exports_of(f"{headers61}/Module.symvers")
    doc, p = diff_json(headers61, f"{headers61}/Module.symvers", check=0)
    assert doc == {"old": os.path.basename(headers61).removeprefix("linux-headers-"), "new": None, "changes": [],
                   "summary": {"old_exports": len(rows), "new_exports": len(rows),
                               **dict.fromkeys(KINDS, 0), "symbols_changed": 0, "incompatible": 0,
                               "compatible": True, "symbol_lists": [], "in_scope": None,
                               "causes": {"crc_changes": 0, "explained": 0, "unexplained": {}, "type_changes": []}}}
    assert p.stderr == ""


def test_output_is_deterministic(headers61, tmp_path):
    """A real change (one export of the real file dropped from a copy): the same bytes every run,
    text and JSON."""
    lines = open(f"{headers61}/Module.symvers").read().splitlines(keepends=True)
    new = tmp_path / "Module.symvers"
    new.write_text("".join(lines[:100] + lines[101:]))
    sym = lines[100].split("\t")[1]
    outs = {run_kmodsim("abi", "diff", headers61, new, check=1).stdout for _ in range(2)}
    assert len(outs) == 1 and f"\nremoved (1):\n  {sym}  " in outs.pop()
    docs = {run_kmodsim("abi", "diff", "--json", headers61, new, check=1).stdout for _ in range(2)}
    assert len(docs) == 1
    assert [(c["symbol"], c["change"]) for c in json.loads(docs.pop())["changes"]] == [(sym, "removed")]


@pytest.mark.parametrize("case", ["missing-old", "missing-new", "truncated", "truncated-end", "bad-crc", "missing-list",
                                  "bad-list", "tree-without-kernel", "several-kernels"])
def test_bad_input_is_one_line_and_exit_2(case, headers61, tmp_path):
    old, new, extra = headers61, headers61, []
    bad = tmp_path / "Module.symvers"
    if case == "missing-old":
        old = named = str(tmp_path / "nope")
    elif case == "missing-new":
        new = named = str(tmp_path / "nope")
    elif case in ("truncated", "bad-crc"):
        lines = open(f"{headers61}/Module.symvers").read().splitlines(keepends=True)[:10]
        cut = lines[4].split("\t")
        lines[4] = "\t".join(cut[:2]) + "\n" if case == "truncated" else "\t".join(["0xzz", *cut[1:]])
        bad.write_text("".join(lines))
        new, named = str(bad), f"{bad}:5:"
    elif case == "truncated-end":  # the file cut before the last line's (empty) namespace field
        text = open(f"{headers61}/Module.symvers").read()
        assert text.endswith("\t\n")
        bad.write_text(text[:-2])
        new, named = str(bad), f"{bad}:{text.count(chr(10))}:"
    elif case == "missing-list":
        extra, named = ["--symbol-list", str(tmp_path / "list")], str(tmp_path / "list")
    elif case == "bad-list":
        (tmp_path / "list").write_text("kmalloc\nkfree vfree\n")
        extra, named = ["--symbol-list", str(tmp_path / "list")], f"{tmp_path / 'list'}:2:"
    elif case == "tree-without-kernel":
        (tmp_path / "lib" / "modules" / "6.1.0-99-amd64").mkdir(parents=True)
        new, named = str(tmp_path), str(tmp_path / "lib" / "modules" / "6.1.0-99-amd64")
    else:
        for k in ("6.1.0-98-amd64", "6.1.0-99-amd64"):
            (tmp_path / "lib" / "modules" / k).mkdir(parents=True)
        new, named = str(tmp_path), str(tmp_path / "lib" / "modules")
    for fmt in ([], ["--json"]):
        p = run_kmodsim("abi", "diff", *fmt, old, new, *extra, check=2)
        assert p.stdout == ""
        assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"kmodsim: {named}"), p.stderr


def test_history_bad_input(headers61, tmp_path):
    p = run_kmodsim("abi", "history", headers61, tmp_path / "nope", check=2)
    assert p.stdout == "" and p.stderr == f"kmodsim: {tmp_path / 'nope'}: No such file or directory\n"


def test_usage():
    assert run_kmodsim("abi", check=2).stderr.startswith("usage: kmodsim abi")
    assert "diff" in run_kmodsim("abi", "-h", check=0).stdout
    assert "no such command 'nope'" in run_kmodsim("abi", "nope", check=2).stderr
    assert "OLD" in run_kmodsim("abi", "diff", "-h", check=0).stdout
    run_kmodsim("abi", "diff", "onlyone", check=2)
    assert "at least two" in run_kmodsim("abi", "history", "onlyone", check=2).stderr


def test_tree_with_a_bad_module(debian61, headers61, tmp_path):
    """A module tree beside its headers (``build``, as the headers package links it): the kernel's
    exports from build/Module.symvers, the tree's modules' own. A real module of the 6.1 image
    exports what its Module.symvers rows say (no change in scope); an unreadable one is one line on
    stderr and exit 2, the report printed all the same."""
    kver = os.path.basename(headers61).removeprefix("linux-headers-")
    assert kver == debian61.kver
    tree = tmp_path / "lib" / "modules" / kver
    (tree / "kernel" / "lib").mkdir(parents=True)
    (tree / "build").symlink_to(headers61)
    src = os.path.join(debian61.modules_dir, "kernel", "lib", "crc-itu-t.ko")
    (tree / "kernel" / "lib" / "crc-itu-t.ko").write_bytes(open(src, "rb").read())
    bogus = tree / "kernel" / "lib" / "bogus.ko"
    bogus.write_bytes(b"\x7fELF truncated")
    rows = exports_of(f"{headers61}/Module.symvers")
    mine = sorted(s for s, r in rows.items() if r[1] == "crc_itu_t")
    assert mine == ["crc_itu_t", "crc_itu_t_table"]
    names = tmp_path / "list"
    names.write_text("".join(f"{s}\n" for s in [*mine, "_printk", "kfree"]))
    doc, p = diff_json(headers61, tree, "--symbol-list", names, check=2)
    assert doc["changes"] == [] and doc["summary"]["new_exports"] == 2 + sum(
        rows[s][1] == "vmlinux" for s in ("_printk", "kfree"))
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"kmodsim: {bogus}: "), p.stderr
    # without the list: every other module export of the build is missing from this tree
    doc, p = diff_json(headers61, tree, check=2)
    assert {c["symbol"] for c in doc["changes"]} == {s for s, r in rows.items() if r[1] not in ("vmlinux", "crc_itu_t")}
