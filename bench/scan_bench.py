#!/usr/bin/env python3
"""Full-tree scan: kmodsim against kmod's depmod, in one run, on the same machine and page cache.

For each tree (Debian 6.1: plain .ko; Debian 6.12: .ko.xz), rounds interleave:
  depmod   ``depmod -b <hardlinked copy> <kver>`` (reads every module, writes modules.*)
  cold     ``kmodsim scan --no-cache <tree>``     (every module parsed, all cores)
  warm     ``kmodsim scan <tree>`` with a primed cache
Each is a fresh process; the page cache is warm for all (one untimed read first). Medians are
reported with their ratio to depmod and the peak RSS of the whole process tree (ru_maxrss of the
biggest process: the parent or a worker).

    python bench/scan_bench.py [--rounds 5] [--tree 6.1] [--tree 6.12] [--tree /path/to/lib/modules/KVER]
"""

from __future__ import annotations

import os
import statistics
import subprocess

import common
from common import arguments, count_modules, linked_root, peak_rss, series_kernel, tools

TARGETS = {"6.1": {"cold": 0.8, "warm": 0.05}, "6.12": {"cold": 0.6, "warm": 0.05}}
# kmodsim check against depmod -e -E Module.symvers (issue: <= 1x cold on 6.12, <= 0.05x warm)
CHECK_TARGETS = {"cold": 1.0, "warm": 0.05}


def resolve_tree(spec: str) -> tuple[str, str | None]:
    """(lib/modules/<kver> directory, matching headers directory or None)."""
    if os.path.isdir(spec):
        return spec, None
    k = series_kernel(spec)
    return k.modules_dir, k.headers()


def bench_tree(label: str, tree: str, rounds: int, kmodsim: str, depmod: str, headers: str | None) -> dict:
    kver = os.path.basename(tree.rstrip("/"))
    with common.scratch("kmodsim-bench-") as (work, env):
        base = linked_root(tree, os.path.join(work, "root"))
        cmds = {
            "depmod": [depmod, "-b", base, kver],
            "cold": [kmodsim, "scan", "--no-cache", tree],
            "warm": [kmodsim, "scan", tree],
        }
        if headers:
            symvers = os.path.join(headers, "Module.symvers")
            cmds["depmod-e"] = [depmod, "-e", "-E", symvers, "-b", base, kver]
            cmds["check-cold"] = [kmodsim, "check", "--no-cache", "-k", headers, tree]
            cmds["check-warm"] = [kmodsim, "check", "-k", headers, tree]
        subprocess.run(cmds["depmod"], check=True)  # warm the page cache, untimed
        subprocess.run(cmds["warm"], check=True, env=env, stdout=subprocess.DEVNULL)  # prime kmodsim's cache
        # depmod -e prints problems on stderr and still exits 0; kmodsim check exits 1 on findings
        cmds_ok = {k: (0, 1) if k.startswith("check") else (0,) for k in cmds}
        times = common.rounds_of(cmds, env, rounds, cmds_ok)
        rss = {k: peak_rss(cmd, env) for k, cmd in cmds.items()}
        return {"label": label, "tree": tree, "modules": count_modules(tree),
                "median": {k: statistics.median(v) for k, v in times.items()},
                "all": times, "rss_kib": rss}


def main() -> None:
    args = arguments(__doc__, 5).parse_args()
    kmodsim, depmod = tools()
    print(common.machine_line(depmod))
    print(f"{'tree':<8}{'modules':>8}{'depmod s':>10}{'cold s':>9}{'ratio':>7}{'target':>8}"
          f"{'warm s':>9}{'ratio':>7}{'target':>8}{'RSS MiB depmod/cold/warm':>28}")
    results = []
    for spec in args.tree or ["6.1", "6.12"]:
        tree, headers = resolve_tree(spec)
        r = bench_tree(spec, tree, args.rounds, kmodsim, depmod, headers)
        results.append(r)
        m = r["median"]
        t = TARGETS.get(spec, {"cold": float("nan"), "warm": float("nan")})
        rc, rw = m["cold"] / m["depmod"], m["warm"] / m["depmod"]
        rss = "/".join(f"{r['rss_kib'][k] / 1024:.0f}" for k in ("depmod", "cold", "warm"))
        print(f"{spec:<8}{r['modules']:>8}{m['depmod']:>10.3f}{m['cold']:>9.3f}{rc:>7.2f}{t['cold']:>8}"
              f"{m['warm']:>9.3f}{rw:>7.3f}{t['warm']:>8}{rss:>28}")


    print()
    print(f"{'tree':<8}{'depmod -e s':>12}{'check s':>9}{'ratio':>7}{'target':>8}{'warm s':>9}{'ratio':>7}{'target':>8}")
    for r in results:
        m = r["median"]
        if "depmod-e" not in m:
            continue
        rc, rw = m["check-cold"] / m["depmod-e"], m["check-warm"] / m["depmod-e"]
        print(f"{r['label']:<8}{m['depmod-e']:>12.3f}{m['check-cold']:>9.3f}{rc:>7.2f}{CHECK_TARGETS['cold']:>8}"
              f"{m['check-warm']:>9.3f}{rw:>7.3f}{CHECK_TARGETS['warm']:>8}")


if __name__ == "__main__":
    main()
