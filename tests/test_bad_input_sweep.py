"""The bad-input sweep: every command that reads modules — inspect, scan, check, depmod, load —
fed truncations of real modules (a sampled set of cut points), 200 bit flips, random bytes,
decompression bombs in the three formats, a FIFO and a symlink loop, each run in a child process
under a 1 GiB address-space limit (``ulimit -v 1048576``, as CI systems and containers set) and a
5 s limit. Each run exits 0 or 2 (``check`` also 1: findings), prints no traceback, and gives at
most one stderr line per file, naming it; a file the command cannot use gives exactly one.

Seeds are real: Debian 6.1's signed ``usbserial.ko`` (from the kernel package) and kbuild's
``kms_b.ko`` (built against Debian's headers). Only the bombs and the random bytes are synthetic.
The bombs are built in well under a second, by repeating independent pieces (gzip after a full
flush, xz blocks), so the sweep itself stays fast.
"""

from __future__ import annotations

import lzma
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.kbuild

AS_LIMIT = 1 << 30  # ulimit -v 1048576
TIME_LIMIT = 5.0
BOMB_SIZE = 1100 << 20  # each bomb expands to 1.1 GiB: past the address-space limit itself
SEED = 20261204  # the sweep is reproducible: same files, same runs


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


class Run:
    def __init__(self, args, returncode: int, stdout: str, stderr: str, seconds: float, rss_kib: int) -> None:
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr
        self.seconds, self.rss_kib = seconds, rss_kib


# The command runs as the grandchild of a small launcher that reports the command's own wait4 status
# and peak RSS. Measured from this process instead, the peak would include the pytest process's own:
# on exec the kernel carries the old address space's RSS high-water mark into the new program's
# maxrss (exec_mmap -> setmax_mm_hiwater_rss), and a fork starts with the parent's resident pages.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), b"%d %d" % (status, usage.ru_maxrss))
"""


def run_limited(*args, cwd=None) -> Run:
    """``kmodsim ARGS`` under RLIMIT_AS = 1 GiB and a 5 s limit (its whole process group is killed
    past it, and the test fails: a hang); with its wall time and its own peak RSS (wait4, taken by
    a launcher whose own footprint is a bare interpreter's)."""
    argv = ["kmodsim", *map(str, args)]
    report_r, report_w = os.pipe()
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _LAUNCHER, str(report_w), *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd,
                                pass_fds=(report_w,), preexec_fn=_limits, start_new_session=True)
    finally:
        os.close(report_w)
    hung = []

    def kill() -> None:
        hung.append(True)
        os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(TIME_LIMIT, kill)
    timer.start()
    outs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: outs.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for t in readers:
        t.start()
    with os.fdopen(report_r, "rb") as report:
        reported = report.read()
    proc.wait()
    seconds = time.monotonic() - t0
    timer.cancel()
    for t in readers:
        t.join()
    if hung:
        pytest.fail(f"hang: {' '.join(argv)} still running after {TIME_LIMIT} s")
    assert proc.returncode == 0 and reported, (argv, proc.returncode, outs["err"][-2000:])
    status, rss_kib = map(int, reported.split())
    return Run(argv, os.waitstatus_to_exitcode(status), outs["out"].decode("utf-8", "replace"),
               outs["err"].decode("utf-8", "replace"), seconds, rss_kib)


def assert_bad_input_contract(r: Run, files: list[str], must_fail: list[str] = (), codes=(0, 2),
                              name_of=None) -> Counter:
    """No traceback; an allowed exit status; every stderr line names exactly one of ``files``
    (``name_of`` extracts the name from a line), at most once each, with a problem the reader
    itself diagnosed; every file of ``must_fail`` named; exit 2 exactly when a file was named.
    Returns the count of lines per file."""
    assert "Traceback" not in r.stderr, (r.args, r.stderr[-3000:])
    # the readers' catch-all for an exception other than their own error: a reader bug
    assert "unreadable module (" not in r.stderr, (r.args, r.stderr[-3000:])
    assert r.returncode in codes, (r.args, r.returncode, r.stderr[-3000:])
    named: Counter = Counter()
    known = set(files)
    for line in r.stderr.splitlines():
        f = name_of(line) if name_of else _named(line, known)
        assert f in known, (r.args, line)
        named[f] += 1
    assert all(n == 1 for n in named.values()), (r.args, r.stderr)
    assert set(must_fail) <= set(named), (r.args, set(must_fail) - set(named), r.stderr)
    assert (r.returncode == 2) == bool(named), (r.args, r.returncode, r.stderr)
    return named


def _named(line: str, known: set[str]) -> str | None:
    m = re.match(r"kmodsim: (\S+): ", line)  # the sweep's file names hold no spaces
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------
# The inputs
# ---------------------------------------------------------------------------------------------

def gzip_bomb(size: int) -> bytes:
    """A valid gzip file of ``size`` zero bytes: deflate output after a full flush does not depend
    on what came before, so one compressed MiB is repeated."""
    chunk = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert piece.endswith(b"\0\0\xff\xff") and again == piece[-len(again):]
    n = size >> 20
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(chunk, crc)
    body = piece + again * (n - 1) + c.flush()
    return b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + body + crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        out.append((v & 0x7F) | (0x80 if v > 0x7F else 0))
        v >>= 7
        if not out[-1] & 0x80:
            return bytes(out)


def xz_bomb(size: int) -> bytes:
    """A valid xz file of ``size`` zero bytes: one block of 44 MiB of zeros, repeated, and an index
    listing every copy (xz file format 1.0.4: blocks are independent)."""
    block_size = 44 << 20
    assert size % block_size == 0
    one = lzma.compress(bytes(block_size), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=0)
    header, footer = one[:12], one[-12:]
    index_size = (int.from_bytes(footer[4:8], "little") + 1) * 4
    block = one[12:len(one) - 12 - index_size]
    index = one[len(one) - 12 - index_size:len(one) - 12]
    assert index[:2] == b"\0\x01"
    pos, unpadded = 2, 0
    for shift in range(0, 63, 7):  # the record's Unpadded Size
        unpadded |= (index[pos] & 0x7F) << shift
        pos += 1
        if not index[pos - 1] & 0x80:
            break
    n = size // block_size
    records = b"\0" + _varint(n) + (_varint(unpadded) + _varint(block_size)) * n
    records += bytes(-len(records) % 4)
    new_index = records + zlib.crc32(records).to_bytes(4, "little")
    flags = footer[8:10]
    back = (len(new_index) // 4 - 1).to_bytes(4, "little")
    new_footer = zlib.crc32(back + flags).to_bytes(4, "little") + back + flags + b"YZ"
    return header + block * n + new_index + new_footer


def zstd_bomb(size: int) -> bytes:
    import zstandard

    c = zstandard.ZstdCompressor(level=3).compressobj()
    chunk = bytes(1 << 20)
    return b"".join(c.compress(chunk) for _ in range(size >> 20)) + c.flush()


def bit_flips(data: bytes, count: int, rng: random.Random) -> list[bytes]:
    """``count`` copies of ``data`` with one bit flipped each: a quarter anywhere, the rest in the
    ELF header, the section header table and the file's last 32 KiB (symbols, strings, section
    names, the signature), where a flip changes what a reader sees."""
    shoff = int.from_bytes(data[0x28:0x30], "little")
    shnum = int.from_bytes(data[0x3C:0x3E], "little")
    regions = [(0, 64), (shoff, shoff + 64 * shnum), (max(0, len(data) - (32 << 10)), len(data))]
    out = []
    for i in range(count):
        if i % 4 == 0:
            pos = rng.randrange(len(data))
        else:
            lo, hi = regions[i % 3]
            pos = rng.randrange(lo, min(hi, len(data)))
        b = bytearray(data)
        b[pos] ^= 1 << rng.randrange(8)
        out.append(bytes(b))
    return out


def truncation_points(size: int, count: int, rng: random.Random) -> list[int]:
    """Every interesting cut (0, 1, inside the ELF header, one byte short) and a sample of the rest."""
    fixed = {0, 1, 4, 16, 52, 63, 64, size - 1, size // 2}
    return sorted(fixed | set(rng.sample(range(65, size - 1), count - len(fixed))))


@pytest.fixture(scope="module")
def seeds(basic_build, debian61) -> dict[str, bytes]:
    usb = Path(debian61.modules_dir) / "kernel" / "drivers" / "usb" / "serial" / "usbserial.ko"
    data = usb.read_bytes()
    assert data.endswith(b"~Module signature appended~\n")  # Debian's modules are signed
    return {"usbserial": data, "kms_b": (basic_build / "kms_b.ko").read_bytes()}


@pytest.fixture(scope="module")
def inputs(seeds, tmp_path_factory) -> dict[str, list[str]]:
    """The sweep's files, by kind: names end in a module suffix, hold no spaces, and give distinct
    module names (depmod keeps one file per name)."""
    import zstandard

    rng = random.Random(SEED)
    d = tmp_path_factory.mktemp("sweep")
    kinds: dict[str, list[str]] = {}

    def put(kind: str, name: str, data: bytes) -> None:
        p = d / name
        p.write_bytes(data)
        kinds.setdefault(kind, []).append(str(p))

    usb = seeds["usbserial"]
    elf_end = int.from_bytes(usb[0x28:0x30], "little") + 64 * int.from_bytes(usb[0x3C:0x3E], "little")
    assert elf_end < len(usb)  # the section headers end the ELF file; the signature follows
    for cut in truncation_points(len(usb), 40, rng) + [elf_end - 1, elf_end, elf_end + 1]:
        # cut inside the signature: an unsigned module with trailing bytes, which readers may accept
        put("truncated" if cut < elf_end else "cut-signature", f"usbserial-cut{cut}.ko", usb[:cut])
    compressed = {"xz": lzma.compress(usb, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
                  "zst": zstandard.ZstdCompressor().compress(usb), "gz": zlib.compress(usb, 6, 31)}
    for ext, blob in compressed.items():
        put("valid", f"usbserial-whole-{ext}.ko.{ext}", blob)
        for cut in truncation_points(len(blob), 12, rng):
            put("truncated", f"usbserial-{ext}-cut{cut}.ko.{ext}", blob[:cut])
    for seed_name in ("usbserial", "kms_b"):
        for i, data in enumerate(bit_flips(seeds[seed_name], 100, rng)):
            put("flipped", f"{seed_name}-flip{i:03d}.ko", data)
    put("random", "random.ko", rng.randbytes(70000))
    put("random", "random-elf.ko", b"\x7fELF\x02\x01\x01" + rng.randbytes(4096))
    put("random", "random-xz.ko.xz", b"\xfd7zXZ\0" + rng.randbytes(4096))
    put("random", "random-zst.ko.zst", b"\x28\xb5\x2f\xfd" + rng.randbytes(4096))
    put("random", "random-gz.ko.gz", b"\x1f\x8b\x08\0" + rng.randbytes(4096))
    put("bomb", "bomb-xz.ko.xz", xz_bomb(BOMB_SIZE))
    put("bomb", "bomb-gz.ko.gz", gzip_bomb(BOMB_SIZE))
    put("bomb", "bomb-zst.ko.zst", zstd_bomb(BOMB_SIZE))
    # an xz bomb without its index: refused by the limit while decompressing, not from the index
    put("bomb", "bomb-xz-noindex.ko.xz", (d / "bomb-xz.ko.xz").read_bytes()[:-(16 << 10)])
    kinds["special"] = [str(_place("fifo.ko", d)), str(_place("loop.ko", d))]
    return kinds


def _place(f: str, dest: Path) -> Path:
    """``f`` in directory ``dest``: a hard link, or made anew for the special files — a FIFO, and a
    symlink loop (loop.ko -> loop-back -> loop.ko; only loop.ko has a module's name)."""
    name = os.path.basename(f)
    p = dest / name
    if name == "fifo.ko":
        os.mkfifo(p)
    elif name == "loop.ko":
        os.symlink(dest / "loop-back", p)
        os.symlink(p, dest / "loop-back")
    else:
        os.link(f, p)
    return p


def test_bombs_are_what_they_claim(inputs, tmp_path):
    """The bomb constructions give valid files, by the formats' own tools: smaller instances are
    tested whole (``-t``: every check verified) and their output counted; the sweep's bombs are
    small and declare 1.1 GiB (xz's index, gzip's trailer)."""
    small = 44 << 20
    for ext, make, tool in (("xz", xz_bomb, "xz"), ("gz", gzip_bomb, "gzip"), ("zst", zstd_bomb, "zstd")):
        p = tmp_path / f"small.{ext}"
        p.write_bytes(make(small))
        subprocess.run([tool, "-tq", p], check=True)
        out = subprocess.run(f"{tool} -qdc {p} | wc -c", shell=True, capture_output=True, text=True, check=True)
        assert int(out.stdout) == small, ext
    by_ext = {p.rsplit(".", 1)[1]: p for p in inputs["bomb"] if "noindex" not in p}
    assert all(os.path.getsize(p) < 3 << 20 for p in by_ext.values())
    xz = subprocess.run(["xz", "-l", "--robot", by_ext["xz"]], capture_output=True, text=True, check=True)
    assert int(next(ln for ln in xz.stdout.splitlines() if ln.startswith("totals")).split()[4]) == BOMB_SIZE
    gz = subprocess.run(["gzip", "-l", by_ext["gz"]], capture_output=True, text=True, check=True)
    assert int(gz.stdout.splitlines()[1].split()[1]) == BOMB_SIZE


def _batches(files: list[str], n: int) -> list[list[str]]:
    return [files[i:i + n] for i in range(0, len(files), n)]


def _sweep_files(inputs) -> list[str]:
    return [f for kind in ("truncated", "cut-signature", "flipped", "random", "bomb", "special")
            for f in inputs[kind]]


def _must_fail(inputs) -> set[str]:
    """Files no command can use: every truncation of the ELF file or of a compressed stream, random
    bytes, bombs, the FIFO and the loop."""
    return {f for kind in ("truncated", "random", "bomb", "special") for f in inputs[kind]}


def test_valid_compressed_modules_under_ulimit(inputs, seeds):
    """A valid .ko.xz, .ko.zst and .ko.gz are read under the 1 GiB address-space limit, and read as
    the plain module is."""
    for path in inputs["valid"]:
        r = run_limited("inspect", "--json", path)
        assert r.returncode == 0 and not r.stderr, (path, r.stderr)
        assert '"name": "usbserial"' in r.stdout and '"id_type": "PKCS#7"' in r.stdout


def test_bombs_refused_fast_and_small(inputs):
    """Each bomb: one line naming it, exit 2, within a second, RSS near the default limit (128 MiB)."""
    for path in inputs["bomb"]:
        fmt = {"xz": "xz", "gz": "gzip", "zst": "zstd"}[path.rsplit(".", 1)[1]]
        r = run_limited("inspect", path)
        assert r.returncode == 2, (path, r.stderr)
        assert r.stderr == f"kmodsim: {path}: {fmt} data expands past the 134217728-byte limit\n"
        assert r.seconds < 2.0, (path, r.seconds)  # 0.1-0.9 s measured; 2 s leaves room for a loaded CI
        # the resident set stays near the limit (128 MiB, plus the interpreter), never twice it
        assert r.rss_kib < (128 + 96) * 1024, (path, r.rss_kib)
    # a limit of the user's choice holds the same way (the old reader, asking for the whole limit
    # at once and joining its output, died of MemoryError under the 1 GiB address-space limit)
    for path in inputs["bomb"]:
        if path.endswith((".gz", ".zst")):
            r = run_limited("inspect", "--max-decompressed", "512M", path)
            assert r.returncode == 2 and r.stderr.endswith(" data expands past the 536870912-byte limit\n"), r.stderr
            assert r.rss_kib < (512 + 96) * 1024, (path, r.rss_kib)


@pytest.mark.parametrize("command", ["inspect", "scan", "check"])
def test_sweep_module_readers(command, inputs, tmp_path):
    files = _sweep_files(inputs)
    must = _must_fail(inputs)
    seen: Counter = Counter()
    for i, batch in enumerate(_batches(files, 20)):
        if command == "scan":  # a tree: the batch's files in one directory (.ko.gz, which a tree
            # leaves out as Debian's depmod does, named as files beside it)
            tree = tmp_path / f"tree{i}"
            tree.mkdir()
            gz = [f for f in batch if f.endswith(".ko.gz")]
            names = {str(_place(f, tree)): f for f in batch if f not in gz} | {f: f for f in gz}
            r = run_limited("scan", "--no-cache", "-j", "1", tree, *gz)
            got = assert_bad_input_contract(r, list(names), [k for k, v in names.items() if v in must])
            seen.update(names[k] for k in got)
        else:
            extra = ("--no-cache", "-j", "1") if command == "check" else ()
            r = run_limited(command, *extra, *batch)
            codes = (0, 1, 2) if command == "check" else (0, 2)
            got = assert_bad_input_contract(r, batch, [f for f in batch if f in must], codes)
            seen.update(got)
    assert set(seen) >= must
    # a flip that leaves a module readable is fine (33 of the 200 are refused): the flips do
    # reach the readers' error paths
    assert sum(1 for f in inputs["flipped"] if f in seen) >= 20


def test_sweep_depmod(inputs, tmp_path):
    """kmodsim depmod over trees holding the sweep's files: the files are still listed in
    modules.dep (as depmod lists a module it cannot read), each unreadable one named on one line,
    exit 2 (0 when all were readable)."""
    kver = "6.1.0-sweep"
    must = _must_fail(inputs)
    seen: Counter = Counter()
    files = [f for f in _sweep_files(inputs) if not f.endswith(".ko.gz")]  # kmod 30 in Debian: -ZLIB
    for i, batch in enumerate(_batches(files, 25)):
        base = tmp_path / f"b{i}"
        kdir = base / "lib" / "modules" / kver / "kernel"
        kdir.mkdir(parents=True)
        names = {str(_place(f, kdir)): f for f in batch}
        for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):  # else depmod warns that they are missing
            (kdir.parent / name).write_text("")
        r = run_limited("depmod", "-b", base, "--no-cache", "-j", "1", kver)
        got = assert_bad_input_contract(r, list(names), [k for k, v in names.items() if v in must])
        seen.update(names[k] for k in got)
        dep = (base / "lib" / "modules" / kver / "modules.dep").read_text()
        listed = {ln.split(":")[0] for ln in dep.splitlines()}
        for k, v in names.items():
            if v not in inputs["special"]:
                assert f"kernel/{os.path.basename(k)}" in listed, k
    assert set(seen) >= {f for f in must if not f.endswith(".ko.gz")}
    # the .ko.gz files (bomb included) through depmod's MODULES arguments, which take any name
    gz = [f for f in _sweep_files(inputs) if f.endswith(".ko.gz")]
    base = tmp_path / "gz"
    (base / "lib" / "modules" / kver).mkdir(parents=True)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        (base / "lib" / "modules" / kver / name).write_text("")
    r = run_limited("depmod", "-b", base, "--no-cache", "-j", "1", "-n", kver, *gz)
    assert_bad_input_contract(r, gz, [f for f in gz if f in must])


def test_sweep_load(inputs, headers61, tmp_path):
    """kmodsim load: a script insmod-ing the sweep's files, one after the other. Resolving stops at
    the first file that is not a module (one line naming the script line and the file, exit 2);
    the sweep goes on from the next line, so every file is tried."""
    files = _sweep_files(inputs)
    must = _must_fail(inputs)
    seen = set()
    rest = list(files)
    runs = 0
    while rest:
        script = tmp_path / f"s{runs}.txt"
        script.write_text("".join(f"insmod {f}\n" for f in rest))
        r = run_limited("load", "--kernel", headers61, "--script", script)
        runs += 1
        if r.returncode == 0:
            assert not r.stderr, r.stderr
            assert not set(rest) & must, set(rest) & must
            break
        m = re.fullmatch(re.escape(f"kmodsim: {script}:") + r"(\d+): (\S+): .+\n", r.stderr)
        assert r.returncode == 2 and m and "Traceback" not in r.stderr, (r.returncode, r.stderr[-3000:])
        line = int(m.group(1))
        assert m.group(2) == rest[line - 1]
        seen.add(rest[line - 1])
        rest = rest[line:]
    assert seen >= must
