"""``abi history`` / ``abi diff`` past one machine: each kernel one task on a dask.distributed
cluster (``--scheduler``, :mod:`kmodsim.cluster`).

The oracle is the embedded default: the same command with local worker processes. Whichever
runs the tasks, the output must be the same bytes (text and JSON) and the exit status the same;
a worker that dies has its task rerun on another and the result is still the same, never a
half-merged one. The clusters here are ``LocalCluster`` s (``--scheduler local:2``): the same
scheduler, workers and pickling as on a cluster of hosts, without the hosts.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time

import pytest
from test_abi import ABIS

from conftest import run_kmodsim

# ---------------------------------------------------------------------------------------------
# Fast: addresses, errors that cross a process boundary, the default path's imports
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, problem", [
    ("tcp://127.0.0.1:1", "cannot connect"),  # nothing listens on port 1: refused at once
    ("tcp://127.0.0.1", "expected tcp://HOST:PORT"),
    ("127.0.0.1:8786", "expected tcp://HOST:PORT"),
    ("tcp://127.0.0.1:99999", "expected tcp://HOST:PORT"),
    ("local:0", "expected local:N"),
    ("local:two", "expected local:N"),
])
@pytest.mark.parametrize("command", ["diff", "history"])
def test_bad_scheduler_is_one_line_and_exit_2(command, spec, problem, headers61):
    t = time.monotonic()
    p = run_kmodsim("abi", command, "--scheduler", spec, headers61, headers61, check=2)
    assert time.monotonic() - t < 20  # an error, not a wait for distributed's retries
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(f"kmodsim: --scheduler {spec}: ") and problem in p.stderr, p.stderr


def test_errors_pickle_as_they_were(tmp_path):
    """A task's error crosses to the client pickled: the same class, path and problem."""
    from kmodsim.abi import AbiError
    from kmodsim.cluster import SchedulerError
    from kmodsim.errors import PathError

    for exc in (PathError(str(tmp_path / "x.ko"), "not an ELF file"), AbiError("/a b", "no Module.symvers"),
                SchedulerError("local:0: expected")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert getattr(back, "path", None) == getattr(exc, "path", None)


def test_default_path_does_not_import_dask(headers61):
    """Without --scheduler the run never imports dask: its start costs every command nothing."""
    code = ("import sys\n"
            "from kmodsim.abi import AbiHistoryRequest, history\n"
            f"h = history(AbiHistoryRequest([{headers61!r}, {headers61!r}]))\n"
            "assert h.steps[0].diff.changes == []\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'tornado')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# Slow: real clusters (LocalCluster) over Debian 12's 6.1 ABIs
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_history_local_vs_cluster_identical(headers_of):
    """The 7 ABIs' history: local processes and a 2-worker cluster print the same bytes."""
    dirs = [headers_of(k) for k in ABIS]
    for extra in ([], ["--json"]):
        here = run_kmodsim("abi", "history", *extra, *dirs, check=1)
        there = run_kmodsim("abi", "history", "--scheduler", "local:2", *extra, *dirs, check=1)
        assert there.stdout == here.stdout
        assert "Traceback" not in there.stderr
    doc = json.loads(there.stdout)
    assert [k["release"] for k in doc["kernels"]] == ABIS  # in input order, not finishing order
    assert doc["steps"][0]["summary"]["crc"] == 18107  # Debian's -47 -> -50, as Module.symvers says


@pytest.mark.slow
def test_history_of_images_with_causes_identical(image_of):
    """Images: each task decompresses its vmlinuz, reads its modules and its BTF; the causes of
    the 7,529 CRC changes of Debian's -53 -> -54 are the same, found from BTF read on the workers."""
    roots = [image_of(k).root for k in ABIS[2:4]]
    here = run_kmodsim("abi", "history", "--json", *roots, check=1)
    there = run_kmodsim("abi", "history", "--json", "--scheduler", "local:2", *roots, check=1)
    assert there.stdout == here.stdout and there.stderr == here.stderr
    summary = json.loads(there.stdout)["steps"][0]["summary"]
    assert summary["crc"] == 7529
    assert summary["causes"]["explained"] > 7000  # from the BTF the workers read, not "no BTF"


@pytest.mark.slow
def test_diff_names_a_debian_package(headers_of):
    """``debian:linux-headers-KVER``: the task fetches its kernel itself (here from the cache a
    test before filled); the side keeps the name given, the changes are those of the paths."""
    old, new = ABIS[0], ABIS[1]
    by_path = run_kmodsim("abi", "diff", "--json", headers_of(old), headers_of(new), check=1)
    by_name = run_kmodsim("abi", "diff", "--json", "--scheduler", "local:2", f"debian:linux-headers-{old}",
                          f"debian:linux-headers-{new}", check=1)
    a, b = json.loads(by_path.stdout), json.loads(by_name.stdout)
    assert a == b  # releases and changes; no path is printed in the JSON
    p = run_kmodsim("abi", "diff", "debian:linux-headers-0.0.0-nonesuch-amd64", headers_of(old), check=2)
    assert p.stderr.count("\n") == 1 and "nonesuch" in p.stderr and "Traceback" not in p.stderr


def _die_once(marks: str, die_for: str, path: str) -> str:
    """A task's resolve step that kills its worker process the first time it meets ``die_for``
    (as an OOM kill or a lost host would), and is the identity otherwise. Every call is logged."""
    with open(os.path.join(marks, "calls"), "a") as f:
        f.write(path + "\n")
    mark = os.path.join(marks, "died")
    if path == die_for and not os.path.exists(mark):
        open(mark, "w").close()
        os._exit(1)
    return path


@pytest.mark.slow
def test_a_dead_worker_has_its_task_rerun(headers_of, tmp_path):
    from functools import partial

    from kmodsim.abi import AbiHistoryRequest, history
    from kmodsim.render.abi import history_json, history_text

    dirs = [headers_of(k) for k in ABIS[:4]]
    here = history(AbiHistoryRequest(dirs))
    there = history(AbiHistoryRequest(dirs, scheduler="local:2", resolve=partial(_die_once, str(tmp_path), dirs[1])))
    calls = (tmp_path / "calls").read_text().splitlines()
    assert (tmp_path / "died").exists()
    # every kernel read, the one whose worker died read again (a task whose finished result was on
    # that worker, not yet gathered, may be read again too: its result is made again, not lost)
    assert set(calls) == set(dirs) and calls.count(dirs[1]) >= 2
    assert json.dumps(history_json(there)) == json.dumps(history_json(here))
    assert history_text(there) == history_text(here)


def _always_die(path: str) -> str:
    os._exit(1)


@pytest.mark.slow
def test_a_task_that_kills_every_worker_is_an_error(headers_of):
    """Past the scheduler's allowed failures: an error naming the kernel, no result at all."""
    import dask

    from kmodsim.abi import AbiHistoryRequest, history
    from kmodsim.cluster import SchedulerError

    dirs = [headers_of(k) for k in ABIS[:2]]
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with pytest.raises(SchedulerError, match="its task killed every worker it ran on"):
            history(AbiHistoryRequest(dirs, scheduler="local:2", resolve=_always_die))


@pytest.mark.slow
def test_history_on_a_running_scheduler(headers_of, tmp_path):
    """The documented set-up: ``dask scheduler`` and ``dask worker`` started as a distribution
    would, then ``--scheduler tcp://HOST:PORT``: the same bytes as the local run."""
    dask_cli = os.path.join(os.path.dirname(sys.executable), "dask")
    info = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "w")
    procs = [subprocess.Popen([dask_cli, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], stdout=log, stderr=log)]
    try:
        for _ in range(300):
            if info.exists() and info.read_text().strip():
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([dask_cli, "worker", address, "--nworkers", "2", "--nthreads", "1",
                                       "--no-dashboard"], stdout=log, stderr=log))
        dirs = [headers_of(k) for k in ABIS[:4]]
        here = run_kmodsim("abi", "history", "--json", *dirs, check=1)
        there = run_kmodsim("abi", "history", "--json", "--scheduler", address, *dirs, check=1)
        assert there.stdout == here.stdout and "Traceback" not in there.stderr
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
        log.close()


def _moving_resolve(base: str, roots: dict[str, str], name: str) -> str:
    """A kernel's name -> its path, as on hosts without one file system: the first task that
    resolves the name (its read) finds it at ``base/a/NAME``, any later one at ``base/b/NAME``."""
    a, b = os.path.join(base, "a", name), os.path.join(base, "b", name)
    if not os.path.lexists(a):
        os.symlink(roots[name], a)
        return a
    if not os.path.lexists(b):
        os.symlink(roots[name], b)
    return b


@pytest.mark.slow
def test_comparisons_read_module_btf_where_they_run(image_of, tmp_path):
    """Each step is a task too, and may run on another host than the reads: a kernel named by
    its package is resolved there again and its modules' BTF read from that host's path. On the
    cluster: each name resolved again for its step, the same bytes as the local run. Then the
    comparison of two reads whose paths are gone (deleted after the read, as on another host):
    the causes are still all found, no BTF left out."""
    from functools import partial

    from kmodsim.abi import AbiHistoryRequest, history
    from kmodsim.abi.diff import _compare_read, _read_side
    from kmodsim.render.abi import diff_json, history_json

    names = ABIS[2:4]
    roots = {k: image_of(k).root for k in names}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    here = history(AbiHistoryRequest([roots[k] for k in names]))
    there = history(AbiHistoryRequest(names, scheduler="local:2",
                                      resolve=partial(_moving_resolve, str(tmp_path), roots)))
    assert sorted(os.listdir(tmp_path / "b")) == sorted(names)  # each resolved again where compared
    assert there.notes == here.notes == []
    doc_here, doc_there = history_json(here), history_json(there)
    for d in (doc_here, doc_there):
        for k in d["kernels"]:
            k.pop("path", None)
    assert json.dumps(doc_there) == json.dumps(doc_here)
    assert doc_there["steps"][0]["summary"]["causes"]["explained"] > 7000

    gone = tmp_path / "gone"
    gone.mkdir()
    reads = []
    for k in names:
        os.symlink(roots[k], gone / k)
        reads.append(_read_side(k, resolve=lambda n: str(gone / n), jobs=1, use_cache=True, config_paths=None,
                                max_size=1 << 30, causes=True, eager_btf=True))
        os.unlink(gone / k)
    diff = _compare_read(*reads, symbol_lists=(), scope=None, causes=True, resolve=roots.__getitem__)
    assert diff.notes == []
    assert diff_json(diff)["summary"] == doc_here["steps"][0]["summary"]


@pytest.mark.slow
def test_abi_check_on_several_kernels(headers_of, image_of, tmp_path):
    """``abi check`` of the same modules (three of -53's) on several kernels: each kernel's report
    is the one ``abi check`` gives on that kernel alone (whose verdicts tests/test_abi_check.py
    compares with the real kernel); a kernel that cannot be read is one line on stderr and exit 2,
    the others still checked; local processes and a 2-worker cluster print the same bytes; a
    kernel and its image named by their packages are fetched by the task."""
    tree = os.path.join(image_of(ABIS[2]).root, "lib/modules", ABIS[2], "kernel")
    mods = tmp_path / "mods"
    mods.mkdir()
    for rel in ("drivers/net/dummy.ko", "drivers/block/loop.ko", "fs/nls/nls_cp437.ko"):
        (mods / os.path.basename(rel)).symlink_to(os.path.join(tree, rel))
    kernels = [headers_of(k) for k in ABIS[2:5]]
    argv = [x for k in (kernels[0], kernels[1], str(tmp_path / "nonesuch"), kernels[2]) for x in ("-k", k)]
    for extra in ([], ["--json"]):
        here = run_kmodsim("abi", "check", *extra, *argv, mods, check=2)
        there = run_kmodsim("abi", "check", *extra, "--scheduler", "local:2", *argv, mods, check=2)
        assert (there.stdout, there.stderr) == (here.stdout, here.stderr)
        assert here.stderr == f"kmodsim: {tmp_path / 'nonesuch'}: No such file or directory\n"
    doc = json.loads(there.stdout)
    alone = [json.loads(run_kmodsim("abi", "check", "--json", "-k", k, mods, check=None).stdout) for k in kernels]
    assert [d for d in doc["kernels"] if "error" not in d] == alone
    assert doc["kernels"][2] == {"kernel": str(tmp_path / "nonesuch"),
                                 "error": f"{tmp_path / 'nonesuch'}: No such file or directory"}
    assert doc["summary"] == {"kernels": 4, "unreadable": 1, "all_load": False}
    assert [d["summary"]["loads"] for d in alone] == [3, 1, 0]  # -53's own kernel, then CRCs, then module_layout
    text = run_kmodsim("abi", "check", *argv[:4], *argv[6:], mods, check=1).stdout
    assert text.splitlines()[2].split()[:5] == ["6.1.0-53-amd64", "3", "0", "0", "0"]
    # by package name, in the task: the same as by path (the signature check then on -54's keys)
    by_name = run_kmodsim("abi", "check", "--json", "--scheduler", "local:2", "-k", f"debian:linux-headers-{ABIS[3]}",
                          "--vmlinuz", f"debian:linux-image-{ABIS[3]}", mods, check=1)
    by_path = run_kmodsim("abi", "check", "--json", "-k", kernels[1], "--vmlinuz", image_of(ABIS[3]).vmlinuz, mods,
                          check=1)
    assert by_name.stdout == by_path.stdout
    bad = run_kmodsim("abi", "check", "-k", kernels[0], "-k", kernels[1], "--vmlinuz", image_of(ABIS[3]).vmlinuz,
                      mods, check=2)
    assert "1 --vmlinuz for 2 --kernel" in bad.stderr and "Traceback" not in bad.stderr
