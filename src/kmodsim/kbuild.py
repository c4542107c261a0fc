"""Building real modules with the kernel's own kbuild against a headers directory.

``build(src_dir, headers)`` copies the sources (``Kbuild``/``Makefile`` and ``*.c``/``*.h``) to a
scratch directory, runs ``make -C <headers> M=<dir> modules`` and keeps the result in the cache,
keyed by a hash of the sources, the headers' Module.symvers and the make arguments: a second call
with the same inputs costs nothing. The user's source directory is never written to.

:func:`make_modules` is the one ``make -C <headers> M=<dir> modules`` command line, run in place
(``build`` runs it in its scratch copy; ``kmodsim series`` in its one build tree, reused from step to
step so that kbuild recompiles only what changed); :func:`built_modules` reads which modules a build
made (its ``modules.order``), :func:`compiled` which objects it compiled, :func:`linked` which modules it linked and :func:`first_errors`
the compiler's and modpost's first error lines.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from typing import NamedTuple

from .cache import cache_root, cached_dir
from .errors import Error


class KbuildError(Error):
    pass


def _source_files(src: str) -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk(src):
        for f in files:
            if f in ("Kbuild", "Makefile") or f.endswith((".c", ".h", ".S", ".lds")):
                out.append(os.path.relpath(os.path.join(dirpath, f), src))
    return sorted(out)


def build(src: str, headers: str, make_args: tuple[str, ...] = (), extra_symbols: tuple[str, ...] = (),
          jobs: int | None = None) -> str:
    """Build the modules of ``src`` against ``headers``; return the (cached) build directory."""
    h = hashlib.sha256()
    for rel in _source_files(src):
        h.update(rel.encode() + b"\0")
        with open(os.path.join(src, rel), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    with open(os.path.join(headers, "Module.symvers"), "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
    h.update(os.path.realpath(headers).encode())
    for a in make_args:
        h.update(b"arg\0" + a.encode())
    for s in extra_symbols:
        with open(s, "rb") as f:
            h.update(b"sym\0" + hashlib.sha256(f.read()).digest())
    key = h.hexdigest()[:20]
    dest = os.path.join(cache_root(), "kbuild", f"{os.path.basename(os.path.normpath(src))}-{key}")

    def fill(tmp: str) -> None:
        for rel in _source_files(src):
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)), exist_ok=True)
            shutil.copy2(os.path.join(src, rel), os.path.join(tmp, rel))
        run = make_modules(tmp, headers, make_args, extra_symbols, jobs)
        with open(os.path.join(tmp, "build.log"), "w") as f:
            f.write(run.output)
        if run.returncode != 0:
            tail = "\n".join(run.output.strip().splitlines()[-15:])
            raise KbuildError(f"kbuild failed in {src} against {headers}:\n{tail}")

    return cached_dir(dest, fill)


def _c_locale() -> dict[str, str]:
    """The environment in the C locale: LANG and LC_* too, as the kernel's Makefile unexports LC_ALL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
    return {**env, "LC_ALL": "C", "LANG": "C", "LC_CTYPE": "C", "LC_MESSAGES": "C"}



class MakeRun(NamedTuple):
    """One ``make M=`` run: its exit status, its output (stdout then stderr), its wall time and the
    CPU time (user + system) of make and everything it ran — on a loaded machine the steadier measure."""

    returncode: int
    output: str
    seconds: float
    cpu_seconds: float = 0.0


def make_modules(mdir: str, headers: str, make_args: tuple[str, ...] = (), extra_symbols: tuple[str, ...] = (),
                 jobs: int | None = None) -> MakeRun:
    """``make -C <headers> M=<mdir> modules`` in place: kbuild writes its objects, ``.ko`` files,
    ``modules.order`` and ``Module.symvers`` beside the sources of ``mdir`` and, run again on the
    same directory, rebuilds only what changed (its ``.cmd`` files and fixdep's dependencies).
    BTF for modules is off (it needs the vmlinux the headers do not ship); messages in the C locale
    (the same words, quotes and all, whatever the user's)."""
    cmd = ["make", "-C", headers, f"M={os.path.abspath(mdir)}", f"-j{jobs or os.cpu_count() or 1}",
           "CONFIG_DEBUG_INFO_BTF_MODULES=", *make_args]
    if extra_symbols:
        cmd.append("KBUILD_EXTRA_SYMBOLS=" + " ".join(os.path.abspath(s) for s in extra_symbols))
    cmd.append("modules")
    import resource

    t0, r0 = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=_c_locale())
    except OSError as exc:  # no make
        return MakeRun(127, f"{cmd[0]}: {exc.strerror}\n", time.monotonic() - t0)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # make and what it waited for: gcc, ld, modpost
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return MakeRun(p.returncode, p.stdout + p.stderr, time.monotonic() - t0, cpu)


def built_modules(mdir: str) -> list[str]:
    """The modules the last ``make M=<mdir>`` built, in its ``modules.order`` (kbuild's own list:
    a module dropped from the Kbuild file is not in it, even while its old ``.ko`` stays), as paths
    relative to ``mdir``. 6.1's kbuild writes them as ``$(M)/name.ko`` (absolute: a directory built
    elsewhere and moved since is matched by the path's longest tail that exists in it), other
    releases ``name.o``: both are read."""
    try:
        with open(os.path.join(mdir, "modules.order")) as f:
            lines = f.read().split()
    except OSError:
        return []
    top = os.path.abspath(mdir)
    out = []
    for line in lines:
        line = line[:-2] + ".ko" if line.endswith(".o") else line
        rel = line
        if os.path.isabs(line):
            rel = os.path.relpath(line, top)
            if rel.startswith("../"):
                parts = line.split("/")
                rel = next((t for t in ("/".join(parts[k:]) for k in range(1, len(parts)))
                            if os.path.exists(os.path.join(top, t))), os.path.basename(line))
        if rel not in out:
            out.append(rel)
    return out


# kbuild's quiet command lines: "  CC [M]  /abs/dir/x.o" (scripts/Makefile.build quiet_cmd_cc_o_c),
# "  LD [M]  /abs/dir/x.ko" (scripts/Makefile.modfinal quiet_cmd_ld_ko_o)
_COMPILED = re.compile(r"^\s+(?:CC|AS) \[M\]\s+(\S+\.o)$", re.M)
_LINKED = re.compile(r"^\s+LD \[M\]\s+(\S+\.ko)$", re.M)
# gcc's "file:line:col: error: ..." / "fatal error:"; modpost's "ERROR: modpost: ..." (scripts/mod/modpost.c error())
_ERROR = re.compile(r"^(?:\S+:\d+:(?:\d+:)? (?:fatal )?error: .*|ERROR: modpost: .*|make\S*: \*\*\* No rule to make target .*)$",
                    re.M)


def compiled(output: str, mdir: str) -> list[str]:
    """The objects a ``make M=<mdir>`` run compiled (C or assembler; not the ``.mod.o`` files
    modpost's ``.mod.c`` give every module), relative to ``mdir``, in the order kbuild printed them."""
    top = os.path.abspath(mdir)
    out = []
    for path in _COMPILED.findall(output):
        rel = os.path.relpath(path, top) if os.path.isabs(path) else path
        if not rel.endswith(".mod.o") and rel not in out:
            out.append(rel)
    return out


def linked(output: str, mdir: str) -> list[str]:
    """The modules (``.ko``) a ``make M=<mdir>`` run linked, relative to ``mdir``."""
    top = os.path.abspath(mdir)
    return [os.path.relpath(p, top) if os.path.isabs(p) else p for p in _LINKED.findall(output)]


def first_errors(output: str, root: str, limit: int = 3) -> list[str]:
    """The first ``limit`` error lines of a failed build (the compiler's, then modpost's), with the
    ``root/`` prefix of the build tree's paths removed; the last lines of the output when no line
    has an error's form."""
    prefix = os.path.abspath(root).rstrip("/") + "/"
    lines = _ERROR.findall(output) or output.strip().splitlines()[-limit:]
    return [line.replace(prefix, "") for line in lines[:limit]]
