#!/usr/bin/env python3
"""Loader model speed and one real-kernel verification, in one run.

    model    replay N steps (default 1,000: insmod/rmmod cycles over the kbuild fixtures, failures
             included) on a fresh model; module files are read once (cached), as in ``kmodsim load``.
             Target: < 1 s for 1,000 steps.
    verify   one ``kmodsim verify --compare`` of tests/scenarios/24_refused_then_robust.script
             (initramfs build, QEMU boot, 14 steps, comparison), wall clock of the whole process.
             Target: <= 10 s.

    python bench/loader_bench.py [--steps 1000] [--rounds 5] [--no-verify]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "scenarios"))

CYCLE = [  # back to no module loaded at the end of each cycle
    "insmod basic/kms_a.ko count=5",
    "insmod consumers/kmc_dup.ko",
    "insmod basic/kms_b.ko",
    "insmod consumers/kmc_gpl.ko",
    "insmod consumers/kmc_crc.ko",
    "insmod loader/kml_params.ko b=256 s=1 name=x",
    "insmod loader/kml_params.ko ret=0 on off=n",
    "rmmod kms_a",
    "rmmod kml_params",
    "insmod patched/kms_c_vermagic.ko",
    "rmmod kms_b",
    "rmmod kms_a",
    "rmmod nothing",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-verify", action="store_true")
    a = ap.parse_args()

    import workspace as ws_mod

    from kmodsim.kernel import Kernel
    from kmodsim.loader.run import replay
    from kmodsim.loader.script import parse_script, resolve

    headers = ws_mod.default_headers()
    kernel = Kernel.load(headers)
    with tempfile.TemporaryDirectory(prefix="kmodsim-bench-") as tmp:
        ws = ws_mod.prepare(Path(tmp), headers)
        lines = [CYCLE[i % len(CYCLE)] for i in range(a.steps)]
        steps = parse_script("\n".join(lines), "bench")
        resolve(steps, "bench", None, base=str(ws))  # reads each module file once
        times = []
        for _ in range(a.rounds):
            t0 = time.perf_counter()
            run = replay(kernel, steps)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        failed = sum(1 for s in run.steps if s.errno)
        print(f"model: {a.steps} steps ({failed} refused) in {med * 1000:.1f} ms median of {a.rounds} "
              f"({a.steps / med:,.0f} steps/s); target < 1 s: {'OK' if med < 1 else 'MISSED'}")
        if a.no_verify:
            return
        debian = ws_mod.default_vmlinuz()
        script = ROOT / "tests" / "scenarios" / "24_refused_then_robust.script"
        t0 = time.perf_counter()
        p = subprocess.run(["kmodsim", "verify", "--kernel", headers, "--vmlinuz", debian, "--modules", "basic",
                            "--script", str(script), "--compare"], cwd=ws, capture_output=True, text=True,
                           env=dict(os.environ))
        dt = time.perf_counter() - t0
        boot = next((ln for ln in p.stdout.splitlines() if ln.startswith("# note: booted in")), "")
        print(f"verify: exit {p.returncode}, {dt:.2f} s wall ({boot[8:]}); target <= 10 s: "
              f"{'OK' if dt <= 10 and p.returncode == 0 else 'MISSED'}")
        if p.returncode != 0:
            print(p.stdout[-2000:], p.stderr[-2000:], file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
