"""Building real modules with the kernel's own kbuild against a headers directory.

``build(src_dir, headers)`` copies the sources (``Kbuild``/``Makefile`` and ``*.c``/``*.h``) to a
scratch directory, runs ``make -C <headers> M=<dir> modules`` and keeps the result in the cache,
keyed by a hash of the sources, the headers' Module.symvers and the make arguments: a second call
with the same inputs costs nothing. The user's source directory is never written to.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

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
        cmd = ["make", "-C", headers, f"M={tmp}", f"-j{jobs or os.cpu_count() or 1}",
               "CONFIG_DEBUG_INFO_BTF_MODULES=", *make_args]
        if extra_symbols:
            cmd.append("KBUILD_EXTRA_SYMBOLS=" + " ".join(os.path.abspath(s) for s in extra_symbols))
        cmd.append("modules")
        p = subprocess.run(cmd, capture_output=True, text=True)
        with open(os.path.join(tmp, "build.log"), "w") as f:
            f.write(p.stdout + p.stderr)
        if p.returncode != 0:
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
            raise KbuildError(f"kbuild failed in {src} against {headers}:\n{tail}")

    return cached_dir(dest, fill)
