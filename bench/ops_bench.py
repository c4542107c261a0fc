"""Benchmark: ``kmodsim ops`` census of arch/x86/kvm + arch/x86/include of Debian's linux-source-6.1.

Usage:  python bench/ops_bench.py [SOURCE_TREE] [--runs N]

SOURCE_TREE defaults to the newest ``${KMODSIM_CACHE:-~/.cache/kmodsim}/src/linux-source-6.1_*``
(the tests' cache: ``python -m pytest tests/ops -m realkernel`` fills it).  Prints the in-process
census time (load + all passes, best and median of N runs) and the end-to-end command time
(interpreter start-up, text output included).  Exits 1 if the best census time is 2 s or more.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kmodsim.ops import load_inputs, run_census  # noqa: E402

DIRS = ("arch/x86/kvm", "arch/x86/include")
LIMIT = 2.0


def default_tree() -> Path | None:
    cache = Path(os.environ.get("KMODSIM_CACHE") or Path.home() / ".cache" / "kmodsim") / "src"
    trees = sorted(cache.glob("linux-source-6.1_*"))
    return trees[-1] if trees else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tree", nargs="?", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    tree = args.tree or default_tree()
    if tree is None or not all((tree / d).is_dir() for d in DIRS):
        print("ops_bench: no linux-source-6.1 tree; pass one, or run the realkernel tests to fetch it",
              file=sys.stderr)
        return 2
    paths = [str(tree / d) for d in DIRS]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        inputs, _errors, _root = load_inputs(paths)
        census = run_census("kvm_x86_ops", inputs)
        times.append(time.perf_counter() - t0)
    calls = sum(len(m.call_sites) for m in census.members)
    print(f"tree: {tree}")
    print(f"input: {census.files_scanned} files ({sum(len(i.data) for i in inputs) / 1e6:.1f} MB), "
          f"{len(census.files_parsed)} parsed")
    print(f"census: {len(census.members)} members, {calls} call sites, {len(census.parse_errors)} parse errors")
    print(f"census time: best {min(times):.3f} s, median {statistics.median(times):.3f} s over {args.runs} runs "
          f"(limit {LIMIT:.1f} s)")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "kmodsim.ops", *DIRS, "--struct", "kvm_x86_ops"], cwd=tree, env=env,
                   stdout=subprocess.DEVNULL)
    print(f"end-to-end `kmodsim ops {' '.join(DIRS)} --struct kvm_x86_ops`: {time.perf_counter() - t0:.3f} s")
    return 0 if min(times) < LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
