"""Benchmark: ``kmodsim series`` build times, cold (step 0) against each incremental step.

Usage:  PATH=$PWD/.venv/bin:$PATH python bench/series_bench.py [--headers KDIR] [--rounds N] [--kvm | --static-call [--full]
        | --kvm-direct [--members N]]

Runs the series tests/series_fixture.py writes (five commits over tests/kbuild/series: kss_lib of
two objects, kss_drv) ``N`` times with ``--json --times`` against Debian's 6.1 headers (or KDIR),
and prints for each step the median wall and CPU time (user + system of make and all it ran: the
steady measure on a loaded machine), the objects compiled and the ratio to the cold build. The
issue's target (a one-file step at most 20% of a cold ``M=`` build) is for KVM's modules (dozens of
objects); for these two small modules kbuild's fixed cost dominates, and the line says so.

``--kvm``: the same measure on KVM's modules — the first patch of the monolithic series
(examples/kvm-monolithic/series.py: the glue, which changes x86.c's compile flags: one object,
x86.o, recompiled and kvm.ko relinked) over Debian's 6.1 KVM (linux-source-6.1 at the headers'
version, fetched), against the cold build of KVM's three modules (43 objects).

``--static-call``: the static-call series ``kmodsim ops --emit series --group file`` writes for
Debian bullseye's 5.10 KVM (tests/test_series_emit.py's: the X-macro list, then one commit per
file of calls, members of its subset; ``--full``: every member, 13 commits), built against
bullseye's 5.10 headers (private apt state), every step against the cold build.

``--kvm-direct``: ``series --jobs`` on a KVM-sized series: the direct-call series ``kmodsim ops
--emit series --instance vmx_x86_ops`` writes for Debian's 6.1 monolithic KVM (tests/
test_series_emit.py's: one commit per member, 96; ``--members N``: its first N commits), run whole
with ``--jobs 1 -j 2`` and with ``--jobs 2 -j 1`` (two work trees of one make job each: as many
make jobs at once as one work tree with two; against Debian's 6.1 headers), alternately, each
round. Prints each setting's median wall and CPU time (user + system of kmodsim series and all it
ran), and whether its reports are those of ``--jobs 1`` byte for byte once the build times (the
only fields that may differ: ``"seconds"``, ``"cpu_seconds"``) are taken out of the JSON text.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from series_fixture import make_repo  # noqa: E402

TARGET = 0.20


def _rounds(headers: str, argv: list[str], rounds: int) -> list[list[dict]]:
    """``kmodsim series --json --times`` of ``argv`` run ``rounds`` times: each run's steps."""
    runs = []
    for _ in range(rounds):
        p = subprocess.run(["kmodsim", "series", "--kernel", headers, *argv, "--json", "--times"],
                           capture_output=True, text=True)
        if p.returncode not in (0, 1):
            sys.exit(p.stderr)
        runs.append(json.loads(p.stdout)["steps"])
    return runs


def _median(runs: list[list[dict]], step: int, key: str) -> float:
    return statistics.median(r[step]["build"][key] for r in runs)


def _step_table(runs: list[list[dict]], title: str, what: str, compiled: Callable[[dict], str], width: int) -> float:
    """Print each step's median wall and CPU time, what it compiled (``compiled(step)``, in a column
    ``what`` of ``width``) and its CPU against the cold build's; return the cold build's CPU."""
    cold_cpu = _median(runs, 0, "cpu_seconds")
    print(title)
    print(f"{'#':>2}  {'step':<48}  {what:<{width}}  {'wall':>7}  {'cpu':>7}  {'cpu/cold':>8}")
    for i, s in enumerate(runs[0]):
        wall, cpu = _median(runs, i, "seconds"), _median(runs, i, "cpu_seconds")
        print(f"{i:>2}  {s['name'][:48]:<48}  {compiled(s)[:width]:<{width}}  {wall:>6.2f}s  {cpu:>6.2f}s  "
              f"{cpu / cold_cpu:>7.0%}")
    return cold_cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--headers", help="a kernel headers directory (default: Debian's 6.1, fetched)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kvm", action="store_true", help="KVM's modules: the monolithic series' first patch")
    ap.add_argument("--static-call", action="store_true", help="bullseye's 5.10 KVM: the static-call series")
    ap.add_argument("--full", action="store_true", help="with --static-call: every member (13 commits)")
    ap.add_argument("--kvm-direct", action="store_true",
                    help="6.1's monolithic KVM, the direct-call series: --jobs 1 -j 2 against --jobs 2 -j 1")
    ap.add_argument("--members", type=int, help="with --kvm-direct: the series' first N commits (default: all)")
    args = ap.parse_args()
    if args.static_call:
        return static_call(args)
    if args.kvm_direct:
        return kvm_direct(args)
    headers = args.headers
    if headers is None:
        from common import series_kernel

        headers = series_kernel("6.1").headers()
    with tempfile.TemporaryDirectory(prefix="kmodsim-series-bench-") as tmp:
        if args.kvm:
            sys.path.insert(0, str(ROOT / "examples" / "kvm-monolithic"))
            import build
            import series

            paths = series.write_series(build.source_tree(build.headers_version(headers)), tmp)
            argv = ["--src", paths["base"], "-p", paths["glue"]]
        else:
            repo, shas = make_repo(Path(tmp))
            argv = ["--src", str(repo), f"{shas[0]}..main"]
        runs = _rounds(headers, argv, args.rounds)
    cold_cpu = _step_table(runs, f"kmodsim series, {len(runs[0]) - 1} steps, {args.rounds} rounds, headers {headers}",
                           "compiled", lambda s: ", ".join(s["build"]["compiled"]), 28)
    one_file = _median(runs, 1, "cpu_seconds") / cold_cpu
    if args.kvm:
        print(f"one-file step (1): {one_file:.0%} of the cold build's CPU (the issue's target: <= {TARGET:.0%}: "
              f"{'met' if one_file <= TARGET else 'not met'})")
    else:
        print(f"one-file step (1): {one_file:.0%} of the cold build's CPU (the issue's target, for KVM: "
              f"<= {TARGET:.0%}; not expected of 3 objects, where kbuild's fixed cost dominates)")
    return 0


def static_call(args: argparse.Namespace) -> int:
    import os
    import re

    from kvm_source_fixture import CENSUS, KBUILD_510, SUBSET_510, cc_vars, kvm_repo, unpack_source

    from kmodsim.debian import DebianKernel, fetch_deb, image_package

    k = DebianKernel(image_package("linux-image-amd64", None, "bullseye"), None, "bullseye")
    headers = k.headers()
    m = re.search(r"_([^_]+)_[^_]+\.deb$", os.path.basename(k.deb))
    assert m is not None, k.deb
    src = unpack_source("linux-source-5.10", fetch_deb(f"linux-source-5.10={m.group(1)}", suite="bullseye"), m.group(1))
    with tempfile.TemporaryDirectory(prefix="kmodsim-series-bench-") as tmp:
        repo = kvm_repo(Path(tmp), src, KBUILD_510)
        out = Path(tmp) / "patches"
        emit = ["kmodsim", "ops", *(str(repo / c) for c in CENSUS), "--struct", "kvm_x86_ops", "--emit", "series",
                "--group", "file", "--output", str(out), *([] if args.full else ["--members", SUBSET_510])]
        subprocess.run(emit, check=True, capture_output=True)
        argv = ["--src", str(repo), "-p", str(out), "--modules", "arch/x86/kvm",
                *(f"--make={v}" for v in cc_vars(headers))]
        runs = _rounds(headers, argv, args.rounds)
    steps = runs[0]
    cold_cpu = _step_table(runs, f"kmodsim series, 5.10 static-call series, {len(steps) - 1} steps, {args.rounds} "
                           f"rounds, headers {headers}", "cc", lambda s: str(len(s["build"]["compiled"])), 3)
    one = [i for i, s in enumerate(steps) if i and len(s["build"]["compiled"]) == 1]
    if one:
        worst = max(_median(runs, i, "cpu_seconds") for i in one) / cold_cpu
        print(f"one-file steps ({len(one)}): at most {worst:.0%} of the cold build's CPU (the issue's target: "
              f"<= {TARGET:.0%}: {'met' if worst <= TARGET else 'not met'})")
    return 0


# the two ways to run two make jobs at once on this series: (--jobs, -j)
SETTINGS = ((1, 2), (2, 1))
TIMES = re.compile(rb'^ *"(?:cpu_)?seconds": [-+0-9.eE]+,?\n', re.M)  # series_json's lines, indented


def kvm_direct(args: argparse.Namespace) -> int:
    import shutil

    from kvm_source_fixture import CENSUS, cc_vars, example_build, monolithic_repo

    headers = args.headers
    if headers is None:
        from common import series_kernel

        headers = series_kernel("6.1").headers()
    build = example_build()
    src = Path(build.source_tree(build.headers_version(headers)))
    wall: dict[tuple[int, int], list[float]] = {s: [] for s in SETTINGS}
    cpu: dict[tuple[int, int], list[float]] = {s: [] for s in SETTINGS}
    same: dict[tuple[int, int], bool] = {s: True for s in SETTINGS}
    first: bytes | None = None
    steps: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="kmodsim-series-bench-") as tmp:
        repo = monolithic_repo(Path(tmp), src)
        out = Path(tmp) / "patches"
        emit = ["kmodsim", "ops", *(str(repo / c) for c in CENSUS), "--struct", "kvm_x86_ops", "--emit", "series",
                "--instance", "vmx_x86_ops", "--output", str(out)]
        if subprocess.run(emit, capture_output=True, text=True).returncode not in (0, 1):  # 1: the census's finding
            sys.exit(f"{' '.join(emit[:2])} --emit series failed")
        patches = sorted(out.iterdir())[:args.members]
        series = Path(tmp) / "series"
        series.mkdir()
        for p in patches:
            shutil.copy(p, series)
        argv = ["kmodsim", "series", "--src", str(repo), "--kernel", headers, "-p", str(series),
                "--modules", "arch/x86/kvm", "--struct", "kvm_x86_ops", *(f"--census={c}" for c in CENSUS),
                "--expect", "null_tests=down,assignments=down,static_calls=down",
                *(f"--make={v}" for v in cc_vars(headers)), "--json", "--times"]
        for _ in range(args.rounds):
            for jobs, make_jobs in SETTINGS:
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.monotonic()
                p = subprocess.run([*argv, "--jobs", str(jobs), "--make-jobs", str(make_jobs)], capture_output=True)
                wall[jobs, make_jobs].append(time.monotonic() - t0)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[jobs, make_jobs].append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
                if p.returncode not in (0, 1):
                    sys.exit(p.stderr.decode(errors="replace"))
                report = TIMES.sub(b"", p.stdout)
                if first is None:
                    first, steps = report, json.loads(p.stdout)["steps"]
                same[jobs, make_jobs] &= report == first
    print(f"kmodsim series, 6.1 monolithic KVM's direct-call series, {len(steps) - 1} steps "
          f"({sum(bool(s['builds']) for s in steps)} of {len(steps)} trees built, the base's too), {args.rounds} rounds, headers {headers}")
    print(f"{'--jobs':>6}  {'-j':>2}  {'wall':>8}  {'cpu':>8}  report")
    for s in SETTINGS:
        print(f"{s[0]:>6}  {s[1]:>2}  {statistics.median(wall[s]):>7.1f}s  {statistics.median(cpu[s]):>7.1f}s  "
              f"{'the same, byte for byte without build times' if same[s] else 'DIFFERS'}")
    return 0 if all(same.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
