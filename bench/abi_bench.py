#!/usr/bin/env python3
"""``kmodsim abi diff`` beside the nearest tool a user would pick: a plain ``diff`` of the two
Module.symvers files, in one run, interleaved, each command a fresh process, page cache warm.

  symvers-diff  ``diff OLD/Module.symvers NEW/Module.symvers`` (says which lines differ; not which
                kind of change, nor whether it matters)
  headers       ``kmodsim abi diff OLD NEW`` on two headers directories (text; and ``--json``)
  trees warm    ``kmodsim abi diff ROOT_OLD ROOT_NEW`` on two unpacked image packages (modules and
                vmlinuz; the scan cache primed)
  trees cold    the same with ``--no-cache`` (every module read again, all cores)
  causes warm   ``kmodsim abi diff ROOT_OLD ROOT_NEW`` on the images of the headers pair (Debian's
                6.1.0-47 and -50): the exports *and* the causes of every CRC change from both
                kernels' BTF (vmlinux's and each module's), the scan cache primed
  causes cold   the same with ``--no-cache``
  no causes     the same, warm, with ``--no-causes`` (what the causes cost)
  bpftool dump  ``bpftool btf dump file VMLINUX format c`` of both kernels (vmlinux taken out of the
                bzImage beforehand, untimed): the BTF reader a user would pick

The headers pair defaults to Debian 12's 6.1.0-47 -> 6.1.0-50 (18,107 CRC changes), the tree pair
to Debian's 6.1 and 6.12 images. Medians of wall time are printed.

With ``--history``, instead: ``kmodsim abi history`` over Debian 12's 7 ABIs of 6.1 (amd64), each
the same command with local processes (the default) and on a 2-worker ``LocalCluster``
(``--scheduler local:2``: each kernel one task), interleaved; the outputs of the two are compared
byte for byte first (text and ``--json``), and the benchmark stops if they differ.

  history headers   the 7 headers directories (Module.symvers; no BTF)
  history images    the 7 image packages, unpacked (vmlinuz and modules: BTF causes of each step),
                    scan cache primed
  ... cold          the same with ``--no-cache`` (every module of every tree read again)

    python bench/abi_bench.py [--rounds 5] [--old KVER] [--new KVER] [--no-trees] [--no-images]
    python bench/abi_bench.py --history [--rounds 3] [--no-images]
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile

from common import arguments, series_kernel, timed, tools


def headers(kver: str) -> str:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from kmodsim.debian import DebianError, unpacked_headers

    installed = f"/usr/src/linux-headers-{kver}"
    if os.path.isfile(os.path.join(installed, "Module.symvers")):
        return installed
    try:
        return unpacked_headers(kver)
    except DebianError as exc:
        sys.exit(str(exc))


def image(kver: str):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from kmodsim.debian import DebianError, DebianKernel

    try:
        return DebianKernel(f"linux-image-{kver}")
    except DebianError as exc:
        sys.exit(str(exc))


def vmlinux(vmlinuz: str, dest: str) -> str:
    from kmodsim.kernel import extract_vmlinux

    data = extract_vmlinux(open(vmlinuz, "rb").read())
    if data is None:
        sys.exit(f"{vmlinuz}: no vmlinux inside")
    path = os.path.join(dest, os.path.basename(vmlinuz) + ".elf")
    with open(path, "wb") as f:
        f.write(data)
    return path


# Debian 12's 6.1 ABIs in the archive, in order
ABIS = ["6.1.0-47-amd64", "6.1.0-50-amd64", "6.1.0-53-amd64", "6.1.0-54-amd64", "6.1.0-55-amd64",
        "6.1.0-56-amd64", "6.1.0-57-amd64"]


def history(kmodsim: str, rounds: int, images: bool) -> None:
    import subprocess

    inputs = {"headers": [headers(k) for k in ABIS]}
    if images:
        inputs["images"] = [image(k).root for k in ABIS]
    cmds = {}
    for what, paths in inputs.items():
        for extra in ([], ["--no-cache"]) if what == "images" else ([],):
            name = f"history {what}" + (" cold" if extra else "")
            for where, sched in (("local", []), ("local:2", ["--scheduler", "local:2"])):
                cmds[f"{name}, {where}"] = [kmodsim, "abi", "history", *extra, *sched, *paths]
        for form in ([], ["--json"]):  # the same bytes whichever runs the tasks
            outs = [subprocess.run([kmodsim, "abi", "history", *form, *sched, *paths], capture_output=True)
                    for sched in ([], ["--scheduler", "local:2"])]
            if outs[0].stdout != outs[1].stdout or outs[0].returncode != outs[1].returncode:
                sys.exit(f"history {what} {' '.join(form)}: local and local:2 outputs differ")
        print(f"history {what}: text and --json identical, local and local:2 "
              f"({len(outs[0].stdout)} bytes of JSON)")
    ok = (0, 1)  # (the runs above warmed the page cache, the scan cache and the .pyc files)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for name, cmd in cmds.items():
            times[name].append(timed(cmd, ok=ok))
    print(f"abi history over Debian 12's {len(ABIS)} ABIs of 6.1, medians of {rounds} rounds "
          f"({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at the end)")
    for name, ts in times.items():
        print(f"  {name:<32} {statistics.median(ts):7.2f} s   ({' '.join(f'{t:.2f}' for t in ts)})")


def main() -> None:
    ap = arguments(__doc__ or "", 5)
    ap.add_argument("--old", default="6.1.0-47-amd64")
    ap.add_argument("--new", default="6.1.0-50-amd64")
    ap.add_argument("--no-trees", action="store_true")
    ap.add_argument("--no-images", action="store_true")
    ap.add_argument("--history", action="store_true")
    a = ap.parse_args()
    kmodsim, _depmod = tools()
    if a.history:
        history(kmodsim, a.rounds, not a.no_images)
        return
    old, new = headers(a.old), headers(a.new)
    cmds = {
        "symvers-diff": (["diff", f"{old}/Module.symvers", f"{new}/Module.symvers"], (0, 1)),
        "headers": ([kmodsim, "abi", "diff", old, new], (0, 1)),
        "headers --json": ([kmodsim, "abi", "diff", "--json", old, new], (0, 1)),
    }
    if not a.no_trees:
        t_old, t_new = series_kernel("6.1"), series_kernel("6.12")
        cmds["trees warm"] = ([kmodsim, "abi", "diff", t_old.root, t_new.root], (0, 1))
        cmds["trees cold"] = ([kmodsim, "abi", "diff", "--no-cache", t_old.root, t_new.root], (0, 1))
    tmp = tempfile.mkdtemp(prefix="abi-bench-")
    if not a.no_images:
        i_old, i_new = image(a.old), image(a.new)
        cmds["causes warm"] = ([kmodsim, "abi", "diff", i_old.root, i_new.root], (0, 1))
        cmds["causes cold"] = ([kmodsim, "abi", "diff", "--no-cache", i_old.root, i_new.root], (0, 1))
        cmds["no causes"] = ([kmodsim, "abi", "diff", "--no-causes", i_old.root, i_new.root], (0, 1))
        tool = shutil.which("bpftool") or "/usr/sbin/bpftool"
        v_old, v_new = vmlinux(i_old.vmlinuz, tmp), vmlinux(i_new.vmlinuz, tmp)
        cmds["bpftool dump"] = (["sh", "-c", f"{tool} btf dump file {v_old} format c >/dev/null && "
                                             f"{tool} btf dump file {v_new} format c >/dev/null"], (0,))
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for cmd, ok in cmds.values():  # untimed: page cache and scan cache warm
        timed(cmd, ok=ok)
    for _ in range(a.rounds):
        for name, (cmd, ok) in cmds.items():
            times[name].append(timed(cmd, ok=ok))
    print(f"abi diff, medians of {a.rounds} rounds ({a.old} -> {a.new}"
          + ("" if a.no_trees else "; trees: Debian's 6.1 and 6.12 images") + ")")
    for name, ts in times.items():
        print(f"  {name:<15} {statistics.median(ts):7.2f} s")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
