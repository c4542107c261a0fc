#!/usr/bin/env python3
"""``kmodsim depmod`` against kmod's depmod, in one run, on the same machine and page cache.

For each tree (Debian 6.1: plain .ko; Debian 6.12: .ko.xz) two hard-linked copies are made (the
cached trees are never written to): depmod writes into one, kmodsim into the other. Rounds
interleave, each command a fresh process:

  depmod        ``depmod -b <copy A> <kver>``
  cold          ``kmodsim depmod --no-cache -b <copy B> <kver>``  (every module read, all cores)
  cold-bin      the same with ``--bin``: also the five .bin indexes, i.e. all the files depmod writes
  warm          ``kmodsim depmod -b <copy B> <kver>``, cache primed (unchanged tree: the memoised
                result is written after discovery and a stat of every module)
  warm-modules  the same with the memoised result deleted before each run (per-module records
                from the cache, everything computed again)
  depmod34      kmod 34's depmod (Debian 13's, built from trixie's source: kmodsim.kmod_build) on a
                third copy: it writes every file, the .bin indexes and modules.weakdep included
  cold-34       ``kmodsim depmod --kmod-version 34 --no-cache --bin`` on a fourth copy: the same files

The page cache is warm for all (one untimed run of each first). Medians are reported with their
ratio to depmod (cold-34's to depmod34), the peak RSS of the process tree, and whether the files
kmodsim wrote are byte-identical to depmod's (to kmod 34's for cold-34). Without kmod 34 (no
meson, no network) the two kmod 34 columns say n/a.

    python bench/depmod_bench.py [--rounds 5] [--tree 6.1] [--tree 6.12] [--tree /path/lib/modules/KVER]
"""

from __future__ import annotations

import glob
import os
import statistics

import common
from common import arguments, count_modules, linked_root, peak_rss, series_kernel, tools

TARGETS = {"6.1": {"cold": 0.8, "warm": 0.05}, "6.12": {"cold": 0.6, "warm": 0.05}}
FILES = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols", "modules.devname")
BINS = ("modules.dep.bin", "modules.alias.bin", "modules.symbols.bin", "modules.builtin.bin",
        "modules.builtin.alias.bin")


def resolve_tree(spec: str) -> str:
    return spec.rstrip("/") if os.path.isdir(spec) else series_kernel(spec).modules_dir


FILES34 = ("modules.dep", "modules.alias", "modules.softdep", "modules.weakdep", "modules.symbols",
           "modules.devname") + BINS


def kmod34_depmod() -> str | None:
    from kmodsim.errors import Error
    from kmodsim.kmod_build import kmod_depmod

    try:
        return kmod_depmod("trixie")
    except Error as exc:
        print(f"kmod 34: not available ({exc})")
        return None


def bench_tree(label: str, tree: str, rounds: int, kmodsim: str, depmod: str, depmod34: str | None = None) -> dict:
    kver = os.path.basename(tree)
    with common.scratch("kmodsim-depmod-bench-") as (work, env):
        roots = {side: linked_root(tree, os.path.join(work, side)) for side in ("a", "b", "c", "d")}
        cache = env["KMODSIM_CACHE"]
        cmds = {
            "depmod": [depmod, "-b", roots["a"], kver],
            "cold": [kmodsim, "depmod", "--no-cache", "-b", roots["b"], kver],
            "cold-bin": [kmodsim, "depmod", "--no-cache", "--bin", "-b", roots["b"], kver],
            "warm": [kmodsim, "depmod", "-b", roots["b"], kver],
            "warm-modules": [kmodsim, "depmod", "-b", roots["b"], kver],
        }
        if depmod34 is not None:
            cmds["depmod34"] = [depmod34, "-b", roots["c"], kver]
            cmds["cold-34"] = [kmodsim, "depmod", "--kmod-version", "34", "--no-cache", "--bin", "-b", roots["d"],
                               kver]

        def drop_memo() -> None:
            for f in glob.glob(os.path.join(cache, "depmod-v*", "*.result")):
                os.unlink(f)

        before = {"warm-modules": drop_memo}
        common.prime(cmds, env, before=before)
        identical = all(open(os.path.join(roots["a"], "lib", "modules", kver, f), "rb").read()
                        == open(os.path.join(roots["b"], "lib", "modules", kver, f), "rb").read()
                        for f in FILES + BINS)  # cold-bin ran before the warm runs: every file is there
        identical34 = None if depmod34 is None else all(
            open(os.path.join(roots["c"], "lib", "modules", kver, f), "rb").read()
            == open(os.path.join(roots["d"], "lib", "modules", kver, f), "rb").read() for f in FILES34)
        times = common.rounds_of(cmds, env, rounds, before=before)
        rss = {}
        for k, cmd in cmds.items():
            if k in before:
                before[k]()
            rss[k] = peak_rss(cmd, env)
        return {"label": label, "tree": tree, "modules": count_modules(tree), "identical": identical,
                "identical34": identical34,
                "median": {k: statistics.median(v) for k, v in times.items()}, "all": times, "rss_kib": rss}


def main() -> None:
    ap = arguments(__doc__, 5)
    ap.add_argument("--verbose", "-v", action="store_true", help="print every round's times")
    args = ap.parse_args()
    kmodsim, depmod = tools()
    depmod34 = kmod34_depmod()
    print(common.machine_line(depmod))
    print(f"{'tree':<8}{'modules':>8}{'depmod s':>10}{'cold s':>9}{'ratio':>7}{'target':>8}"
          f"{'warm s':>9}{'ratio':>7}{'target':>8}{'warm-mod s':>11}{'ratio':>7}{'cold-bin s':>11}{'ratio':>7}"
          f"{'identical':>10}{'RSS MiB depmod/cold/warm':>26}"
          f"{'dm34 s':>9}{'cold34 s':>10}{'ratio':>7}{'id34':>6}")
    for spec in args.tree or ["6.1", "6.12"]:
        r = bench_tree(spec, resolve_tree(spec), args.rounds, kmodsim, depmod, depmod34)
        m = r["median"]
        t = TARGETS.get(spec, {"cold": float("nan"), "warm": float("nan")})
        rc, rw, rm = m["cold"] / m["depmod"], m["warm"] / m["depmod"], m["warm-modules"] / m["depmod"]
        rb = m["cold-bin"] / m["depmod"]
        rss = "/".join(f"{r['rss_kib'][k] / 1024:.0f}" for k in ("depmod", "cold", "warm"))
        print(f"{spec:<8}{r['modules']:>8}{m['depmod']:>10.3f}{m['cold']:>9.3f}{rc:>7.2f}{t['cold']:>8}"
              f"{m['warm']:>9.3f}{rw:>7.3f}{t['warm']:>8}{m['warm-modules']:>11.3f}{rm:>7.3f}"
              f"{m['cold-bin']:>11.3f}{rb:>7.2f}"
              f"{'yes' if r['identical'] else 'NO':>10}{rss:>26}"
              + (f"{m['depmod34']:>9.3f}{m['cold-34']:>10.3f}{m['cold-34'] / m['depmod34']:>7.2f}"
                 f"{'yes' if r['identical34'] else 'NO':>6}" if depmod34 else f"{'n/a':>9}{'n/a':>10}{'':>7}{'':>6}"),
              flush=True)
        if args.verbose:
            common.print_rounds(r["all"], 13)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
