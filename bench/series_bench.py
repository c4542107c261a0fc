"""Benchmark: ``kmodsim series`` build times, cold (step 0) against each incremental step.

Usage:  PATH=$PWD/.venv/bin:$PATH python bench/series_bench.py [--headers KDIR] [--rounds N] [--kvm | --static-call [--full]]

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
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--headers", help="a kernel headers directory (default: Debian's 6.1, fetched)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kvm", action="store_true", help="KVM's modules: the monolithic series' first patch")
    ap.add_argument("--static-call", action="store_true", help="bullseye's 5.10 KVM: the static-call series")
    ap.add_argument("--full", action="store_true", help="with --static-call: every member (13 commits)")
    args = ap.parse_args()
    if args.static_call:
        return static_call(args)
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
    steps = runs[0]
    cold_cpu = _median(runs, 0, "cpu_seconds")
    print(f"kmodsim series, {len(steps) - 1} steps, {args.rounds} rounds, headers {headers}")
    print(f"{'#':>2}  {'step':<44}  {'compiled':<28}  {'wall':>6}  {'cpu':>6}  {'cpu/cold':>8}")
    for i, s in enumerate(steps):
        wall, cpu = _median(runs, i, "seconds"), _median(runs, i, "cpu_seconds")
        print(f"{i:>2}  {s['name'][:44]:<44}  {', '.join(s['build']['compiled'])[:28]:<28}  {wall:>5.2f}s  "
              f"{cpu:>5.2f}s  {cpu / cold_cpu:>7.0%}")
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
    cold_cpu = _median(runs, 0, "cpu_seconds")
    print(f"kmodsim series, 5.10 static-call series, {len(steps) - 1} steps, {args.rounds} rounds, headers {headers}")
    print(f"{'#':>2}  {'step':<52}  {'cc':>3}  {'wall':>7}  {'cpu':>7}  {'cpu/cold':>8}")
    for i, s in enumerate(steps):
        wall, cpu = _median(runs, i, "seconds"), _median(runs, i, "cpu_seconds")
        print(f"{i:>2}  {s['name'][:52]:<52}  {len(s['build']['compiled']):>3}  {wall:>6.2f}s  {cpu:>6.2f}s  "
              f"{cpu / cold_cpu:>7.0%}")
    one = [i for i, s in enumerate(steps) if i and len(s["build"]["compiled"]) == 1]
    if one:
        worst = max(_median(runs, i, "cpu_seconds") for i in one) / cold_cpu
        print(f"one-file steps ({len(one)}): at most {worst:.0%} of the cold build's CPU (the issue's target: "
              f"<= {TARGET:.0%}: {'met' if worst <= TARGET else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
