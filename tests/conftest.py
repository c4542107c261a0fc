"""Shared fixtures: real modules built by kbuild, real Debian kernel packages.

Real inputs are required in CI (KMODSIM_REQUIRE_REAL=1): there a missing package or a failed
build fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

# The tests run the CLI as a child process: the one installed beside this interpreter (the venv's),
# whether or not the venv's bin directory is on PATH (`.venv/bin/python -m pytest` works as is).
_BIN = os.path.dirname(sys.executable)
if os.path.isfile(os.path.join(_BIN, "kmodsim")) and _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")
KBUILD_SRC = TESTS / "kbuild"


def need(what: str):
    """Skip — or fail, in CI — when a real input cannot be had."""
    if os.environ.get("KMODSIM_REQUIRE_REAL") == "1":
        pytest.fail(f"real input unavailable: {what}")
    pytest.skip(f"real input unavailable: {what}")


@pytest.fixture(scope="session")
def debian61():
    """Debian's 6.1 kernel (the image linux-image-amd64 depends on), unpacked, plus its headers."""
    from kmodsim.debian import DebianError, series_kernel

    try:
        k = series_kernel("6.1")
    except DebianError as exc:
        need(str(exc))
    if not k.kver.startswith("6.1."):
        need(f"linux-image-amd64 points at {k.kver}, not a 6.1 kernel")
    try:
        k.headers_dir = k.headers()
    except DebianError as exc:
        need(str(exc))
    return k


@pytest.fixture(scope="session")
def headers61(debian61) -> str:
    return debian61.headers_dir


def _fetched(package: str, fetch):
    """kver -> ``fetch(kver)``, each once a session; a package the archive does not give is
    :func:`need`'s failure (``package``: its name, with ``{}`` for the kver)."""
    from kmodsim.debian import DebianError

    made: dict = {}

    def get(kver: str):
        if kver not in made:
            try:
                made[kver] = fetch(kver)
            except DebianError as exc:
                need(f"{package.format(kver)} from Debian's archive: {exc}")
        return made[kver]

    return get


@pytest.fixture(scope="session")
def headers_of():
    """kver -> its headers directory: the installed one, else linux-headers-<kver> (and what it
    needs) unpacked from Debian's archive into the cache (``debian:linux-headers-<kver>``, as the
    CLI takes it)."""
    from kmodsim.debian import resolve_input

    return _fetched("linux-headers-{}", lambda kver: resolve_input(f"debian:linux-headers-{kver}"))


@pytest.fixture(scope="session")
def image_of():
    """kver -> Debian's image package of that ABI, unpacked (its root: boot/vmlinuz-<kver>, lib/modules)."""
    from kmodsim.debian import DebianKernel

    return _fetched("linux-image-{}", lambda kver: DebianKernel(f"linux-image-{kver}"))


@pytest.fixture(scope="session")
def debian612():
    """Debian's 6.12 kernel (bookworm's newest linux-image-6.12.*+deb12-amd64), unpacked."""
    if os.environ.get("KMODSIM_TEST_612") != "1":
        pytest.skip("6.12 tree checks run with KMODSIM_TEST_612=1")
    return series_with_headers("6.12")


def series_with_headers(series: str):
    """Debian's newest kernel of ``series`` (its image, unpacked) with ``headers_dir`` set; need()ed
    when the archive does not serve it."""
    from kmodsim.debian import DebianError, series_kernel

    try:
        k = series_kernel(series)
        k.headers_dir = k.headers()
    except DebianError as exc:
        need(str(exc))
    return k


@pytest.fixture(scope="session")
def debian510():
    """Debian bullseye's 5.10 kernel (what bullseye's linux-image-amd64 points at), through a
    private apt state for that release: modules whose CRCs are absolute ``__crc_`` symbols (<5.19)."""
    from kmodsim.debian import DebianError, DebianKernel, image_package

    try:
        k = DebianKernel(image_package("linux-image-amd64", None, "bullseye"), None, "bullseye")
        k.headers_dir = k.headers()
    except DebianError as exc:
        need(str(exc))
    if not k.kver.startswith("5.10."):
        need(f"bullseye's linux-image-amd64 points at {k.kver}, not a 5.10 kernel")
    return k


def kbuild_set(name: str, headers: str, **kw) -> Path:
    from kmodsim.kbuild import KbuildError, build

    if shutil.which("make") is None:
        need("make")
    try:
        return Path(build(str(KBUILD_SRC / name), headers, **kw))
    except KbuildError as exc:
        if os.environ.get("KMODSIM_REQUIRE_REAL") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def basic_build(headers61) -> Path:
    """tests/kbuild/basic built by Debian's kbuild against the 6.1 headers."""
    return kbuild_set("basic", headers61)


DEPMOD = shutil.which("depmod") or "/usr/sbin/depmod"


@pytest.fixture(scope="session")
def real_depmod() -> str:
    """kmod 30's depmod (Debian 12's), the oracle of kmodsim depmod."""
    try:
        out = subprocess.run([DEPMOD, "--version"], capture_output=True, text=True).stdout
    except OSError:
        need("kmod's depmod (apt-get install kmod)")
    if not out.startswith("kmod version 30"):
        need(f"kmod 30's depmod, found {out.splitlines()[:1]}")
    return DEPMOD


def kmod_source(suite: str) -> Path:
    """kmod's upstream tree from Debian ``suite``'s source package, fetched into the cache (its
    testsuite included); :func:`need` when it cannot be had."""
    from kmodsim.debian import DebianError, upstream_source

    try:
        top = Path(upstream_source("kmod", suite))
    except DebianError as exc:
        need(f"{suite}'s kmod source package: {exc}")
    if not (top / "testsuite" / "test-depmod.c").is_file():
        need(f"{top}: no testsuite/test-depmod.c")
    return top


@pytest.fixture(scope="session")
def kmod34_src() -> Path:
    """kmod's upstream tree from Debian 13's (trixie) source package (kmod 34.2), fetched into the cache."""
    return kmod_source("trixie")


@pytest.fixture(scope="session")
def depmod34(kmod34_src) -> str:
    """kmod 34's depmod (Debian 13's), built from trixie's source into the cache: the oracle of
    ``kmodsim depmod --kmod-version 34`` (kmodsim.kmod_build)."""
    from kmodsim.kmod_build import KmodBuildError, kmod_depmod

    try:
        path = kmod_depmod("trixie")
    except KmodBuildError as exc:
        need(f"kmod 34 built from trixie's source: {exc}")
    out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    assert out.startswith("kmod version 34.2\n"), out
    return path


@pytest.fixture(scope="session")
def playground34(kmod34_src, headers61) -> Path:
    """kmod 34's module-playground built by Debian's kbuild (kmod 34 ships no prebuilt modules)."""
    from kmodsim.kbuild import KbuildError, build

    if shutil.which("make") is None:
        need("make")
    try:
        return Path(build(str(kmod34_src / "testsuite" / "module-playground"), headers61))
    except KbuildError as exc:
        need(str(exc))


@pytest.fixture(scope="session")
def workspace(headers61, tmp_path_factory) -> Path:
    """The loader scenarios' modules (basic/, consumers/, loader/, patched/: tests/scenarios/workspace.py)
    built by Debian's kbuild against the 6.1 headers, as the kernel loaded them."""
    if shutil.which("make") is None:
        need("make")
    from kmodsim.kbuild import KbuildError

    sys.path.insert(0, str(TESTS / "scenarios"))
    import workspace as ws_mod

    try:
        return ws_mod.prepare(tmp_path_factory.mktemp("scenarios"), headers61)
    except KbuildError as exc:
        need(str(exc))


@pytest.fixture(scope="session")
def kernel61(headers61):
    """The 6.1 headers as a :class:`kmodsim.kernel.Kernel`."""
    from kmodsim.kernel import Kernel

    return Kernel.load(headers61)


def settle_timestamps() -> None:
    """Wait until files written so far are older than kmodsim's racy-timestamp cutoff
    (:func:`kmodsim.cache.racy_cutoff`), so that a cache filled from now on keeps them (a test of
    warm runs on a tree it has just written needs that; real trees are that old already)."""
    import time

    now = time.time()
    time.sleep(1.0 - now % 1.0 + 0.15)


def run_kmodsim(*args, check=None, timeout: float | None = 600, **kw) -> subprocess.CompletedProcess:
    """The installed CLI in a child process (so exit codes, stderr and tracebacks are real);
    ``timeout`` seconds at most (None: no limit, for a whole KVM series)."""
    p = subprocess.run(["kmodsim", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    return p


@pytest.fixture(scope="session")
def headers612(debian612) -> str:
    return debian612.headers_dir


def pytest_collection_modifyitems(config, items):
    """The fast tier (``pytest -m fast``): every test not marked ``slow`` — no QEMU boot, no whole
    Debian tree parsed again and again. It needs no network once the caches are warm (Debian
    packages unpacked, kbuild fixtures built): about 90 s on a 2-core machine, offline
    (``unshare -n``). CI runs every test."""
    for item in items:
        if item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.fast)
