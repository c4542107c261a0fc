"""The directory the scenario scripts run in: the kbuild fixture sets and byte-patched copies.

    basic/      tests/kbuild/basic built against the headers (kms_a, kms_b, kms_c)
    consumers/  tests/kbuild/consumers built against an edited copy of basic's Module.symvers
                (as tests/test_check.py builds it: kmc_gpl, kmc_ns, kmc_crc, kmc_undef, kmc_dup)
    loader/     tests/kbuild/loader (kml_params, kml_prop, kml_user, kml_gpluser)
    patched/    copies of built modules with a few bytes changed (never the cached builds):
                kms_c_vermagic.ko  vermagic flags differ ("mod_unlozd")      -> ENOEXEC
                kms_c_release.ko   vermagic release differs (ignored: modversions) -> loads
                kms_c_novermagic.ko no vermagic= key                         -> forced load, taint F
                kms_c_layout.ko    module_layout CRC differs in __versions   -> ENOEXEC
                kms_b_crc.ko       kms_a_plain's CRC differs in __versions  -> EINVAL
                kmc_dup_vmlinux.ko kmc_dup's export renamed to a vmlinux export -> "(owned by kernel)"

Usage: ``python tests/scenarios/workspace.py DEST [--headers DIR] [--record VMLINUZ]``, then from DEST:
``kmodsim verify --kernel DIR --modules basic --script .../tests/scenarios/NAME.script --compare``.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KBUILD_SRC = HERE.parent / "kbuild"


def edited_symvers(basic: Path, dest: Path) -> Path:
    """kms_a's Module.symvers as the consumers are built against it (tests/test_check.py and the
    loader scenarios): kms_a_gpl shown as a plain export, kms_a_ns without its namespace,
    kms_a_plain with another CRC. The consumers' binaries then really disagree with kms_a.ko."""
    out = []
    for line in (basic / "Module.symvers").read_text().splitlines():
        crc, sym, mod, typ, ns = line.split("\t")
        if sym == "kms_a_gpl":
            typ = "EXPORT_SYMBOL"
        elif sym == "kms_a_ns":
            ns = ""
        elif sym == "kms_a_plain":
            crc = f"0x{int(crc, 16) ^ 0x5A5A5A5A:08x}"
        out.append("\t".join((crc, sym, mod, typ, ns)))
    dest.write_text("\n".join(out) + "\n")
    return dest


def build_sets(headers: str, scratch: Path) -> dict[str, Path]:
    from kmodsim.kbuild import build

    basic = Path(build(str(KBUILD_SRC / "basic"), headers))
    edited = edited_symvers(basic, scratch / "Module.symvers")
    consumers = Path(build(str(KBUILD_SRC / "consumers"), headers, make_args=("KBUILD_MODPOST_WARN=1",),
                           extra_symbols=(str(edited),)))
    loader = Path(build(str(KBUILD_SRC / "loader"), headers, extra_symbols=(str(basic / "Module.symvers"),)))
    return {"basic": basic, "consumers": consumers, "loader": loader}


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and data.count(old) >= 1, (old, new)
    return data.replace(old, new, 1)


def patch_version_crc(data: bytes, symbol: str, xor: int = 0x5A5A5A5A) -> bytes:
    """Change the CRC the module expects for ``symbol`` (its ``__versions`` record)."""
    from kmodsim.elf import ElfFile

    elf = ElfFile(data)
    sec = elf.section("__versions")
    assert sec is not None, "no __versions"
    out = bytearray(data)
    for off in range(sec.offset, sec.offset + sec.size, 64):
        name = bytes(out[off + 8:off + 64]).split(b"\0", 1)[0].decode()
        if name == symbol:
            (crc,) = struct.unpack_from("<Q", out, off)
            struct.pack_into("<Q", out, off, crc ^ xor)
            return bytes(out)
    raise AssertionError(f"{symbol} not in __versions")


def vmlinux_name_like(headers: str, length: int) -> str:
    """A plain vmlinux export whose name has ``length`` characters (first in sort order)."""
    names = []
    for line in open(os.path.join(headers, "Module.symvers")):
        f = line.rstrip("\n").split("\t")
        if len(f) >= 4 and f[2] == "vmlinux" and f[3] == "EXPORT_SYMBOL" and len(f[1]) == length:
            names.append(f[1])
    return sorted(names)[0]


def prepare(dest: Path, headers: str) -> Path:
    """Lay out ``dest`` (created if needed; symlinks to the cached builds, patched copies)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / ".scratch").mkdir(exist_ok=True)
    sets = build_sets(headers, dest / ".scratch")
    for name, path in sets.items():
        link = dest / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(path)
    p = dest / "patched"
    p.mkdir(exist_ok=True)
    kms_c = (sets["basic"] / "kms_c.ko").read_bytes()
    kms_b = (sets["basic"] / "kms_b.ko").read_bytes()
    kmc_dup = (sets["consumers"] / "kmc_dup.ko").read_bytes()
    (p / "kms_c_vermagic.ko").write_bytes(_replace_once(kms_c, b" mod_unload ", b" mod_unlozd "))
    release = kms_c.split(b"vermagic=", 1)[1].split(b" ", 1)[0]
    other = release.replace(b"-", b"+", 1) if b"-" in release else release[:-1] + b"~"
    (p / "kms_c_release.ko").write_bytes(_replace_once(kms_c, b"vermagic=" + release, b"vermagic=" + other))
    (p / "kms_c_novermagic.ko").write_bytes(_replace_once(kms_c, b"vermagic=", b"vermagix="))
    (p / "kms_c_layout.ko").write_bytes(patch_version_crc(kms_c, "module_layout"))
    (p / "kms_b_crc.ko").write_bytes(patch_version_crc(kms_b, "kms_a_plain"))
    vm = vmlinux_name_like(headers, len("kms_a_counter")).encode()
    (p / "kmc_dup_vmlinux.ko").write_bytes(kmc_dup.replace(b"kms_a_counter", vm))
    return dest


SCENARIOS = sorted(HERE.glob("*.script"))
RECORDED = HERE / "recorded"


def steps_of(script: Path, ws: Path):
    """The resolved steps of a scenario, paths relative to the workspace ``ws``."""
    from kmodsim.loader.run import modprobe_tree
    from kmodsim.loader.script import read_script, resolve

    steps = read_script(str(script))
    resolve(steps, str(script), modprobe_tree(str(ws / "basic")), base=str(ws))
    return steps


def packed_steps(script: Path, ws: Path):
    """The scenario's steps and the copies of its modules the guest loads (debug info stripped), made
    once in ``ws/packed/<scenario>/``: the model reads the same copies (as ``kmodsim verify`` does)."""
    from kmodsim.oracle.run import pack_modules

    steps = steps_of(script, ws)
    return steps, pack_modules(steps, str(ws / "packed" / script.stem))


def model_doc(script: Path, ws: Path, kernel) -> dict:
    from kmodsim.loader.run import replay
    from kmodsim.oracle.run import on_packed

    steps, packed = packed_steps(script, ws)
    return replay(kernel, on_packed(steps, packed))


def kernel_run(script: Path, ws: Path, kernel, vmlinuz: str, timeout: float = 120.0) -> dict:
    """The scenario on the real kernel under QEMU, as ``kmodsim verify --json`` reports it."""
    from kmodsim.commands.verify import kernel_doc
    from kmodsim.loader.profiles import profile_for
    from kmodsim.oracle import run_on_kernel

    steps, packed = packed_steps(script, ws)
    raw = run_on_kernel(steps, vmlinuz, timeout=timeout, packed=packed)
    return kernel_doc(kernel, profile_for(kernel.release), steps, raw)


def record(ws: Path, headers: str, vmlinuz: str, jobs: int = 2) -> Path:
    """Run every scenario on the real kernel and keep its answers in recorded/<release>/, for the
    fast model tests (the slow test re-derives them from the kernel every time)."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from kmodsim.kernel import Kernel

    kernel = Kernel.load(headers)
    out = RECORDED / kernel.release
    out.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as ex:
        docs = list(ex.map(lambda s: kernel_run(s, ws, kernel, vmlinuz), SCENARIOS))
    for script, doc in zip(SCENARIOS, docs, strict=True):
        doc.pop("boot_seconds", None)
        doc["notes"] = [n for n in doc["notes"] if not n.startswith("booted in")]
        (out / f"{script.stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    return out


def default_headers() -> str:
    from kmodsim.debian import DebianKernel, image_package

    k = DebianKernel(image_package("linux-image-amd64"))
    return k.headers()


def default_vmlinuz() -> str:
    from kmodsim.debian import DebianKernel, image_package

    return DebianKernel(image_package("linux-image-amd64")).vmlinuz


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest")
    ap.add_argument("--headers", default=None)
    ap.add_argument("--record", metavar="VMLINUZ", help="also record the real kernel's answers")
    a = ap.parse_args()
    headers = a.headers or default_headers()
    print(prepare(Path(a.dest), headers))
    if a.record:
        print(record(Path(a.dest), headers, a.record))
    sys.exit(0)
