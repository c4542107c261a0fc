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
              the branches of check_version()/check_modstruct_version() (kernel/module/version.c) and
              check_module_license_and_versions() (kernel/module/main.c), one module each:
                kms_c_nolayout.ko   no module_layout record in __versions    -> ENOEXEC, "no symbol version"
                kms_b_noversion.ko  no record for kms_a_plain, kms_a_counter -> EINVAL, "no symbol version"
                {kms_a,kms_b,kms_c}_noversions.ko  no __versions section     -> forced load (taint F)
                kms_c_noversions_release.ko  ... and another release in vermagic -> ENOEXEC (same_magic)
                kms_c_versions_noalloc.ko  __versions without SHF_ALLOC (find_sec ignores it) -> forced
                kms_b_versions_short.ko  sh_size 8 bytes short: the last record (module_layout) is
                                    not one                                  -> ENOEXEC
                kms_b_versions_long.ko  40 bytes past the last record (ignored)  -> loads
                kms_b_crc_high.ko   kms_a_plain's CRC with bit 32 set (an unsigned long compare) -> EINVAL
                kms_b_dupver_bad_first.ko / _good_first.ko  two kms_a_plain records, the wrong one
                                    first / last (the first decides)         -> EINVAL / loads
                kms_a_nocrcs.ko     __kcrctab renamed: plain exports without CRCs -> forced load

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


def _shdr(data: bytes, name: str):
    """(offset of the section header, section) of the first section called ``name`` (ELF64 LSB)."""
    from kmodsim.elf import ElfFile

    elf = ElfFile(data)
    sec = elf.section(name)
    assert sec is not None and elf.is64 and elf.little, name
    return elf.shoff + sec.index * 64, sec


def rename_section(data: bytes, old: str, new: str) -> bytes:
    """Rename a section in .shstrtab (same length; every name ending in ``old`` is renamed)."""
    from kmodsim.elf import ElfFile

    assert len(old) == len(new)
    elf = ElfFile(data)
    strtab = elf.section(".shstrtab")
    body = data[strtab.offset:strtab.offset + strtab.size]
    assert (old + "\0").encode() in body, old
    body = body.replace((old + "\0").encode(), (new + "\0").encode())
    return data[:strtab.offset] + body + data[strtab.offset + strtab.size:]


def section_flags_cleared(data: bytes, name: str, flags: int) -> bytes:
    off, sec = _shdr(data, name)
    out = bytearray(data)
    struct.pack_into("<Q", out, off + 8, sec.flags & ~flags)  # Elf64_Shdr.sh_flags
    return bytes(out)


def versions_records(data: bytes) -> list[bytes]:
    """The 64-byte ``__versions`` records of a module, in file order."""
    _, sec = _shdr(data, "__versions")
    body = data[sec.offset:sec.offset + sec.size]
    return [body[i:i + 64] for i in range(0, len(body), 64)]


def with_versions(data: bytes, body: bytes) -> bytes:
    """The module with ``body`` as its ``__versions`` contents: appended to the file (8-aligned) and the
    section header pointed at it, so the section may grow, shrink or take any size."""
    off, _ = _shdr(data, "__versions")
    pad = -len(data) % 8
    out = bytearray(data + b"\0" * pad + body)
    struct.pack_into("<QQ", out, off + 24, len(data) + pad, len(body))  # sh_offset, sh_size
    return bytes(out)


def record_renamed(rec: bytes, new: str) -> bytes:
    return rec[:8] + new.encode().ljust(56, b"\0")


def record_name(rec: bytes) -> str:
    return rec[8:].split(b"\0", 1)[0].decode()


def patch_version_name(data: bytes, symbol: str, new: str) -> bytes:
    """Rename the ``__versions`` record of ``symbol`` (same length): the module then lists no CRC for it."""
    assert len(new) == len(symbol)
    _, sec = _shdr(data, "__versions")
    recs = versions_records(data)
    i = [record_name(r) for r in recs].index(symbol)
    at = sec.offset + 64 * i
    return data[:at] + record_renamed(recs[i], new) + data[at + 64:]


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
    kms_a = (sets["basic"] / "kms_a.ko").read_bytes()
    patch_versions(p, kms_a, kms_b, kms_c, release, other)
    return dest


def patch_versions(p: Path, kms_a: bytes, kms_b: bytes, kms_c: bytes, release: bytes, other: bytes) -> None:
    """The modules of the check_version() branches (see the module docstring)."""
    from kmodsim.elf import SHF_ALLOC

    (p / "kms_c_nolayout.ko").write_bytes(patch_version_name(kms_c, "module_layout", "module_layouX"))
    nover = patch_version_name(kms_b, "kms_a_plain", "kms_a_plaiX")
    (p / "kms_b_noversion.ko").write_bytes(patch_version_name(nover, "kms_a_counter", "kms_a_countXr"))
    for name, data in (("kms_a", kms_a), ("kms_b", kms_b), ("kms_c", kms_c)):
        (p / f"{name}_noversions.ko").write_bytes(rename_section(data, "__versions", "__versionX"))
    (p / "kms_c_noversions_release.ko").write_bytes(
        _replace_once(rename_section(kms_c, "__versions", "__versionX"), b"vermagic=" + release,
                      b"vermagic=" + other))
    (p / "kms_c_versions_noalloc.ko").write_bytes(section_flags_cleared(kms_c, "__versions", SHF_ALLOC))
    recs = versions_records(kms_b)
    body = b"".join(recs)
    (p / "kms_b_versions_short.ko").write_bytes(with_versions(kms_b, body[:-8]))
    (p / "kms_b_versions_long.ko").write_bytes(with_versions(kms_b, body + b"\0" * 40))
    (p / "kms_b_crc_high.ko").write_bytes(patch_version_crc(kms_b, "kms_a_plain", 1 << 32))
    plain = next(r for r in recs if record_name(r) == "kms_a_plain")
    wrong = struct.pack("<Q", struct.unpack_from("<Q", plain)[0] ^ 0x5A5A5A5A) + plain[8:]
    (p / "kms_b_dupver_bad_first.ko").write_bytes(with_versions(kms_b, wrong + body))
    (p / "kms_b_dupver_good_first.ko").write_bytes(with_versions(kms_b, body + wrong))
    (p / "kms_a_nocrcs.ko").write_bytes(rename_section(kms_a, "__kcrctab", "__kcrctaX"))


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
    from kmodsim.oracle.boot import pack_modules

    steps = steps_of(script, ws)
    return steps, pack_modules(steps, str(ws / "packed" / script.stem))


def model_run(script: Path, ws: Path, kernel):
    """The scenario on the model, on the same packed copies the guest loads."""
    from kmodsim.loader.run import replay
    from kmodsim.oracle.boot import on_packed

    steps, packed = packed_steps(script, ws)
    return replay(kernel, on_packed(steps, packed))


def kernel_run(script: Path, ws: Path, kernel, vmlinuz: str, timeout: float = 120.0) -> dict:
    """The scenario on the real kernel under QEMU, as ``kmodsim verify --json`` reports it."""
    from kmodsim.loader.profiles import profile_for
    from kmodsim.oracle import run_on_kernel
    from kmodsim.oracle.boot import kernel_run as run_of_kernel
    from kmodsim.render.loader import run_json

    steps, packed = packed_steps(script, ws)
    raw = run_on_kernel(steps, vmlinuz, timeout=timeout, packed=packed)
    return run_json(run_of_kernel(kernel, profile_for(kernel.release), steps, raw))


def recorded_doc(doc: dict) -> dict:
    """A kernel run as it is kept: without the boot time (the only part that varies run to run)."""
    doc = dict(doc)
    doc.pop("boot_seconds", None)
    doc["notes"] = [n for n in doc["notes"] if not n.startswith("booted in")]
    return doc


def record_scenarios(ws: Path, kernel, vmlinuz: str, scripts, out: Path, name=None, jobs: int = 2) -> None:
    """Run ``scripts`` on the real kernel (``jobs`` boots at a time) and write each answer to
    ``out/<name(script)>`` (default ``<stem>.json``), atomically."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    name = name or (lambda s: f"{s.stem}.json")

    def one(script: Path) -> None:
        doc = recorded_doc(kernel_run(script, ws, kernel, vmlinuz))
        tmp = out / f".{name(script)}.tmp"
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.rename(out / name(script))

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(one, scripts))


def record(ws: Path, headers: str, vmlinuz: str, jobs: int = 2) -> Path:
    """Run every scenario on the real kernel and keep its answers in recorded/<release>/, for the
    fast model tests (the slow test re-derives them from the kernel every time)."""
    from kmodsim.kernel import Kernel

    kernel = Kernel.load(headers)
    out = RECORDED / kernel.release
    record_scenarios(ws, kernel, vmlinuz, SCENARIOS, out, jobs=jobs)
    return out


def scenario_key(script: Path) -> str:
    """What a recorded answer depends on besides the kernel: the script, the fixture sources and the
    byte patches of this file (a digest; a cached answer with another key is not used)."""
    import hashlib

    h = hashlib.sha256(script.read_bytes())
    h.update(Path(__file__).read_bytes())
    for d in ("basic", "consumers", "loader"):
        for f in sorted((KBUILD_SRC / d).iterdir()):
            if f.is_file():
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cache_dir(image: str) -> Path:
    """Where answers recorded by the tests are kept for a kernel image package (its .deb's name, so
    a rebuilt image of the same ABI is recorded anew): ``$KMODSIM_CACHE/loader-recorded/<image>``."""
    from kmodsim.cache import cache_root

    return Path(cache_root()) / "loader-recorded" / image


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
