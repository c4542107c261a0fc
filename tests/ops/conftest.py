"""Fixtures for the ``kmodsim ops`` tests.

Real inputs come from Debian's archive through apt (``apt-get download``), cached under
``${KMODSIM_CACHE:-$HOME/.cache/kmodsim}`` and keyed by package version; extraction goes to a
temporary directory that is renamed into place, so an interrupted run never leaves a half tree.
With ``KMODSIM_REQUIRE_REAL=1`` (CI) failing to obtain them fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from kmodsim.cache import cache_root as debian_cache_root
from kmodsim.debian import SERIES_METAPACKAGES

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE_PACKAGE = "linux-source-6.1"
SOURCE_DIRS = ("arch/x86/kvm", "arch/x86/include", "virt/kvm", "include/linux")
def cache_root() -> Path:
    return Path(debian_cache_root())


def unavailable(message: str) -> None:
    if os.environ.get("KMODSIM_REQUIRE_REAL") == "1":
        pytest.fail(f"KMODSIM_REQUIRE_REAL=1 but {message}")
    pytest.skip(message)


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kw)


def apt_version(pkg: str) -> str:
    out = _run(["apt-cache", "show", "--no-all-versions", pkg]).stdout
    m = re.search(r"^Version: (\S+)", out, re.M)
    if m is None:
        raise RuntimeError(f"apt-cache knows no version of {pkg}")
    return m.group(1)


def apt_depends(meta: str) -> str:
    out = _run(["apt-cache", "depends", meta]).stdout
    m = re.search(r"^\s*Depends: (linux-image-\S+)", out, re.M)
    if m is None:
        raise RuntimeError(f"{meta} depends on no linux-image package")
    return m.group(1)


def apt_download(pkg: str, version: str, into: Path) -> Path:
    """The .deb of ``pkg`` at ``version``: reused from the shared deb cache when present."""
    shared = cache_root() / "debs"
    for deb in shared.glob(f"{pkg}_{version.replace(':', '%3a')}_*.deb"):
        return deb
    _run(["apt-get", "download", f"{pkg}={version}"], cwd=into)
    debs = sorted(into.glob(f"{pkg}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download {pkg} produced no .deb")
    return debs[0]


def _deb_extract(deb: Path, dest: Path, members: list[str]) -> None:
    """``dpkg-deb --fsys-tarfile DEB | tar -x -C DEST --wildcards MEMBERS``."""
    dpkg = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(dest), "--wildcards", *members], stdin=dpkg.stdout,
                         capture_output=True, text=True)
    dpkg.stdout.close()
    if dpkg.wait() != 0 or tar.returncode != 0:
        raise RuntimeError(f"extracting {deb.name}: {tar.stderr.strip()}")


def _publish(tmp_tree: Path, final: Path) -> None:
    """Atomically move a finished tree into place (another process may have won the race)."""
    (tmp_tree / ".kmodsim-complete").write_text("ok\n")
    try:
        os.rename(tmp_tree, final)
    except OSError:
        if not (final / ".kmodsim-complete").exists():
            raise


@pytest.fixture(scope="session")
def linux61_source() -> Path:
    """Debian's linux-source-6.1, only arch/x86/kvm, arch/x86/include, virt/kvm, include/linux."""
    base = cache_root() / "src"
    try:
        version = apt_version(SOURCE_PACKAGE)
        final = base / f"{SOURCE_PACKAGE}_{version}"
        if (final / ".kmodsim-complete").exists():
            return final
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
        try:
            deb = apt_download(SOURCE_PACKAGE, version, work)
            _deb_extract(deb, work, [f"./usr/src/{SOURCE_PACKAGE}.tar.xz"])
            tarball = work / "usr" / "src" / f"{SOURCE_PACKAGE}.tar.xz"
            out = work / "tree"
            out.mkdir()
            _run(["tar", "-xJf", str(tarball), "-C", str(out), "--wildcards",
                  *(f"{SOURCE_PACKAGE}/{d}" for d in SOURCE_DIRS)])
            _publish(out / SOURCE_PACKAGE, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return final
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) and exc.stderr else exc
        unavailable(f"cannot obtain {SOURCE_PACKAGE}: {detail}")
        raise AssertionError("unreachable") from None


@pytest.fixture(scope="session")
def debian_kvm_modules() -> dict[str, list[Path]]:
    """kvm.ko, kvm-intel.ko, kvm-amd.ko (plain for 6.1, .ko.xz for 6.12) from Debian's images."""
    found: dict[str, list[Path]] = {}
    base = cache_root() / "ops-ko"
    try:
        for label, meta in SERIES_METAPACKAGES.items():
            pkg = apt_depends(meta)
            version = apt_version(pkg)
            final = base / f"{pkg}_{version}"
            if not (final / ".kmodsim-complete").exists():
                base.mkdir(parents=True, exist_ok=True)
                work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
                try:
                    deb = apt_download(pkg, version, work)
                    out = work / "tree"
                    out.mkdir()
                    _deb_extract(deb, out, ["./lib/modules/*/kernel/arch/x86/kvm/*"])
                    _publish(out, final)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            mods = sorted(p for p in final.rglob("kvm*.ko*") if p.is_file())
            if not mods:
                raise RuntimeError(f"{pkg} {version} has no arch/x86/kvm modules")
            found[label] = mods
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        unavailable(f"cannot obtain Debian kvm modules: {exc}")
    return found


def run_ops(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``kmodsim ops ARGS`` in a fresh interpreter (the real command object, real exit code)."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "kmodsim.ops", *args], capture_output=True, text=True,
                          cwd=cwd, env=env)


@pytest.fixture()
def ops():
    return run_ops
