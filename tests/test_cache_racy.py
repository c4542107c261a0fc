"""Racy timestamps: a module rewritten in place, same size, within the clock second in which a cache
was filled must not be served stale by any of kmodsim's caches (scan records, check findings, the
depmod result memo) — git's "racy git" problem, on a real file system with one-second timestamps
(ext4 made with 128-byte inodes, loop-mounted).

Each test reproduces the race for real: the tree is written, the cold run fills the cache and the
module is rewritten, all in one second — the test asserts the module's stat key did not change, so
the race is really there — then a warm run must see the new content. The expected values come from
the rewritten bytes themselves (and, for depmod, from kmod's own depmod on the same tree).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from kmodsim.scan_cache import stat_key
from kmodsim.tree import scan

from conftest import need, run_kmodsim

pytestmark = [pytest.mark.kbuild]

KVER = "6.1.0-racy"
OLD, NEW = b"kms_a_plain", b"kms_b_twice"  # same length: kms_a then exports a name kms_b exports too


@pytest.fixture
def ext4_128(tmp_path):
    """A loop-mounted ext4 with 128-byte inodes: timestamps in whole seconds."""
    if shutil.which("mkfs.ext4") is None or os.geteuid() != 0:
        need("mkfs.ext4 and root (to loop-mount an ext4 with 128-byte inodes)")
    img, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(img, "wb") as f:
        f.truncate(32 << 20)
    p = subprocess.run(["mkfs.ext4", "-q", "-F", "-I", "128", str(img)], capture_output=True, text=True)
    if p.returncode:
        need(f"mkfs.ext4 -I 128: {p.stderr.strip()}")
    p = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
    if p.returncode:
        need(f"loop mount of an ext4 image: {p.stderr.strip()}")
    try:
        probe = mnt / "probe"
        probe.write_bytes(b"x")
        assert os.stat(probe).st_ctime_ns % 1_000_000_000 == 0, "not a one-second-timestamp file system"
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _race(mnt, basic_build, cold, tries: int = 5):
    """Write the tree, run ``cold`` and rewrite kms_a.ko in place, all within one clock second;
    retried when a second boundary falls in between. Returns the tree's module directory."""
    for _ in range(tries):
        kdir = mnt / "lib" / "modules" / KVER
        shutil.rmtree(mnt / "lib", ignore_errors=True)
        (kdir / "kernel").mkdir(parents=True)
        time.sleep(1.0 - time.time() % 1.0 + 0.01)  # start at the top of a second
        for m in ("kms_a.ko", "kms_b.ko"):
            shutil.copyfile(basic_build / m, kdir / "kernel" / m)
        target = kdir / "kernel" / "kms_a.ko"
        before = stat_key(str(target))
        cold(mnt, kdir)
        data = target.read_bytes()
        assert data.count(OLD) >= 2
        with open(target, "r+b") as f:  # in place: same inode, same size
            f.write(data.replace(OLD, NEW))
        if stat_key(str(target)) == before:
            time.sleep(1.1)  # the warm run comes later, as it would in real life
            return kdir
    pytest.fail(f"could not fit the cold run and the rewrite into one second in {tries} tries")


def test_scan_cache_racy_rewrite(ext4_128, basic_build, tmp_path):
    cache = str(tmp_path / "cache")

    def cold(mnt, kdir):
        assert scan([str(kdir)], cache_dir=cache).parsed == 2

    kdir = _race(ext4_128, basic_build, cold)
    warm = scan([str(kdir)], cache_dir=cache)
    a = next(m for m in warm.modules if m.name == "kms_a")
    names = {e.name for e in a.exports}
    assert NEW.decode() in names and OLD.decode() not in names
    # now the entry is old enough to be trusted: the next run serves it from the cache
    again = scan([str(kdir)], cache_dir=cache)
    assert again.cached == 2 and again.parsed == 0


def test_check_findings_cache_racy_rewrite(ext4_128, basic_build, tmp_path):
    env = {**os.environ, "KMODSIM_CACHE": str(tmp_path / "cache")}

    def cold(mnt, kdir):
        run_kmodsim("check", kdir, env=env, check=0)

    kdir = _race(ext4_128, basic_build, cold)
    p = run_kmodsim("check", "--format", "json", kdir, env=env, check=1)
    assert f'"symbol": "{NEW.decode()}"' in p.stdout and '"duplicate-export"' in p.stdout


def test_depmod_memo_racy_rewrite(ext4_128, basic_build, tmp_path):
    if shutil.which("depmod") is None:
        need("kmod's depmod")
    env = {**os.environ, "KMODSIM_CACHE": str(tmp_path / "cache")}

    def cold(mnt, kdir):
        run_kmodsim("depmod", "-b", mnt, KVER, env=env, check=0)

    kdir = _race(ext4_128, basic_build, cold)
    run_kmodsim("depmod", "-b", ext4_128, KVER, env=env, check=0)
    ours = {f: (kdir / f).read_bytes() for f in ("modules.dep", "modules.symbols")}
    assert b"symbol:" + NEW + b" kms_a" in ours["modules.symbols"] or \
        b"symbol:" + NEW + b" kms_b" in ours["modules.symbols"]
    assert b"symbol:" + OLD not in ours["modules.symbols"]
    subprocess.run(["depmod", "-b", str(ext4_128), KVER], check=True)  # kmod's own, same tree
    assert ours == {f: (kdir / f).read_bytes() for f in ours}
