"""``scan`` and ``check`` past one machine: each PATH one task on a dask.distributed cluster
(``--scheduler``, :func:`kmodsim.tree.scan_groups` over :mod:`kmodsim.cluster`).

The oracle of the merge is the embedded default: the same command with no scheduler (one scan of
every path, in this process and its worker processes). Whichever runs the tasks, stdout must be
the same bytes (scan's text and JSON, check's text, JSON and SARIF), stderr the same lines, the
exit status the same. What the trees hold is checked against what built them: Debian's
``modules.order`` and kbuild's ``modules.order`` and ``Module.symvers``. The clusters are
``LocalCluster`` s (``--scheduler local:2``): the same scheduler, workers and pickling as on a
cluster of hosts, without the hosts.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from functools import partial

import pytest

import oracles
from conftest import run_kmodsim, settle_timestamps

# ---------------------------------------------------------------------------------------------
# Fast: the merge of per-path parts, addresses, the default path's imports
# ---------------------------------------------------------------------------------------------


def _basic_names(build) -> list[str]:
    """kbuild's modules.order: the modules of the build, in its order."""
    return [os.path.basename(line) for line in (build / "modules.order").read_text().split()]


def _exports(build) -> dict[str, dict[str, tuple[int, bool, str]]]:
    """kbuild's Module.symvers by module name: {name: {symbol: (crc, gpl, namespace)}}."""
    return {os.path.basename(mod): rows for mod, rows in oracles.symvers(str(build / "Module.symvers")).items()}


@pytest.fixture
def mixed_inputs(basic_build, tmp_path):
    """PATHs of every kind a scan merges: a tree holding a real module, a gzip-compressed one
    (passed over, as Debian 12's depmod does) and a malformed one; a kbuild tree; a file of it
    named again; a file of the first tree named again; a missing file."""
    tree = tmp_path / "tree" / "kernel"
    tree.mkdir(parents=True)
    shutil.copy(basic_build / "kms_a.ko", tree / "kms_a.ko")
    (tree / "kms_b.ko.gz").write_bytes(gzip.compress((basic_build / "kms_b.ko").read_bytes()))
    (tree / "bad.ko").write_bytes(b"\x7fELF" + b"\0" * 12)  # malformed: a truncated ELF header
    settle_timestamps()  # (a warm run keeps the module just copied)
    return [str(tmp_path / "tree"), str(basic_build), str(basic_build / "kms_a.ko"), str(tree / "bad.ko"),
            str(tmp_path / "missing.ko")]


def test_parts_merge_into_the_scan_of_all_paths(mixed_inputs, basic_build, tmp_path):
    """One part per path (a cluster's tasks, here in this process), merged, is the one scan of
    every path: the same modules in order, problems in order, files passed over, stat keys and
    records; cold (every module read) and warm (every module from the cache)."""
    from kmodsim.module import DEFAULT_MAX_SIZE
    from kmodsim.tree import _merge, _scan_task, scan

    here_cache, task_cache = str(tmp_path / "here"), str(tmp_path / "tasks")
    task = partial(_scan_task, resolve=None, jobs=1, use_cache=True, cache_dir=task_cache,
                   max_size=DEFAULT_MAX_SIZE, config_paths=None)
    for warm in (False, True):
        here = scan(mixed_inputs, cache_dir=here_cache, progress=False)
        # a part crosses a process boundary pickled: made again from its bytes alone
        parts = [pickle.loads(pickle.dumps(task(p))) for p in mixed_inputs]
        there = _merge(parts)
        assert (there.cached, there.parsed) == (here.cached, here.parsed) == ((4, 2) if warm else (0, 6))
        assert there.summaries == here.summaries
        assert [str(e) for e in there.errors] == [str(e) for e in here.errors]
        assert there.ignored == here.ignored and there.keys == here.keys and there.root == here.root
        assert [tuple(r) for r in there.records] == [tuple(r) for r in here.records]
    # what the inputs hold: the first tree's module, then kbuild's modules in modules.order's
    # order (kms_a.ko named again: once); exports as Module.symvers lists them
    names = ["kms_a.ko"] + _basic_names(basic_build)
    assert [os.path.basename(p) for p, *_ in here.summaries] == names
    exports = _exports(basic_build)
    assert [n for _p, _name, n, _i in here.summaries] == [len(exports.get(n[:-3], {})) for n in names]
    assert [e.path for e in here.errors] == [mixed_inputs[3], mixed_inputs[4]]  # read once, in order
    assert here.ignored == [os.path.join(mixed_inputs[0], "kernel", "kms_b.ko.gz")]


def test_a_part_stands_alone(basic_build, tmp_path):
    """A warm task's records come from its worker's cache file; what it sends back holds them
    itself: with that cache gone, the client still has every record."""
    from kmodsim.module import DEFAULT_MAX_SIZE
    from kmodsim.tree import _merge, _scan_task, scan

    cache = tmp_path / "cache"
    task = partial(_scan_task, resolve=None, jobs=1, use_cache=True, cache_dir=str(cache),
                   max_size=DEFAULT_MAX_SIZE, config_paths=None)
    task(str(basic_build))
    blob = pickle.dumps(task(str(basic_build)))  # warm: every record in the cache
    shutil.rmtree(cache)
    res = _merge([pickle.loads(blob)])
    assert res.cached == 3
    assert all(isinstance(r, bytes) for _p, r, _s in res.items)
    assert [m.name for m in res.modules] == [n[:-3] for n in _basic_names(basic_build)]
    exports = _exports(basic_build)
    assert {m.name: {e.name: (e.crc, e.gpl, e.namespace) for e in m.exports} for m in res.modules} == \
        {m.name: exports.get(m.name, {}) for m in res.modules}
    assert scan([str(basic_build)], use_cache=False).records == res.records


@pytest.mark.parametrize("spec, problem", [
    ("tcp://127.0.0.1:1", "cannot connect"),  # nothing listens on port 1: refused at once
    ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
    ("local:0", "expected local:N"),
])
@pytest.mark.parametrize("command", [["scan"], ["scan", "--json"], ["check"], ["check", "--format", "json"]])
def test_bad_scheduler_is_one_line_and_exit_2(command, spec, problem, basic_build):
    t = time.monotonic()
    p = run_kmodsim(*command, "--scheduler", spec, basic_build, check=2)
    assert time.monotonic() - t < 20  # an error, not a wait for distributed's retries
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(f"kmodsim: --scheduler {spec}: ") and problem in p.stderr, p.stderr


def test_bad_scheduler_check_sarif_says_why(basic_build):
    """SARIF is printed even for a run that could not check anything: it says it failed, and why."""
    p = run_kmodsim("check", "--format", "sarif", "--scheduler", "local:0", basic_build, check=2)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    inv = json.loads(p.stdout)["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is False
    assert "--scheduler local:0" in json.dumps(inv)


def test_default_path_does_not_import_dask(basic_build):
    """Without --scheduler, scan and check never import dask (nor apt's machinery without a
    debian: PATH)."""
    code = ("import sys\n"
            "from kmodsim.cli import main\n"
            "for argv in (['scan', '--json', sys.argv[1]], ['check', sys.argv[1]]):\n"
            "    try:\n"
            "        main(argv)\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code == 0, exc.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'tornado')\n"
            "             or m == 'kmodsim.debian'), file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code, str(basic_build)], capture_output=True, text=True, check=True)
    assert p.stderr.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Slow: real clusters (LocalCluster) over Debian's 6.1 tree and a kbuild tree
# ---------------------------------------------------------------------------------------------

def _both(*argv, status):
    """The command here and on a 2-worker cluster: the same stdout bytes, stderr and status."""
    here = run_kmodsim(*argv, check=status)
    there = run_kmodsim(*argv, "--scheduler", "local:2", check=status)
    assert there.stdout == here.stdout
    assert there.stderr == here.stderr and "Traceback" not in there.stderr
    return here


def _order(debian61) -> list[str]:
    """Debian's modules.order: every module of its tree, in depmod's first order."""
    with open(os.path.join(debian61.modules_dir, "modules.order")) as f:
        return [os.path.join(debian61.modules_dir, line) for line in f.read().split()]


@pytest.mark.slow
def test_scan_local_vs_cluster_identical(debian61, basic_build):
    trees = [debian61.root, str(basic_build), str(basic_build / "kms_b.ko")]
    text = _both("scan", *trees, status=0)
    for extra in (["--json"], ["--json", "--no-cache"]):
        doc = json.loads(_both("scan", *extra, *trees, status=0).stdout)
    basic = [str(basic_build / n) for n in _basic_names(basic_build)]
    assert [m["path"] for m in doc["modules"]] == _order(debian61) + basic  # kms_b.ko once
    assert doc["errors"] == [] and doc["ignored"] == []
    assert text.stdout.startswith(f"{len(doc['modules'])} modules, ")


@pytest.mark.slow
def test_check_local_vs_cluster_identical(debian61, basic_build, headers61):
    """The checks run on the client over the modules the tasks read: the same findings in every
    format, with the checked set and a --modules tree both read on the cluster."""
    for fmt in ("text", "json", "sarif"):
        _both("check", "--format", fmt, "--kernel", headers61, str(basic_build), debian61.root, status=0)
    doc = json.loads(_both("check", "--format", "json", "--kernel", headers61, str(basic_build),
                           "--modules", debian61.root, status=0).stdout)
    assert doc["summary"]["modules"] == len(_basic_names(basic_build))


@pytest.mark.slow
def test_a_bad_path_among_good_ones(debian61, basic_build, tmp_path):
    """A missing PATH is one line naming it, the others still read, exit 2: both ways."""
    missing = str(tmp_path / "nonesuch")
    scan = _both("scan", str(basic_build), missing, debian61.root, status=2)
    assert scan.stderr == f"kmodsim: {missing}: No such file or directory\n"
    assert scan.stdout.startswith(f"{len(_order(debian61)) + 3} modules, ")
    check = _both("check", "--format", "json", str(basic_build), missing, status=2)
    assert check.stderr == f"kmodsim: {missing}: No such file or directory\n"


@pytest.mark.slow
def test_debian_package_as_path(debian61, basic_build):
    """``debian:linux-image-KVER``: the task fetches (here: finds in the cache) its kernel and
    reads its root; the modules are those of the root named by path. A name with no package is one
    line naming it, the rest read, exit 2."""
    by_path = run_kmodsim("scan", "--json", debian61.root, str(basic_build), check=0)
    name = f"debian:linux-image-{debian61.kver}"
    by_name = _both("scan", "--json", name, str(basic_build), status=0)
    assert by_name.stdout == by_path.stdout
    nonesuch = "debian:linux-image-0.0.0-nonesuch-amd64"
    p = _both("scan", nonesuch, str(basic_build), status=2)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith(f"kmodsim: {nonesuch}: "), p.stderr
    assert p.stdout.startswith("3 modules, ")
