"""What the benchmarks share: timing a command, the peak RSS of its process tree, the trees."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager


def timed(cmd: list[str], env=None, ok=(0,), before=None) -> float:
    """Wall seconds of one run of ``cmd`` (a fresh process; ``before()`` runs first, untimed).
    A run that exits outside ``ok`` stops the benchmark with its stderr."""
    if before:
        before()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    dt = time.perf_counter() - t0
    if p.returncode not in ok:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.decode().strip()[-500:]}")
    return dt


def cpu_of_children() -> float:
    """CPU seconds (user + system) of every child process waited for so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def prime(cmds: dict[str, list[str]], env, ok: dict | None = None, before: dict | None = None) -> None:
    """One untimed run of each command (page cache warm, kmodsim's cache and .pyc files primed);
    ``ok`` and ``before``: per name, as :func:`timed` takes them."""
    for k, cmd in cmds.items():
        timed(cmd, env, (ok or {}).get(k, (0,)), (before or {}).get(k))


def rounds_of(cmds: dict[str, list[str]], env, rounds: int, ok: dict | None = None, before: dict | None = None,
              cpu: dict[str, list[float]] | None = None) -> dict[str, list[float]]:
    """Wall seconds of ``rounds`` rounds, each running every command once in turn (so that all see
    the same machine state): name -> times. ``ok``/``before`` as for :func:`prime`; ``cpu``, when
    given, gets each run's CPU seconds (:func:`cpu_of_children`) by name."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(rounds):
        for k, cmd in cmds.items():
            c0 = cpu_of_children()
            times[k].append(timed(cmd, env, (ok or {}).get(k, (0,)), (before or {}).get(k)))
            if cpu is not None:
                cpu.setdefault(k, []).append(cpu_of_children() - c0)
    return times


@contextmanager
def scratch(prefix: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(a temporary directory, the environment kmodsim runs in): its cache in that directory, its
    .pyc files written and used as on a user's machine (no PYTHONDONTWRITEBYTECODE, else every
    run recompiles kmodsim). The directory is removed afterwards."""
    work = tempfile.mkdtemp(prefix=prefix)
    try:
        env = dict(os.environ, KMODSIM_CACHE=os.path.join(work, "cache"))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        yield work, env
    finally:
        shutil.rmtree(work, ignore_errors=True)


def machine_line(depmod: str) -> str:
    """The line a benchmark starts with: cores, load, depmod's kmod version."""
    version = subprocess.run([depmod, "--version"], capture_output=True, text=True).stdout.split()[2]
    return f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; depmod: kmod {version}"


def print_rounds(times: dict[str, list[float]], width: int) -> None:
    """Every round's time of each command (``--verbose``)."""
    for k, v in times.items():
        print(f"    {k:<{width}}" + " ".join(f"{x:.3f}" for x in v))


def peak_rss(cmd: list[str], env=None) -> int:
    """Peak RSS (KiB) of any process of the tree, from a sub-interpreter's RUSAGE_CHILDREN."""
    code = ("import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *cmd], capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip())


def series_kernel(spec: str):
    """Debian's kernel of a series ("6.1", "6.12"), fetched and unpacked (cached)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
    from kmodsim.debian import DebianError
    from kmodsim.debian import series_kernel as fetch

    try:
        return fetch(spec)
    except DebianError as exc:
        sys.exit(str(exc))


def count_modules(tree: str) -> int:
    return sum(1 for _d, _s, fs in os.walk(tree) for f in fs if ".ko" in f)


def arguments(doc: str, rounds: int):
    """The options every benchmark takes (--tree, repeatable; --rounds); add more, then parse."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", help="6.1, 6.12, or a lib/modules/<kver> directory")
    ap.add_argument("--rounds", type=int, default=rounds)
    return ap


def tools() -> tuple[str, str]:
    """(kmodsim, depmod): the venv's kmodsim on PATH, kmod's depmod."""
    kmodsim = shutil.which("kmodsim") or sys.exit("kmodsim is not on PATH (run scripts/setup.sh, use .venv/bin)")
    return kmodsim, shutil.which("depmod") or "/usr/sbin/depmod"


def linked_root(tree: str, root: str) -> str:
    """``root/lib/modules/<kver>`` made of hard links to ``tree``'s files (depmod writes its outputs
    into the copy, never into the original tree); returns ``root``."""
    os.makedirs(os.path.join(root, "lib", "modules"))
    subprocess.run(["cp", "-al", tree, os.path.join(root, "lib", "modules", os.path.basename(tree))], check=True)
    return root
