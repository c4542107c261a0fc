"""The tree scan: depmod's discovery, worker processes, and a cache that can never give a wrong answer."""

from __future__ import annotations

import lzma
import os
import select
import shutil
import subprocess
import time

import pytest
import zstandard

from kmodsim.scan_cache import CACHE_MAGIC, ScanCache
from kmodsim.tree import find_modules, scan

from conftest import need, settle_timestamps

pytestmark = pytest.mark.kbuild


@pytest.fixture
def tree(basic_build, tmp_path):
    """A small lib/modules/<kver> tree with plain, xz and zstd modules, build/ and source/, and a
    gzip module (which Debian's depmod, kmod 30 -ZLIB, passes over: so does the scan)."""
    import gzip

    root = tmp_path / "rootfs"
    kdir = root / "lib" / "modules" / "6.1.0-test"
    (kdir / "kernel" / "a").mkdir(parents=True)
    (kdir / "extra").mkdir()
    (kdir / "build").mkdir()
    (kdir / "source").mkdir()
    a = (basic_build / "kms_a.ko").read_bytes()
    b = (basic_build / "kms_b.ko").read_bytes()
    c = (basic_build / "kms_c.ko").read_bytes()
    (kdir / "kernel" / "a" / "kms_a.ko.xz").write_bytes(lzma.compress(a, check=lzma.CHECK_CRC32))
    (kdir / "kernel" / "a" / "kms_b.ko.zst").write_bytes(zstandard.ZstdCompressor().compress(b))
    (kdir / "extra" / "kms_c.ko").write_bytes(c)
    (kdir / "extra" / "gz").mkdir()
    (kdir / "extra" / "gz" / "kms_gz.ko.gz").write_bytes(gzip.compress(c))
    (kdir / "extra" / "plain.ko").write_bytes(a)
    shutil.copy(basic_build / "kms_a.ko", kdir / "build" / "ignored.ko")
    shutil.copy(basic_build / "kms_a.ko", kdir / "source" / "ignored.ko")
    (kdir / "modules.order").write_text("kernel/a/kms_b.ko\nkernel/a/kms_a.ko\n")
    settle_timestamps()  # a file changed in the second its cache is filled is never trusted
    return root, kdir


def test_discovery_like_depmod(tree, tmp_path):
    """The files and the order of kmod's depmod (its modules.dep, on a copy of the tree): modules.order
    first (matched with the suffix replaced by .ko), then kmod's hash order; build/ and source/
    skipped; the .ko.gz left out (and listed)."""
    root, kdir = tree
    depmod = shutil.which("depmod") or "/usr/sbin/depmod"
    if not os.access(depmod, os.X_OK):
        need("kmod's depmod")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    subprocess.run([depmod, "-b", str(copy), kdir.name], check=True, capture_output=True)
    want = [ln.split(":")[0] for ln in (copy / "lib" / "modules" / kdir.name / "modules.dep").read_text().splitlines()]
    ignored: list[str] = []
    found = [os.path.relpath(p, kdir) for p in find_modules(str(kdir), ignored=ignored)]
    assert found == want and want[:2] == ["kernel/a/kms_b.ko.zst", "kernel/a/kms_a.ko.xz"]
    assert ignored == [str(kdir / "extra" / "gz" / "kms_gz.ko.gz")]
    res = scan([str(root)], use_cache=False)  # a root fs: lib/modules/<kver> is found
    assert [os.path.relpath(r[1], kdir) for r in res.records] == found
    assert [s[0] for s in res.summaries] == [r[1] for r in res.records]
    assert res.ignored == ignored and res.errors == []
    comps = {os.path.basename(m.path): m.compression for m in res.modules}
    assert comps == {"kms_b.ko.zst": "zstd", "kms_a.ko.xz": "xz", "kms_c.ko": "", "plain.ko": ""}
    # a .ko.gz named as a file is read (kmodsim decompresses gzip itself)
    (gz,) = scan(ignored, use_cache=False).modules
    assert gz.compression == "gzip" and gz.name == "kms_c"


def _snapshot(res):
    return [(m.path, m.name, m.exports, m.imports, m.modinfo, m.sections, m.versions) for m in res.modules]


def test_warm_equals_cold_and_parallel_equals_serial(tree, tmp_path):
    root, _ = tree
    cache = str(tmp_path / "cache")
    cold = scan([str(root)], cache_dir=cache, jobs=1)
    assert cold.parsed == 4 and cold.cached == 0
    warm = scan([str(root)], cache_dir=cache, jobs=2)
    assert warm.parsed == 0 and warm.cached == 4
    assert _snapshot(warm) == _snapshot(cold)
    assert _snapshot(scan([str(root)], use_cache=False, jobs=2)) == _snapshot(cold)
    leftovers = [f for f in os.listdir(os.path.join(cache)) if f.startswith(".tmp-")]
    assert leftovers == []


def test_changed_file_is_reread(tree, tmp_path, basic_build):
    root, kdir = tree
    cache = str(tmp_path / "cache")
    scan([str(root)], cache_dir=cache)
    target = kdir / "extra" / "plain.ko"
    st = os.stat(target)
    # another module moved over it, with the old mtime restored: the inode differs
    replacement = kdir / "extra" / "new.ko"
    shutil.copy(basic_build / "kms_b.ko", replacement)
    os.replace(replacement, target)  # new inode
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = scan([str(root)], cache_dir=cache)
    assert res.parsed == 1
    plain = next(m for m in res.modules if m.path == str(target))
    assert plain.name == "kms_b"


def test_in_place_rewrite_same_size_and_mtime(tree, tmp_path, basic_build):
    root, kdir = tree
    cache = str(tmp_path / "cache")
    scan([str(root)], cache_dir=cache)
    target = kdir / "extra" / "plain.ko"
    st = os.stat(target)
    data = bytearray(target.read_bytes())
    i = data.find(b"kms_a_counter")
    data[i:i + 13] = b"kms_a_countXX"
    time.sleep(0.01)
    with open(target, "r+b") as f:  # same inode, same size
        f.write(data)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored, ctime moves on
    res = scan([str(root)], cache_dir=cache)
    assert res.parsed == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "version", "record", "empty"])
def test_corrupt_cache_is_rebuilt(tree, tmp_path, damage):
    root, kdir = tree
    cache = str(tmp_path / "cache")
    good = _snapshot(scan([str(root)], cache_dir=cache))
    c = ScanCache(str(kdir), cache)
    blob = open(c.file, "rb").read()
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        b = bytearray(blob)
        b[len(b) - 50] ^= 0x55
        blob = bytes(b)
    elif damage == "garbage":
        blob = os.urandom(len(blob))
    elif damage == "version":
        blob = CACHE_MAGIC + (999).to_bytes(4, "little") + blob[len(CACHE_MAGIC) + 4:]
    elif damage == "record":  # one module's blob altered, checksum left as it was
        i = blob.find(b"kms_a_counter")
        blob = blob[:i] + b"kms_a_countXX" + blob[i + 13:]
    else:
        blob = b""
    open(c.file, "wb").write(blob)

    def damaged_records() -> int:
        c2 = ScanCache(str(kdir), cache)
        c2.load()
        return sum(c2.blob(p) is None for p in list(c2.entries))

    if damage in ("flip", "record"):
        # the index is intact: summaries come from it; the damaged record fails its checksum when
        # it is used, that module is read again and the cache repaired
        assert damaged_records() == 1, "the damage was not detected"
        res = scan([str(root)], cache_dir=cache)
        assert res.cached == 4
        assert _snapshot(res) == good
        assert damaged_records() == 0, "the cache was not repaired"
    else:
        res = scan([str(root)], cache_dir=cache)
        assert res.parsed == 4 and res.cached == 0
        assert _snapshot(res) == good
    assert scan([str(root)], cache_dir=cache).cached == 4  # and rewritten


def test_removed_module_leaves_cache(tree, tmp_path):
    root, kdir = tree
    cache = str(tmp_path / "cache")
    scan([str(root)], cache_dir=cache)
    os.unlink(kdir / "extra" / "plain.ko")
    res = scan([str(root)], cache_dir=cache)
    assert len(res.records) == 3
    c = ScanCache(str(kdir), cache)
    c.load()
    assert len(c.entries) == 3


def test_parallel_map_order_and_a_dead_child():
    """Results come back in item order whichever process took a chunk; a child that dies (here on
    its first item, with the chunk it took) only costs time: the parent does its chunks."""
    from kmodsim.parallel import parallel_map

    items = list(range(1000))
    assert parallel_map(lambda x: (x, x * x), items, jobs=2) == [(x, x * x) for x in items]
    parent = os.getpid()

    def dies_in_child(x):
        if os.getpid() != parent:
            os._exit(3)
        return -x

    assert parallel_map(dies_in_child, items, jobs=2) == [-x for x in items]


def test_parallel_map_results_of_a_child_and_of_a_child_that_died_midway():
    """A child's chunk results travel through its results file: a child that works to the end
    has its results used (items it did carry its pid); one that dies after writing some chunks
    has none used (the file is read only after a clean exit): the parent redoes them all."""
    from kmodsim.parallel import parallel_map

    items = list(range(2000))
    parent = os.getpid()
    r, w = os.pipe()
    waited = []

    def both(x):
        if os.getpid() != parent:
            os.write(w, b"x")  # the child has a chunk
        elif not waited:  # the parent's first item: until the child has taken one
            waited.append(select.select([r], [], [], 30)[0])
        return (x * 3, os.getpid())

    res = parallel_map(both, items, jobs=2)
    os.close(r)
    os.close(w)
    assert waited == [[r]]
    assert [v for v, _ in res] == [x * 3 for x in items]
    assert {p for _, p in res} - {parent}, "no result came from the child"
    done_in_child = []
    r, w = os.pipe()
    waited = []

    def dies_later(x):
        if os.getpid() != parent:
            done_in_child.append(x)  # the child's own copy of the list
            if len(done_in_child) > 40:  # after two chunks of 16 were written to its file
                os.write(w, b"x")
                os._exit(3)
        elif not waited:  # the parent's first item: until the child is about to die
            waited.append(select.select([r], [], [], 30)[0])
        return (x * 3, os.getpid())

    res = parallel_map(dies_later, items, jobs=2)
    os.close(r)
    os.close(w)
    assert waited == [[r]]
    assert res == [(x * 3, parent) for x in items]


def test_parallel_map_without_a_results_file(monkeypatch):
    """Where no anonymous file can be made (no memfd, no writable temporary directory), no child
    is forked: the parent maps every item, same results."""
    import tempfile

    from kmodsim.parallel import parallel_map

    def refuse(*_a, **_k):
        raise OSError(13, "Permission denied")

    monkeypatch.setattr(os, "memfd_create", refuse, raising=False)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)

    def no_fork():
        raise AssertionError("forked a child without a results file")

    monkeypatch.setattr(os, "fork", no_fork)
    items = list(range(500))
    assert parallel_map(lambda x: (x, os.getpid()), items, jobs=2) == [(x, os.getpid()) for x in items]


def test_parallel_map_meanwhile():
    """``meanwhile`` runs once, in the parent, while children take chunks (a child reports an item
    done after it began); the results are the serial map's; what it raises comes out once the map
    is done, with serial and forked maps alike."""
    import struct
    import time as _time

    from kmodsim.parallel import parallel_map

    items = list(range(2000))
    parent = os.getpid()
    r, w = os.pipe()
    calls = []

    def work(x):
        if os.getpid() != parent:  # a child: slow enough to be still at work when meanwhile begins
            _time.sleep(0.0005)
            if x % 50 == 0:
                os.write(w, struct.pack("d", _time.monotonic()))
        return x + 1

    def meanwhile():
        calls.append(os.getpid())
        began = _time.monotonic()
        deadline = began + 30
        while _time.monotonic() < deadline:  # until a child is seen working after this began
            ready = select.select([r], [], [], 0.05)[0]
            if ready and struct.unpack("d", os.read(r, 8))[0] > began:
                return
        raise AssertionError("no child worked while meanwhile ran")

    assert parallel_map(work, items, jobs=2, meanwhile=meanwhile) == [x + 1 for x in items]
    assert calls == [parent]
    os.close(r)
    os.close(w)

    def fails():
        raise ValueError("meanwhile failed")

    for jobs in (1, 2):
        with pytest.raises(ValueError, match="meanwhile failed"):
            parallel_map(lambda x: x, items, jobs=jobs, meanwhile=fails)
