"""kmod built from a Debian source package into a private prefix: an oracle for another kmod
version than the system's (Debian 13's kmod 34 on a Debian 12 machine, whose own is kmod 30).

``build_kmod("trixie")`` takes the upstream tree of that release's ``kmod`` source package
(:func:`kmodsim.debian.upstream_source`: ``apt-get source`` through a private apt state, the
``.orig.tar.xz`` unpacked, Debian's patches left out — none of them touches depmod or libkmod),
configures it with meson as Debian's ``debian/rules`` does for the ``kmod`` package (``-D
openssl=enabled -D dlopen=all -D zlib=disabled -D xz=enabled -D zstd=enabled``, no docs, no man
pages, no tests), builds it with ninja and installs it into ``cache_root()/kmod-<version>/``
(``sbin/depmod`` there, and the build's ``config.h``, which the testsuite's traps are compiled
with), never over the system's kmod. The result is kept, marked complete by a
file written last: a second call costs nothing. meson, ninja-build, pkgconf, libzstd-dev,
liblzma-dev, zlib1g-dev and libssl-dev must be installed (scripts/setup.sh installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from .cache import cache_root
from .debian import DebianError, upstream_source
from .errors import Error


class KmodBuildError(Error):
    pass


# debian/rules of kmod 34.2-2 (trixie), CONFFLAGS_deb, less what only builds documentation or tests
DEBIAN_MESON_OPTIONS = ("-Dopenssl=enabled", "-Ddlopen=all", "-Dzlib=disabled", "-Dxz=enabled",
                        "-Dzstd=enabled", "-Ddocs=false", "-Dmanpages=false", "-Dbuild-tests=false",
                        "-Dbashcompletiondir=no", "-Dfishcompletiondir=no", "-Dzshcompletiondir=no")


def kmod_version(src: str) -> str:
    """The version in the tree's meson.build (``version : '34.2'``)."""
    with open(os.path.join(src, "meson.build"), encoding="utf-8") as f:
        m = re.search(r"^\s*version\s*:\s*'([^']+)'", f.read(), re.M)
    if m is None:
        raise KmodBuildError(f"{src}/meson.build: no version")
    return m.group(1)


def _run(cmd: list[str], cwd: str, log: str) -> None:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KmodBuildError(f"{cmd[0]}: not installed (scripts/setup.sh installs meson and ninja-build)") from None
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}")
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        raise KmodBuildError(f"{' '.join(cmd[:2])} failed:\n{tail}")


def build_kmod(suite: str = "trixie") -> str:
    """kmod of Debian ``suite``'s source package, built and installed into the cache; returns the
    prefix (``<prefix>/sbin/depmod``, a link to ``bin/kmod``). Raises :class:`KmodBuildError`
    when it cannot be had."""
    try:
        src = upstream_source("kmod", suite)
    except DebianError as exc:
        raise KmodBuildError(f"{suite}'s kmod source package: {exc}") from None
    prefix = os.path.join(cache_root(), f"kmod-{kmod_version(src)}")
    done = os.path.join(prefix, ".kmodsim-built")
    if os.path.isfile(done):
        return prefix
    os.makedirs(cache_root(), exist_ok=True)
    import fcntl

    # one build at a time per prefix (meson installs into it in place): a second process waits,
    # then finds the marker
    with open(prefix + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isfile(done):
            return prefix
        return _build(src, prefix, done)


def _build(src: str, prefix: str, done: str) -> str:
    work = tempfile.mkdtemp(prefix=".kmod-build-", dir=cache_root())
    try:
        log = os.path.join(work, "build.log")
        build = os.path.join(work, "build")
        if os.path.isdir(prefix):
            shutil.rmtree(prefix)
        # distconfdir as Debian's (prefix=/usr): depmod reads /usr/lib/depmod.d like trixie's
        _run(["meson", "setup", build, src, f"--prefix={prefix}", "-Dsysconfdir=/etc",
              "-Ddistconfdir=/usr/lib", "-Dmoduledir=/lib/modules", "--buildtype=plain",
              *DEBIAN_MESON_OPTIONS], cwd=work, log=log)
        _run(["ninja", "-C", build], cwd=work, log=log)
        _run(["meson", "install", "-C", build, "--no-rebuild", "--only-changed"], cwd=work, log=log)
        if not os.access(os.path.join(prefix, "sbin", "depmod"), os.X_OK):
            raise KmodBuildError(f"{prefix}/sbin/depmod: not installed by meson install")
        shutil.copy(log, os.path.join(prefix, "build.log"))
        # the build's config.h: what the testsuite's LD_PRELOAD traps are compiled with
        shutil.copy(os.path.join(build, "config.h"), os.path.join(prefix, "config.h"))
        open(done, "w").close()
    except BaseException:
        shutil.rmtree(prefix, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return prefix


def kmod_depmod(suite: str = "trixie") -> str:
    """The built kmod's depmod."""
    return os.path.join(build_kmod(suite), "sbin", "depmod")
