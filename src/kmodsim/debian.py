"""Debian kernel packages as inputs: fetched with ``apt-get download``, unpacked with ``dpkg-deb -x``
into kmodsim's cache (never installed into /), reused across runs.

Used by the tests (real kernels as fixtures), by ``kmodsim verify`` (the kernel image matching a
headers directory) and by the examples.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile


class DebianError(Exception):
    pass


def cache_root() -> str:
    return os.environ.get("KMODSIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kmodsim")


def _run(cmd: list[str], cwd: str | None = None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DebianError(f"{cmd[0]}: not installed (this needs a Debian system)") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["failed"])[-1]
        raise DebianError(f"{' '.join(cmd)}: {last}")
    return p.stdout


def depends_of(meta: str) -> list[str]:
    """Direct dependencies of a (meta-)package, as ``apt-cache depends`` lists them."""
    out = _run(["apt-cache", "depends", meta])
    return re.findall(r"^\s+Depends: (\S+)", out, re.M)


def image_package(meta: str = "linux-image-amd64") -> str:
    """The versioned image package a meta-package points at, e.g. linux-image-6.1.0-56-amd64."""
    for dep in depends_of(meta):
        if dep.startswith("linux-image-"):
            return dep
    raise DebianError(f"{meta}: depends on no linux-image package")


def fetch_deb(package: str) -> str:
    """The .deb of ``package`` in the cache, downloading it if needed."""
    d = os.path.join(cache_root(), "debs")
    os.makedirs(d, exist_ok=True)
    name = package.split(":")[0]
    have = sorted(glob.glob(os.path.join(d, f"{glob.escape(name)}_*.deb")))
    if have:
        return have[-1]
    tmp = tempfile.mkdtemp(prefix=".dl-", dir=d)
    try:
        _run(["apt-get", "download", package], cwd=tmp)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if len(debs) != 1:
            raise DebianError(f"apt-get download {package}: expected one .deb, got {len(debs)}")
        dest = os.path.join(d, os.path.basename(debs[0]))
        os.replace(debs[0], dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpack(debs: list[str], key: str) -> str:
    """``dpkg-deb -x`` every .deb into one directory of the cache named ``key``; atomic."""
    dest = os.path.join(cache_root(), "roots", key)
    if os.path.isdir(dest):
        return dest
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".x-", dir=os.path.dirname(dest))
    try:
        for deb in debs:
            _run(["dpkg-deb", "-x", deb, tmp])
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


class DebianKernel:
    """An unpacked Debian kernel image package."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.deb = fetch_deb(package)
        self.root = unpack([self.deb], os.path.basename(self.deb)[:-4])
        mods = glob.glob(os.path.join(self.root, "lib", "modules", "*"))
        if len(mods) != 1:
            raise DebianError(f"{self.deb}: expected one lib/modules/<kver>, found {len(mods)}")
        self.modules_dir = mods[0]
        self.kver = os.path.basename(mods[0])
        self.vmlinuz = os.path.join(self.root, "boot", f"vmlinuz-{self.kver}")

    def headers(self) -> str:
        """The matching headers directory: installed under /usr/src if there, else unpacked from
        ``linux-headers-<kver>``, its ``-common`` and ``linux-kbuild-*`` into the cache (with the
        arch Makefile's include repointed at the unpacked common tree)."""
        installed = f"/usr/src/linux-headers-{self.kver}"
        if os.path.isfile(os.path.join(installed, "Module.symvers")):
            return installed
        return unpacked_headers(self.kver)


def unpacked_headers(kver: str) -> str:
    pkg = f"linux-headers-{kver}"
    debs = [fetch_deb(pkg)]
    common = [d for d in depends_of(pkg) if d.startswith("linux-headers-") and d.endswith("-common")]
    kbuild = [d for d in depends_of(pkg) if d.startswith("linux-kbuild-")]
    debs += [fetch_deb(p) for p in common + kbuild]
    root = unpack(debs, f"headers-{kver}")
    hdir = os.path.join(root, "usr", "src", pkg)
    mk = os.path.join(hdir, "Makefile")
    text = open(mk, encoding="utf-8").read()
    fixed = re.sub(r"^include /usr/src/", f"include {root}/usr/src/", text, count=1, flags=re.M)
    if fixed != text:
        with open(mk, "w", encoding="utf-8") as f:
            f.write(fixed)
    return hdir
