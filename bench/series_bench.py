"""Benchmark: ``kmodsim series`` build times, cold (step 0) against each incremental step.

Usage:  PATH=$PWD/.venv/bin:$PATH python bench/series_bench.py [--headers KDIR] [--rounds N] [--kvm]

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--headers", help="a kernel headers directory (default: Debian's 6.1, fetched)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kvm", action="store_true", help="KVM's modules: the monolithic series' first patch")
    args = ap.parse_args()
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
        runs = []
        for _ in range(args.rounds):
            p = subprocess.run(["kmodsim", "series", "--kernel", headers, *argv, "--json", "--times"],
                               capture_output=True, text=True)
            if p.returncode not in (0, 1):
                sys.exit(p.stderr)
            runs.append(json.loads(p.stdout)["steps"])
    steps = runs[0]
    cold_cpu = statistics.median(r[0]["build"]["cpu_seconds"] for r in runs)
    print(f"kmodsim series, {len(steps) - 1} steps, {args.rounds} rounds, headers {headers}")
    print(f"{'#':>2}  {'step':<44}  {'compiled':<28}  {'wall':>6}  {'cpu':>6}  {'cpu/cold':>8}")
    for i, s in enumerate(steps):
        wall = statistics.median(r[i]["build"]["seconds"] for r in runs)
        cpu = statistics.median(r[i]["build"]["cpu_seconds"] for r in runs)
        print(f"{i:>2}  {s['name'][:44]:<44}  {', '.join(s['build']['compiled'])[:28]:<28}  {wall:>5.2f}s  "
              f"{cpu:>5.2f}s  {cpu / cold_cpu:>7.0%}")
    one_file = statistics.median(r[1]["build"]["cpu_seconds"] for r in runs) / cold_cpu
    if args.kvm:
        print(f"one-file step (1): {one_file:.0%} of the cold build's CPU (the issue's target: <= {TARGET:.0%}: "
              f"{'met' if one_file <= TARGET else 'not met'})")
    else:
        print(f"one-file step (1): {one_file:.0%} of the cold build's CPU (the issue's target, for KVM: "
              f"<= {TARGET:.0%}; not expected of 3 objects, where kbuild's fixed cost dominates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
