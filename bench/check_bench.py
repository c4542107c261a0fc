#!/usr/bin/env python3
"""``kmodsim check --no-cache`` against kmod's ``depmod -e -E``, in one run, on the same inputs.

Both read every module of the tree and resolve every import against the kernel's exports (depmod
-e reports unknown symbols and CRC mismatches, as check's ``unresolved`` and ``crc`` do). For each
tree (Debian 6.1: plain .ko; Debian 6.12: .ko.xz) rounds interleave, each command a fresh process:

  depmod-e   ``depmod -e -E <headers>/Module.symvers -b <hard-linked copy> <kver> -n``
             (kmod's depmod, writing to stdout: the tree is never written to)
  check      ``kmodsim check --no-cache --kernel <headers> <tree>`` (every module parsed, all cores)
  baseline   the same with another kmodsim (``--baseline PATH``: e.g. an older checkout), so a
             before/after pair comes from one run on one machine state

The page cache is warm for all (one untimed run of each first). Medians of wall time are reported
with their ratio to depmod -e (the issue's target: at most 1.0), and medians of CPU time (user +
system of the whole process tree: less disturbed than wall time on a shared, loaded machine).

    python bench/check_bench.py [--rounds 5] [--tree 6.1] [--tree 6.12] [--baseline /path/to/kmodsim]
"""

from __future__ import annotations

import os
import statistics

import common
from common import arguments, count_modules, linked_root, series_kernel, tools

TARGET = 1.0  # check --no-cache / depmod -e, at most


def resolve_tree(spec: str, headers: str | None) -> tuple[str, str]:
    """(lib/modules/<kver> directory, headers directory with Module.symvers)."""
    if os.path.isdir(spec):
        if not headers:
            raise SystemExit(f"{spec}: give --headers for a tree given as a directory")
        return spec.rstrip("/"), headers
    k = series_kernel(spec)
    return k.modules_dir, k.headers()


def bench_tree(label: str, tree: str, headers: str, rounds: int, kmodsim: str, depmod: str,
               baseline: str | None) -> dict:
    kver = os.path.basename(tree)
    with common.scratch("kmodsim-check-bench-") as (work, env):
        root = linked_root(tree, os.path.join(work, "root"))
        cmds = {
            "depmod-e": [depmod, "-e", "-E", os.path.join(headers, "Module.symvers"), "-b", root, kver, "-n"],
            "check": [kmodsim, "check", "--no-cache", "--kernel", headers, tree],
        }
        if baseline:
            cmds["baseline"] = [baseline, "check", "--no-cache", "--kernel", headers, tree]
        ok = {k: (0, 1) if k != "depmod-e" else (0,) for k in cmds}  # check: 1 = findings
        common.prime(cmds, env, ok)
        cpu: dict[str, list[float]] = {}
        times = common.rounds_of(cmds, env, rounds, ok, cpu=cpu)
        return {"label": label, "tree": tree, "modules": count_modules(tree),
                "median": {k: statistics.median(v) for k, v in times.items()}, "all": times,
                "cpu": {k: statistics.median(v) for k, v in cpu.items()}}


def main() -> None:
    ap = arguments(__doc__, 5)
    ap.add_argument("--headers", help="headers directory (with Module.symvers) for a --tree given as a path")
    ap.add_argument("--baseline", help="another kmodsim executable to time alongside (before/after)")
    ap.add_argument("--verbose", "-v", action="store_true", help="print every round's times")
    args = ap.parse_args()
    kmodsim, depmod = tools()
    print(common.machine_line(depmod))
    head = f"{'tree':<8}{'modules':>8}{'depmod -e s':>12}{'check s':>9}{'ratio':>7}{'target':>8}"
    if args.baseline:
        head += f"{'baseline s':>11}{'ratio':>7}"
    head += "   CPU s depmod -e/check" + ("/baseline" if args.baseline else "")
    print(head)
    for spec in args.tree or ["6.1", "6.12"]:
        tree, headers = resolve_tree(spec, args.headers)
        r = bench_tree(spec, tree, headers, args.rounds, kmodsim, depmod, args.baseline)
        m = r["median"]
        line = (f"{spec:<8}{r['modules']:>8}{m['depmod-e']:>12.3f}{m['check']:>9.3f}"
                f"{m['check'] / m['depmod-e']:>7.2f}{TARGET:>8}")
        if args.baseline:
            line += f"{m['baseline']:>11.3f}{m['baseline'] / m['depmod-e']:>7.2f}"
        line += "   " + "/".join(f"{v:.2f}" for v in r["cpu"].values())
        print(line, flush=True)
        if args.verbose:
            common.print_rounds(r["all"], 10)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
