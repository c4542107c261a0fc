"""``kmodsim series`` on a real series (tests/series_fixture.py: five commits over a small module
tree built by Debian's 6.1 kbuild), against oracles that do not use it: a plain loop of
``git checkout`` / ``git apply`` + ``make -C <headers> M=`` + ``kmodsim check`` per step, the
Module.symvers kbuild writes, ``kmodsim footprint`` of the modules built at each step; and the
patch readers against ``git format-patch`` itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import run_kmodsim
from series_fixture import BASE, git, make_repo

# ---------------------------------------------------------------------------------------------
# Fast: the patch readers and bad input (git only, no build)
# ---------------------------------------------------------------------------------------------


def _subjects(repo: Path, rev: str) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%s", rev).splitlines()


def test_three_patch_forms_read_as_the_same_steps(tmp_path):
    """format-patch files, their mbox and a quilt directory: the same patches, named by the
    commits' subjects (git log's), each the text git format-patch wrote for it."""
    from kmodsim.series import read_series

    from series_fixture import export_patches

    repo, shas = make_repo(tmp_path)
    forms = export_patches(repo, shas[0], tmp_path)
    files = sorted(forms["format-patch"].iterdir())
    want = [(s, f.read_text()) for s, f in zip(_subjects(repo, f"{shas[0]}..HEAD"), files, strict=True)]
    assert len(want) == 5
    for form in ("format-patch", "mbox", "quilt"):
        got = [(p.name, p.text) for p in read_series([str(forms[form])])]
        assert got == want, form
    # the quilt series file given itself; the files given one by one, in the order given
    assert [p.name for p in read_series([str(forms["quilt"] / "series")])] == [s for s, _ in want]
    assert [p.name for p in read_series([str(files[1]), str(files[0])])] == [want[1][0], want[0][0]]


def test_mbox_as_lore_serves_it(tmp_path):
    """A thread's mbox: a cover letter (no diff), the patches in arrival order (not [PATCH n/m]'s),
    mboxrd's ">From " escaping; the steps come out in n order, unescaped, the cover letter passed over."""
    from kmodsim.series import read_series

    repo, shas = make_repo(tmp_path)
    git(repo, "commit", "-q", "--amend", "-m", "kss_lib: restore the semicolon kss_add lost",
        "-m", "From the point of view of the build: fixed.")
    out = tmp_path / "thread"
    git(repo, "format-patch", "-q", "--cover-letter", "-n", "-o", str(out), f"{shas[0]}..HEAD")
    msgs = [f.read_text() for f in sorted(out.iterdir())]
    assert msgs[0].count("diff --git") == 0 and "[PATCH 0/5]" in msgs[0]
    lore = [msgs[0], *reversed(msgs[1:])]
    mbox = tmp_path / "thread.mbox"
    mbox.write_text("".join(m.replace("\nFrom the point", "\n>From the point") for m in lore))
    got = read_series([str(mbox)])
    assert [p.name for p in got] == _subjects(repo, f"{shas[0]}..HEAD")
    # the escaped line given back as format-patch wrote it (the blank line before a separator is the mbox's)
    assert got[-1].text.rstrip("\n") == msgs[-1].rstrip("\n")


def test_built_modules_of_a_build_moved_since(basic_build):
    """kbuild's modules.order names its modules by the absolute path of the build directory (6.1):
    a build made in a scratch directory and renamed (the kbuild cache does that) still lists its
    own .ko files."""
    from kmodsim.kbuild import built_modules

    order = (basic_build / "modules.order").read_text().split()
    assert order and all(os.path.isabs(p) and not p.startswith(str(basic_build)) for p in order)
    assert built_modules(str(basic_build)) == [os.path.basename(p) for p in order]
    assert sorted(built_modules(str(basic_build))) == sorted(p.name for p in basic_build.glob("*.ko"))


@pytest.mark.parametrize("case", ["no-src", "neither", "both", "no-patch-file", "not-a-patch", "quilt-missing",
                                  "quilt-option", "not-git", "bad-range", "empty-range", "not-headers",
                                  "modules-outside", "expect-metric", "expect-way", "expect-no-struct",
                                  "with-missing"])
def test_series_bad_input(case, tmp_path):
    """One line on stderr naming the input and the problem, exit 2, no traceback."""
    repo, shas = make_repo(tmp_path)
    headers = str(tmp_path)  # only reached by "not-headers": the other inputs are read first
    junk = tmp_path / "junk.txt"
    junk.write_text("not a patch\n")
    quilt = tmp_path / "q"
    quilt.mkdir()
    argv: list[str]
    if case == "no-src":
        argv, named = ["--src", str(tmp_path / "nowhere"), "-p", str(junk)], str(tmp_path / "nowhere")
    elif case == "neither":
        argv, named = ["--src", str(repo)], str(repo)
    elif case == "both":
        argv, named = ["--src", str(repo), "HEAD~1..HEAD", "-p", str(junk)], str(repo)
    elif case == "no-patch-file":
        argv, named = ["--src", str(repo), "-p", str(tmp_path / "none.patch")], str(tmp_path / "none.patch")
    elif case == "not-a-patch":
        argv, named = ["--src", str(repo), "-p", str(junk)], str(junk)
    elif case == "quilt-missing":
        (quilt / "series").write_text("gone.patch\n")
        argv, named = ["--src", str(repo), "-p", str(quilt)], str(quilt / "gone.patch")
    elif case == "quilt-option":
        (quilt / "series").write_text("a.patch -R\n")
        argv, named = ["--src", str(repo), "-p", str(quilt)], str(quilt / "series")
    elif case == "not-git":
        plain = tmp_path / "plain"
        shutil.copytree(BASE, plain)
        argv, named = ["--src", str(plain), "HEAD~1..HEAD"], str(plain)
    elif case == "bad-range":
        argv, named = ["--src", str(repo), "nosuchbranch..HEAD"], str(repo)
    elif case == "empty-range":
        argv, named = ["--src", str(repo), "HEAD..HEAD"], str(repo)
    elif case == "not-headers":
        argv, named = ["--src", str(repo), "HEAD~1..HEAD"], headers
    elif case == "modules-outside":
        argv, named = ["--src", str(repo), "HEAD~1..HEAD", "--modules", "/"], "/"
    elif case == "expect-metric":
        argv, named = ["--src", str(repo), "HEAD~1..HEAD", "--struct", "x", "--expect", "calls=down,speed=up"], "--expect"
    elif case == "expect-way":
        argv, named = ["--src", str(repo), "HEAD~1..HEAD", "--expect", "size=sideways"], "--expect"
    elif case == "with-missing":
        argv, named = ["--src", str(repo), "HEAD~1..HEAD", "--with", str(tmp_path / "gone.ko")], str(tmp_path / "gone.ko")
    else:
        argv, named = ["--src", str(repo), "HEAD~1..HEAD", "--expect", "calls=down"], "--expect"
    r = run_kmodsim("series", "--kernel", headers, *argv)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kmodsim: {named}: "), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    assert git(repo, "status", "--porcelain", "--ignored") == ""  # DIR untouched


def test_series_struct_not_defined_at_the_base(headers61, tmp_path):
    """--struct of a table the census paths do not define: one line naming it, exit 2, before any build."""
    repo, _shas = make_repo(tmp_path)
    r = run_kmodsim("series", "--src", repo, "--kernel", headers61, "HEAD~1..HEAD", "--struct", "kss_nope")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"kmodsim: struct kss_nope: no definition at the base in . of {repo} (name where the census " \
                       "reads with --census)\n"


# ---------------------------------------------------------------------------------------------
# Slow: the series built with kbuild, against a plain loop
# ---------------------------------------------------------------------------------------------

# gcc's words in the C locale (the kernel's Makefile unexports LC_ALL: LANG and LC_* too)
C_LOCALE = {**{k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))},
            "LC_ALL": "C", "LANG": "C", "LC_CTYPE": "C", "LC_MESSAGES": "C"}

def _make(headers: str, d: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", headers, f"M={d}", "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"],
                          capture_output=True, text=True, env=C_LOCALE)


def _oracle_state(headers: str, d: Path) -> dict:
    """What a plain build of ``d`` gives, read with other tools: the modules (modules.order), their
    exports (the Module.symvers kbuild wrote), the error findings of ``kmodsim check`` of them and
    their sizes (``kmodsim footprint``)."""
    kos = [str(d / os.path.basename(line)) for line in (d / "modules.order").read_text().split()]
    exports: dict[str, list[str]] = {}
    for row in (d / "Module.symvers").read_text().splitlines():
        _crc, sym, mod, _kind, *_ = row.split("\t")
        exports.setdefault(os.path.basename(mod), []).append(sym)
    chk = json.loads(run_kmodsim("check", "--kernel", headers, "--no-cache", "--format", "json", *kos).stdout)
    errors = {(f["check"], f["symbol"], f["module"]) for f in chk["findings"] if f["severity"] == "error"}
    fp = json.loads(run_kmodsim("footprint", "--kernel", headers, "--json", *kos, check=0).stdout)
    return {"modules": [Path(k).stem for k in kos], "exports": {m: sorted(s) for m, s in exports.items()},
            "errors": errors, "sizes": {m["name"]: m["size"] for m in fp["modules"]}}


def _series_json(*argv: str) -> tuple[int, dict]:
    r = run_kmodsim("series", *argv, "--json")
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def _compare_with_loop(report: dict, headers: str, trees: list[Path | None]) -> None:
    """Each step of ``report`` against a plain build of ``trees[i]`` (None: the step did not apply)."""
    prev = None
    first_bad = None
    for step, tree in zip(report["steps"], trees, strict=True):
        if tree is None:
            assert step["applies"] is False and step["builds"] is None and step["links"] is None, step["name"]
            first_bad = first_bad if first_bad is not None else step["index"]
            continue
        built = _make(headers, tree)
        assert step["builds"] is (built.returncode == 0), (step["name"], built.stdout[-1500:], built.stderr[-1500:])
        if built.returncode != 0:
            assert step["links"] is None and step["build"]["errors"]
            assert step["build"]["errors"][0] in built.stderr  # the compiler's own first error line
            first_bad = first_bad if first_bad is not None else step["index"]
            continue
        want = _oracle_state(headers, tree)
        mods = step["modules"]
        assert [m["name"] for m in mods] == want["modules"]
        assert {m["name"]: m["exports"] for m in mods if m["exports"]} == want["exports"]
        assert {m["name"]: m["size"] for m in mods} == want["sizes"]
        new = {(f["check"], f["symbol"], f["module"]) for f in step["new_findings"] if f["severity"] == "error"}
        if prev is None:
            assert new == set()
        else:
            assert new == want["errors"] - prev["errors"], step["name"]
            for m in mods:
                assert m["size_delta"] == (m["size"] - prev["sizes"][m["name"]] if m["name"] in prev["sizes"] else None)
        assert step["links"] is (not new if prev is not None else not want["errors"])
        if new and step["index"] and first_bad is None:
            first_bad = step["index"]
        prev = want
    assert report["verdict"]["bisectable"] is (first_bad is None)
    assert (report["verdict"]["first_bad"] or {}).get("index") == first_bad


@pytest.mark.slow
def test_series_of_a_git_range_matches_a_plain_loop(headers61, tmp_path):
    if shutil.which("make") is None:
        from conftest import need

        need("make")
    repo, shas = make_repo(tmp_path)
    refs = git(repo, "for-each-ref")
    rc, report = _series_json("--src", str(repo), "--kernel", headers61, f"{shas[0]}..main", "--times")
    assert rc == 1
    assert [s["name"] for s in report["steps"]] == ["(base)", *_subjects(repo, f"{shas[0]}..main")]
    assert [s["commit"] for s in report["steps"]] == shas
    # the oracle: each commit checked out in a clone of its own, built cold by plain make
    trees = []
    for i, sha in enumerate(shas):
        t = tmp_path / f"oracle{i}"
        git(tmp_path, "clone", "-q", str(repo), str(t))
        git(t, "checkout", "-q", "--detach", sha)
        trees.append(t)
    _compare_with_loop(report, headers61, trees)
    assert report["verdict"]["first_bad"] == {"index": 3, "name": "kss_drv: export its own kss_version",
                                              "flags": ["new-link-errors"]}
    assert [s["flags"] for s in report["steps"]] == [[], [], [], ["new-link-errors"], ["does-not-build"], []]
    # the moves, against the commits' own diffs (git's, not the report's)
    moved = {s["index"]: s["exports"]["moved"] for s in report["steps"] if s["exports"]["moved"]}
    assert moved == {2: [{"symbol": "kss_scale", "from": ["kss_lib"], "to": ["kss_drv"]}]}
    assert report["steps"][3]["new_findings"][0]["check"] == "duplicate-export"
    assert report["steps"][5]["fixed_findings"][0]["symbol"] == "kss_version"
    # one build tree: the cold build compiles every object, a step only the objects of the .c files it changed
    objs = sorted(p.stem + ".o" for p in BASE.glob("*.c"))
    assert sorted(report["steps"][0]["build"]["compiled"]) == objs
    assert sorted(report["steps"][0]["build"]["linked"]) == ["kss_drv.ko", "kss_lib.ko"]
    owner = {"kss_lib_main.c": "kss_lib.ko", "kss_lib_util.c": "kss_lib.ko", "kss_drv.c": "kss_drv.ko"}  # its Kbuild
    for i in (1, 2, 3, 5):
        changed = git(repo, "diff", "--name-only", shas[i - 1], shas[i]).split()
        assert sorted(report["steps"][i]["build"]["compiled"]) == sorted(c[:-2] + ".o" for c in changed), i
        assert sorted(report["steps"][i]["build"]["linked"]) == sorted({owner[c] for c in changed}), i
    cold, one_file = report["steps"][0]["build"], report["steps"][1]["build"]
    print(f"series build times: cold {cold['seconds']:.2f}s ({cold['cpu_seconds']:.2f}s CPU); one-file step "
          f"{one_file['seconds']:.2f}s ({one_file['cpu_seconds']:.2f}s CPU)")
    assert 0 < one_file["cpu_seconds"] and 0 < cold["cpu_seconds"]
    # DIR untouched: no file written, no ref, no worktree added
    assert git(repo, "status", "--porcelain", "--ignored") == ""
    assert git(repo, "for-each-ref") == refs and len(git(repo, "worktree", "list").splitlines()) == 1


@pytest.mark.slow
def test_series_as_patches_three_ways_gives_one_report(headers61, tmp_path):
    """format-patch files, one mbox, a quilt directory: byte-identical reports; the same steps as
    the git range (but for the commit ids and applies, which a range does not ask)."""
    from series_fixture import export_patches

    repo, shas = make_repo(tmp_path)
    forms = export_patches(repo, shas[0], tmp_path)
    before = {p.name: p.read_bytes() for p in BASE.iterdir()}
    outs = {}
    for form, path in forms.items():
        r = run_kmodsim("series", "--src", str(BASE), "--kernel", headers61, "--patches", str(path), "--json")
        assert r.returncode == 1, r.stderr
        outs[form] = r.stdout
    assert outs["mbox"] == outs["format-patch"] == outs["quilt"]
    assert {p.name: p.read_bytes() for p in BASE.iterdir()} == before  # the user's DIR untouched
    report = json.loads(outs["mbox"])
    assert [s["applies"] for s in report["steps"]] == [None, True, True, True, True, True]
    _rc, ranged = _series_json("--src", str(repo), "--kernel", headers61, f"{shas[0]}..HEAD")
    for a, b in zip(report["steps"], ranged["steps"], strict=True):
        assert {**a, "commit": None, "applies": None} == {**b, "commit": None, "applies": None}
    assert report["verdict"] == ranged["verdict"]


@pytest.mark.slow
def test_series_out_of_order_patch_does_not_apply(headers61, tmp_path):
    """The move (step 2) before the step it depends on: it does not apply, as git apply says on a
    copy of the tree; the rest goes on from the tree as it is. Checked step by step against a
    plain git apply loop, and the failed hunk named in git apply's own words."""
    from series_fixture import export_patches

    repo, shas = make_repo(tmp_path)
    files = sorted(export_patches(repo, shas[0], tmp_path)["format-patch"].iterdir())
    order = [files[1], files[0], *files[2:]]
    # through the library this time, both renderings of one result
    from kmodsim.render.series import series_json, series_text
    from kmodsim.series import SeriesRequest, run_series

    res = run_series(SeriesRequest(str(BASE), headers61, patches=[str(f) for f in order]))
    report = json.loads(json.dumps(series_json(res)))
    text = series_text(res)
    # the oracle: a copy of the tree, the patches applied by git apply one after the other, each
    # state copied aside to be built by plain make
    work = tmp_path / "work"
    shutil.copytree(BASE, work)
    git(work, "init", "-q")
    trees: list[Path | None] = [tmp_path / "state0"]
    shutil.copytree(work, tmp_path / "state0", ignore=shutil.ignore_patterns(".git"))
    messages = {}
    for i, f in enumerate(order, 1):
        p = subprocess.run(["git", "apply", str(f)], cwd=work, capture_output=True, text=True,
                           env=C_LOCALE)
        if p.returncode != 0:
            trees.append(None)
            messages[i] = p.stderr
            continue
        shutil.copytree(work, tmp_path / f"state{i}", ignore=shutil.ignore_patterns(".git"))
        trees.append(tmp_path / f"state{i}")
    assert [t is not None for t in trees] == [True, False, True, False, True, True]
    _compare_with_loop(report, headers61, trees)
    for i, stderr in messages.items():
        errors = report["steps"][i]["apply"]["errors"]
        assert errors and all(f"error: {e}" in stderr for e in errors)
        assert any(e.startswith("patch failed: ") for e in errors)
    assert report["verdict"]["first_bad"]["index"] == 1
    head, *lines = text.splitlines()[2:9]
    rows = {int(line.split()[0]): line for line in lines}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    col = {c: head.index(c) for c in ("apply", "build", "link")}
    word = {None: "-", True: "ok", False: "FAIL"}
    for i, step in enumerate(report["steps"]):
        assert step["name"] in rows[i] and rows[i].rstrip().endswith(", ".join(step["flags"]))
        for c, key in (("apply", "applies"), ("build", "builds"), ("link", "links")):
            assert rows[i][col[c]:col[c] + 5].strip() == word[step[key]], (i, c)
    assert text.endswith(f"verdict: not bisectable: the first bad step is 1 ({report['steps'][1]['name']}): "
                         "does-not-apply")
    assert "  git apply: patch failed: kss_lib_util.c:" in text


@pytest.mark.slow
def test_series_in_a_subdirectory_with_a_new_module_directory(headers61, tmp_path):
    """DIR inside a repository (drivers/ of it); a commit adds a module directory (kss2) that uses
    kss_lib's kss_add. By default only the directory the series touches is built: modpost finds
    kss_add undefined, as a plain make of that directory does. With --modules kss --modules kss2
    each directory is built with the Module.symvers of the ones before (KBUILD_EXTRA_SYMBOLS): it
    builds, as plain make does given the same, and kss2 is a new module of that step."""
    repo = tmp_path / "repo"
    shutil.copytree(BASE, repo / "drivers" / "kss")
    (repo / "README").write_text("top\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    (repo / "drivers" / "kss2").mkdir()
    (repo / "drivers" / "kss2" / "Kbuild").write_text("obj-m += kss2.o\n")
    (repo / "drivers" / "kss2" / "kss2.c").write_text(
        "// SPDX-License-Identifier: GPL-2.0\n#include <linux/module.h>\n\nint kss_add(int a, int b);\n\n"
        "int kss2_twice(int a)\n{\n\treturn kss_add(a, a);\n}\nEXPORT_SYMBOL(kss2_twice);\n\nMODULE_LICENSE(\"GPL\");\n")
    (repo / "README").write_text("top\nkss2\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "kss2: a new module using kss_add")
    src = str(repo / "drivers")

    rc, alone = _series_json("--src", src, "--kernel", headers61, "main~1..main")
    assert rc == 1 and alone["module_dirs"] == ["kss2"]
    assert [s["builds"] for s in alone["steps"]] == [True, False]  # the base: no kss2 yet, nothing built
    plain = tmp_path / "plain"
    shutil.copytree(repo / "drivers", plain)
    p = _make(headers61, plain / "kss2")
    assert p.returncode != 0
    assert alone["steps"][1]["build"]["errors"][0] in (p.stdout + p.stderr).replace(f"{plain}/", "")
    assert 'ERROR: modpost: "kss_add" [kss2/kss2.ko] undefined!' == alone["steps"][1]["build"]["errors"][0]

    rc, both = _series_json("--src", src, "--kernel", headers61, "main~1..main", "--modules", "kss", "--modules", "kss2")
    assert rc == 0 and both["module_dirs"] == ["kss", "kss2"] and both["verdict"]["bisectable"]
    assert _make(headers61, plain / "kss").returncode == 0
    p = subprocess.run(["make", "-C", headers61, f"M={plain / 'kss2'}", "CONFIG_DEBUG_INFO_BTF_MODULES=",
                        f"KBUILD_EXTRA_SYMBOLS={plain / 'kss' / 'Module.symvers'}", "modules"],
                       capture_output=True, text=True, env=C_LOCALE)
    assert p.returncode == 0, p.stderr
    step = both["steps"][1]
    assert [m["path"] for m in step["modules"]] == ["kss/kss_lib.ko", "kss/kss_drv.ko", "kss2/kss2.ko"]
    kss2 = step["modules"][2]
    assert kss2["size_delta"] is None and kss2["exports"] == ["kss2_twice"]
    symvers = [r.split("\t")[1] for r in (plain / "kss2" / "Module.symvers").read_text().splitlines()]
    assert symvers == ["kss2_twice"]
    fp = json.loads(run_kmodsim("footprint", "--kernel", headers61, "--json", plain / "kss2" / "kss2.ko", check=0).stdout)
    assert kss2["size"] == fp["modules"][0]["size"]
    assert step["exports"]["added"] == [{"symbol": "kss2_twice", "module": "kss2"}]
    assert step["build"]["compiled"] == ["kss2/kss2.o"]  # kss's objects not recompiled


@pytest.mark.slow
def test_series_ops_census_per_step_equals_kmodsim_ops_of_each_step(headers61, tmp_path):
    """--struct: each step's counts equal ``kmodsim ops --struct`` of the tree checked out at that
    step (its JSON: members, calls by idiom, NULL tests, assignments, whole-table copies), and the
    delta is the difference of those; the conversion series builds at every step and its calls,
    NULL tests and assignments fall."""
    from series_fixture import make_ops_repo

    repo, shas = make_ops_repo(tmp_path)
    rc, report = _series_json("--src", str(repo), "--kernel", headers61, f"{shas[0]}..main", "--struct", "kso_ops",
                              "--expect", "calls=down,null_tests=down", "--expect", "assignments=down,size=down")
    assert rc == 0 and report["struct"] == "kso_ops" and report["verdict"]["bisectable"]
    assert report["expect"] == {"calls": "down", "null_tests": "down", "assignments": "down", "size": "down"}
    indirect = ("p->m()", "x.m()")
    prev = None
    for step, sha in zip(report["steps"], shas, strict=True):
        t = tmp_path / f"at-{sha[:12]}"
        git(tmp_path, "clone", "-q", str(repo), str(t))
        git(t, "checkout", "-q", "--detach", sha)
        r = run_kmodsim("ops", t, "--struct", "kso_ops", "--json")
        assert r.returncode in (0, 1), r.stderr
        c = json.loads(r.stdout)
        sites = [s["idiom"] for m in c["members"] for s in m["call_sites"]]
        want = {"members": len(c["members"]),
                "calls": sum(i in indirect or i.startswith("INDIRECT_CALL") for i in sites),
                "static_calls": sum(not (i in indirect or i.startswith("INDIRECT_CALL")) for i in sites),
                "null_tests": sum(len(m["null_checks"]) for m in c["members"]),
                "assignments": sum(len(m["assignments"]) for m in c["members"]) + len(c["copies"])}
        got = dict(step["ops"])
        delta = got.pop("delta")
        assert got == want, step["name"]
        assert delta == (None if prev is None else {k: want[k] - prev[k] for k in want})
        prev = want
    counts = [s["ops"] for s in report["steps"]]
    assert [c["calls"] for c in counts] == [3, 2, 1, 0]
    assert [c["null_tests"] for c in counts] == [2, 2, 1, 0]
    assert [c["assignments"] for c in counts] == [1, 1, 1, 0]
    # a metric expected to go the other way: every step that moves it is flagged, the first one is the first bad
    text = run_kmodsim("series", "--src", repo, "--kernel", headers61, f"{shas[0]}..main", "--struct", "kso_ops",
                       "--expect", "null_tests=up", check=1).stdout
    assert "ops: members 3, calls 2 (-1), static calls 0, null tests 2, assignments 1" in text
    assert text.count("wrong way: null_tests -1 (expected up)") == 2  # steps 2 and 3
    assert text.rstrip().endswith("verdict: not bisectable: the first bad step is 2 (kso: neg is always set: call it "
                         "directly): wrong-way")


def test_apply_reports_offsets_and_fuzz_in_git_apply_s_words(tmp_path):
    """A step's patch applied to a tree where its lines moved (git apply: "Hunk #1 succeeded at L
    (offset K lines)"), and to one where a context line changed (git apply refuses it; with one line
    of context, -C1, it applies: patch's fuzz). Checked against git apply run here on the same trees."""
    from kmodsim.series import read_series
    from kmodsim.series.steps import _apply

    from series_fixture import export_patches

    repo, shas = make_repo(tmp_path)
    patch = read_series([str(sorted(export_patches(repo, shas[0], tmp_path)["format-patch"].iterdir())[0])])[0]
    env = {**os.environ, "LC_ALL": "C"}

    def tree(name: str, edit) -> Path:
        t = tmp_path / name
        shutil.copytree(BASE, t)
        git(t, "init", "-q")
        f = t / "kss_lib_util.c"
        f.write_text(edit(f.read_text()))
        return t

    moved = tree("moved", lambda s: s.replace("#include <linux/module.h>\n", "#include <linux/module.h>\n\n\n\n"))
    said = subprocess.run(["git", "apply", "-v", "--check"], cwd=moved, input=patch.text, capture_output=True,
                          text=True, env=env).stderr
    got = _apply(str(moved), patch)
    assert got.ok is True and got.errors == []
    assert got.offsets == ["kss_lib_util.c: hunk #1 at 12 (offset 3 lines)"]
    assert "Hunk #1 succeeded at 12 (offset 3 lines)." in said

    fuzzy = tree("fuzzy", lambda s: s.replace("\treturn x * kss_factor;\n", "\treturn kss_factor * x;\n"))
    strict = subprocess.run(["git", "apply", "--check"], cwd=fuzzy, input=patch.text, capture_output=True,
                            text=True, env=env)
    loose = subprocess.run(["git", "apply", "--check", "-C1"], cwd=fuzzy, input=patch.text, capture_output=True,
                           text=True, env=env)
    assert strict.returncode != 0 and loose.returncode == 0
    got = _apply(str(fuzzy), patch)
    assert got.ok is False and got.fuzz is True
    assert got.errors == [ln.removeprefix("error: ") for ln in strict.stderr.splitlines()
                          if ln.startswith("error: ") and ln != "error: while searching for:"]
    assert (fuzzy / "kss_lib_util.c").read_text().count("kss_mul") == 0  # all or nothing: the tree unchanged


# ---------------------------------------------------------------------------------------------
# --reorder (slow: kbuild), against the same plain loop
# ---------------------------------------------------------------------------------------------

def _loop_trees(tmp_path: Path, patches: list[Path], name: str) -> list[Path | None]:
    """The plain loop's trees: a copy of the base, the patches applied by git apply one after the
    other, each state copied aside (None: the patch did not apply there)."""
    work = tmp_path / f"work-{name}"
    shutil.copytree(BASE, work)
    git(work, "init", "-q")
    trees: list[Path | None] = [tmp_path / f"{name}0"]
    shutil.copytree(work, tmp_path / f"{name}0", ignore=shutil.ignore_patterns(".git"))
    for i, f in enumerate(patches, 1):
        p = subprocess.run(["git", "apply", str(f)], cwd=work, capture_output=True, text=True, env=C_LOCALE)
        if p.returncode != 0:
            trees.append(None)
            continue
        shutil.copytree(work, tmp_path / f"{name}{i}", ignore=shutil.ignore_patterns(".git"))
        trees.append(tmp_path / f"{name}{i}")
    return trees


def _pair(tmp_path: Path) -> dict[str, Path]:
    from series_fixture import add_drv_version, drop_lib_version, drop_lib_version_keep_drv, write_patch

    return {"add": write_patch(tmp_path, "add", [add_drv_version]),
            "drop": write_patch(tmp_path, "drop", [drop_lib_version]),
            "drop-keep": write_patch(tmp_path, "drop-keep", [add_drv_version, drop_lib_version_keep_drv])}


@pytest.mark.slow
def test_reorder_two_independent_patches(headers61, tmp_path):
    """kss_drv exports its own kss_version, then kss_lib drops its one: step 1 exports it twice.
    The other order is good; --reorder finds it building one tree more than the given order (the
    last tree is the same either way: the two patches touch different files). The given order's
    report is plain series' byte for byte; both orders' verdicts are the plain loop's."""
    p = _pair(tmp_path)
    given = [p["add"], p["drop"]]
    argv = ["--src", str(BASE), "--kernel", headers61, *(a for f in given for a in ("-p", str(f)))]
    plain = run_kmodsim("series", *argv, "--json")
    rc, report = _series_json(*argv, "--reorder")
    assert rc == 1 and plain.returncode == 1
    assert json.loads(plain.stdout) == {**report, "reorder": None}
    _compare_with_loop(report, headers61, _loop_trees(tmp_path, given, "given"))
    o = report["reorder"]
    assert o["order"] == [2, 1] and o["given_good"] is False and o["needs"] == []
    assert o["given_builds"] == 3 and o["builds"] == 4  # the base, 1, 1+2; then 2 alone (2+1 is 1+2's tree)
    assert o["ruled_out"] == [{"after": [], "step": 1, "flags": ["new-link-errors"], "same_as": None,
                               "reason": ["1 new error finding: duplicate-export: kss_drv: 'kss_version' exported "
                                          "twice. Previous export was in kss_lib.ko"]}]
    found = {"steps": o["steps"], "verdict": {"bisectable": True, "first_bad": None}}
    assert [s["name"] for s in o["steps"]] == ["(base)", "kss_lib: drop kss_version",
                                               "kss_drv: export its own kss_version"]
    _compare_with_loop(found, headers61, _loop_trees(tmp_path, [p["drop"], p["add"]], "found"))
    text = run_kmodsim("series", *argv, "--reorder", check=1).stdout
    assert "reorder: an order in which every step is good: 2, 1 (the given order's first bad step is 1)" in text
    assert "trees built: 4 (3 for the given order, 1 for the search)" in text


@pytest.mark.slow
def test_reorder_of_a_good_order_changes_nothing(headers61, tmp_path):
    """The good order given: the same report as plain series, the order kept, only its trees built."""
    p = _pair(tmp_path)
    argv = ["--src", str(BASE), "--kernel", headers61, "-p", str(p["drop"]), "-p", str(p["add"])]
    rc, report = _series_json(*argv, "--reorder")
    assert rc == 0 and report["verdict"]["bisectable"]
    o = report["reorder"]
    assert o["given_good"] is True and o["order"] == [1, 2] and o["ruled_out"] == []
    assert o["builds"] == o["given_builds"] == 3 and o["steps"] == report["steps"]
    assert json.loads(run_kmodsim("series", *argv, "--json", check=0).stdout) == {**report, "reorder": None}


@pytest.mark.slow
def test_reorder_proves_no_order_exists(headers61, tmp_path):
    """A dependent pair: 'drop-keep' changes a line 'add' adds (git apply refuses it first, as git
    apply says here), and 'add' first exports kss_version twice (kmodsim check of a plain build
    says so). --reorder says no order exists, and why, in those two facts."""
    p = _pair(tmp_path)
    given = [p["drop-keep"], p["add"]]
    rc, report = _series_json("--src", str(BASE), "--kernel", headers61,
                              *(a for f in given for a in ("-p", str(f))), "--reorder")
    assert rc == 1
    trees = _loop_trees(tmp_path, given, "given")
    assert trees[1] is None  # git apply refuses drop-keep at the base
    assert _loop_trees(tmp_path, [p["add"], p["drop-keep"]], "other")[2] is not None  # but applies after add
    _compare_with_loop(report, headers61, trees)
    o = report["reorder"]
    assert o["order"] is None and o["steps"] is None
    assert o["needs"] == [{"step": 1, "after": [2]}]
    facts = {(tuple(x["after"]), x["step"]): x for x in o["ruled_out"]}
    assert set(facts) == {((), 1), ((), 2)}
    assert facts[((), 1)]["flags"] == ["does-not-apply"]
    assert facts[((), 1)]["reason"][0] == f"git apply: {report['steps'][1]['apply']['errors'][0]}"
    assert facts[((), 2)]["flags"] == ["new-link-errors"]
    # the oracle of the second fact: kmodsim check of a plain build of the base + 'add'
    assert report["steps"][2]["flags"] == ["new-link-errors"]
    assert o["builds"] == o["given_builds"] == 2  # the base and 'add' alone: nothing more to build
    text = run_kmodsim("series", "--src", str(BASE), "--kernel", headers61,
                       *(a for f in given for a in ("-p", str(f))), "--reorder", check=1).stdout
    assert "reorder: no order of the 2 patches in which every step is good" in text
    assert "  1 does not apply to the base; it applies after 2" in text
