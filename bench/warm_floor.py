#!/usr/bin/env python3
"""How fast can a warm (cached) scan be in CPython at all? The floor, against depmod, in one run.

A cache keyed by size, mtime, ctime and inode must stat every module on every run: a module rewritten
in place changes no directory, so nothing cheaper notices it. This measures, as fresh processes
interleaved with depmod (medians of --rounds):

  python        the venv's interpreter doing nothing (``python -c pass``)
  walk+stat     that interpreter walking the tree as depmod does and stat-ing every module,
                nothing else (no kmodsim import, no cache read, no output)
  kmodsim warm  ``kmodsim scan`` with a primed cache

and prints each as a fraction of depmod's time. When ``walk+stat`` alone is above a target ratio,
no CPython process that keeps the cache exact can meet it on that tree.

    python bench/warm_floor.py [--rounds 9] [--tree 6.1] [--tree /path/to/lib/modules/KVER]
"""

from __future__ import annotations

import os
import statistics

import common
from common import arguments, count_modules, linked_root, series_kernel, tools

WALK_AND_STAT = r"""
import os, sys
SUF = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
keys = []
stack = [sys.argv[1]]
while stack:
    d = stack.pop()
    with os.scandir(d) as it:
        for e in it:
            n = e.name
            if n.endswith(SUF):
                st = os.stat(e.path)
                keys.append((e.path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
            elif n not in ("build", "source") and e.is_dir():
                stack.append(e.path)
"""


def main() -> None:
    args = arguments(__doc__, 9).parse_args()
    kmodsim, depmod = tools()
    python = os.path.join(os.path.dirname(kmodsim), "python")
    print(f"{'tree':<8}{'modules':>8}{'depmod s':>10}{'python':>10}{'walk+stat':>11}{'kmodsim warm':>14}"
          "   (fractions of depmod)")
    for spec in args.tree or ["6.1"]:
        tree = spec.rstrip("/") if os.path.isdir(spec) else series_kernel(spec).modules_dir
        kver = os.path.basename(tree)
        with common.scratch("kmodsim-floor-") as (work, env):
            base = linked_root(tree, os.path.join(work, "root"))
            cmds = {"depmod": [depmod, "-b", base, kver], "python": [python, "-c", "pass"],
                    "walk+stat": [python, "-c", WALK_AND_STAT, tree], "warm": [kmodsim, "scan", tree]}
            common.prime(cmds, env)  # page cache, .pyc files and kmodsim's cache primed, untimed
            m = {k: statistics.median(v) for k, v in common.rounds_of(cmds, env, args.rounds).items()}
            d = m["depmod"]
            print(f"{spec:<8}{count_modules(tree):>8}{d:>10.3f}{m['python'] / d:>10.3f}{m['walk+stat'] / d:>11.3f}"
                  f"{m['warm'] / d:>14.3f}")


if __name__ == "__main__":
    main()
