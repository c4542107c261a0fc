"""The target kernel: what vmlinux exports, its release and vermagic, its configuration.

A :class:`Kernel` comes from any of

* a ``Module.symvers`` file (all three column layouts: <=5.3, 5.4-5.5, 5.6+);
* a Debian headers directory (``/usr/src/linux-headers-<kver>-<flavour>``, or
  ``/lib/modules/<kver>/build``): its Module.symvers, ``.config`` and ``UTS_RELEASE``, from which
  the vermagic string is computed as ``include/linux/vermagic.h`` does;
* a vmlinux ELF (with or without symbols): exports are read from ``__ksymtab``/``__ksymtab_gpl``
  entries themselves, CRCs from ``__kcrctab`` or ``__crc_`` symbols;
* a bzImage (``vmlinuz``): the compressed ELF payload is extracted and read as vmlinux.

Only vmlinux's own exports are the kernel's; the module rows of a Module.symvers are kept apart
(:attr:`Kernel.module_rows`) since they describe modules that may or may not be loaded.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from itertools import compress
from typing import NamedTuple

from .elf import ET_EXEC, SHT_NOBITS, ElfError, ElfFile, Section, cstr
from .errors import Error
from .keys import certificate_ids

EXPORT_TYPES = {
    "EXPORT_SYMBOL": (False, ""),
    "EXPORT_SYMBOL_GPL": (True, "gpl"),
    "EXPORT_SYMBOL_GPL_FUTURE": (False, "gpl_future"),
    "EXPORT_UNUSED_SYMBOL": (False, "unused"),
    "EXPORT_UNUSED_SYMBOL_GPL": (True, "unused_gpl"),
}

# .config symbol -> (e_machine, ELF class); the first that is set wins (order matters: X86_64 before X86_32).
CONFIG_MACHINES = [
    ("CONFIG_X86_64", 62, 64), ("CONFIG_X86_32", 3, 32), ("CONFIG_ARM64", 183, 64), ("CONFIG_ARM", 40, 32),
    ("CONFIG_S390", 22, 64), ("CONFIG_PPC64", 21, 64), ("CONFIG_PPC32", 20, 32),
    ("CONFIG_RISCV", 243, None), ("CONFIG_LOONGARCH", 258, 64), ("CONFIG_MIPS", 8, None),
]

# arch/x86/include/asm/vermagic.h (asm/module.h before 5.11): MODULE_PROC_FAMILY for 32-bit x86
# (x86-64 defines none). Kconfig makes these a choice, so at most one is set.
X86_32_PROC_FAMILY = [
    ("CONFIG_M486SX", "486SX "), ("CONFIG_M486", "486 "), ("CONFIG_M586", "586 "),
    ("CONFIG_M586TSC", "586TSC "), ("CONFIG_M586MMX", "586MMX "), ("CONFIG_MCORE2", "CORE2 "),
    ("CONFIG_MATOM", "ATOM "), ("CONFIG_M686", "686 "), ("CONFIG_MPENTIUMII", "PENTIUMII "),
    ("CONFIG_MPENTIUMIII", "PENTIUMIII "), ("CONFIG_MPENTIUMM", "PENTIUMM "),
    ("CONFIG_MPENTIUM4", "PENTIUM4 "), ("CONFIG_MK6", "K6 "), ("CONFIG_MK7", "K7 "), ("CONFIG_MK8", "K8 "),
    ("CONFIG_MELAN", "ELAN "), ("CONFIG_MCRUSOE", "CRUSOE "), ("CONFIG_MEFFICEON", "EFFICEON "),
    ("CONFIG_MWINCHIPC6", "WINCHIPC6 "), ("CONFIG_MWINCHIP3D", "WINCHIP3D "),
    ("CONFIG_MCYRIXIII", "CYRIXIII "), ("CONFIG_MVIAC3_2", "VIAC3-2 "), ("CONFIG_MVIAC7", "VIAC7 "),
    ("CONFIG_MGEODEGX1", "GEODEGX1 "), ("CONFIG_MGEODE_LX", "GEODE "),
]

# arch/arm/Makefile: ``arch-$(CONFIG_CPU_32v*) = -D__LINUX_ARM_ARCH__=<n> ...``, in this order, the
# last line whose option is set winning (so a v6+v7 multiplatform kernel is ARMv6). The CPU_32v6K
# line only applies when CPU_32v6 is set, which already gives 6, so it is left out.
ARM_ARCH_LEVELS = [
    ("CONFIG_CPU_32v7M", 7), ("CONFIG_CPU_32v7", 7), ("CONFIG_CPU_32v6", 6), ("CONFIG_CPU_32v5", 5),
    ("CONFIG_CPU_32v4T", 4), ("CONFIG_CPU_32v4", 4), ("CONFIG_CPU_32v3", 3),
]

# Architectures without an asm/vermagic.h: include/asm-generic/vermagic.h, MODULE_ARCH_VERMAGIC "".
GENERIC_VERMAGIC_ARCHES = ("CONFIG_S390", "CONFIG_ALPHA", "CONFIG_M68K", "CONFIG_PARISC", "CONFIG_SPARC")


class KernelError(Error):
    """The kernel description cannot be read; ``str()`` names the file and the problem."""


_new = tuple.__new__


class KernelExport(NamedTuple):
    name: str
    crc: int | None
    module: str  # "vmlinux", or the module path without .ko as Module.symvers writes it
    gpl: bool
    namespace: str
    kind: str  # "", "gpl", "gpl_future", "unused", "unused_gpl"


@dataclass
class Kernel:
    """What a target kernel provides to modules."""

    source: str
    release: str = ""
    exports: dict[str, KernelExport] = field(default_factory=dict)  # vmlinux's own exports
    module_rows: list[KernelExport] = field(default_factory=list)  # Module.symvers rows of modules
    config: dict[str, str] = field(default_factory=dict)
    vermagic: str | None = None
    machine: int | None = None
    ei_class: int | None = None  # 32 or 64
    # every file the load looked at, read or found missing (a cache of anything computed from this
    # kernel keys on their stat keys: kmodsim.findings_cache)
    inputs: list[str] = field(default_factory=list)
    # the keys module signatures are checked against: the certificates built into vmlinux
    # (kmodsim.keys); None when unknown (a headers directory, a Module.symvers)
    trusted_keys: frozenset[tuple[bytes, bytes]] | None = None
    # the kernel's image (a vmlinuz or vmlinux) given beside a headers directory: where its BTF is
    # read from (kmodsim.target.Target.btf: module BTF is checked against it at load)
    image: str | None = None

    @property
    def modversions(self) -> bool:
        if self.config:
            return self.config.get("CONFIG_MODVERSIONS") == "y"
        return any(e.crc for e in self.exports.values())

    # -- constructors ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str) -> Kernel:
        """Auto-detect: headers directory, Module.symvers, vmlinux ELF or bzImage."""
        if os.path.isdir(path):
            return cls.from_headers(path)
        try:
            with open(path, "rb") as f:
                head = f.read(0x210)
        except OSError as exc:
            raise KernelError(f"{path}: {exc.strerror or exc}") from None
        if head.startswith(b"\x7fELF"):
            return cls.from_vmlinux(path)
        if len(head) >= 0x206 and head[0x202:0x206] == b"HdrS":
            return cls.from_vmlinuz(path)
        if b"\0" in head:  # binary, yet neither ELF nor bzImage: e.g. s390's or arm's compressed image
            raise KernelError(f"{path}: not a headers directory, Module.symvers, vmlinux ELF or x86 bzImage "
                              f"(kernel images of other architectures carry no readable ELF payload: "
                              f"use the headers directory or Module.symvers)")
        return cls.from_symvers(path)

    @classmethod
    def from_symvers(cls, path: str) -> Kernel:
        k = cls(source=path, inputs=[path])
        vmlinux, modules = parse_symvers(path)
        k.exports = vmlinux
        k.module_rows = modules
        return k

    @classmethod
    def from_headers(cls, path: str) -> Kernel:
        symvers = os.path.join(path, "Module.symvers")
        if not os.path.isfile(symvers):
            raise KernelError(f"{path}: no Module.symvers (not a kernel headers or build directory)")
        k = cls.from_symvers(symvers)
        k.source = path
        config = os.path.join(path, ".config")
        k.inputs.append(config)
        if os.path.isfile(config):
            k.config = parse_config(config)
        k.release = headers_release(path, k.inputs)
        if k.config:
            k.machine, k.ei_class = machine_from_config(k.config)
            if k.release:
                k.vermagic = vermagic_from_config(k.release, k.config, path, k.inputs)
        return k

    @classmethod
    def from_vmlinuz(cls, path: str, max_size: int = 1 << 30) -> Kernel:
        try:
            with open(path, "rb") as f:
                image = f.read()
        except OSError as exc:
            raise KernelError(f"{path}: {exc.strerror or exc}") from None
        elf = extract_vmlinux(image, max_size)
        if elf is None:
            raise KernelError(f"{path}: no compressed ELF payload found in the bzImage")
        return cls._from_elf_bytes(elf, path)

    @classmethod
    def from_vmlinux(cls, path: str) -> Kernel:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise KernelError(f"{path}: {exc.strerror or exc}") from None
        return cls._from_elf_bytes(data, path)

    @classmethod
    def _from_elf_bytes(cls, data: bytes, path: str) -> Kernel:
        try:
            elf = ElfFile(data)
            if elf.type != ET_EXEC:
                raise KernelError(f"{path}: not a vmlinux image (ELF type {elf.type}, expected ET_EXEC)")
            exports = vmlinux_exports(elf)
        except ElfError as exc:
            raise KernelError(f"{path}: {exc}") from None
        k = cls(source=path, exports={e.name: e for e in exports}, machine=elf.machine,
                ei_class=64 if elf.is64 else 32, inputs=[path])
        k.release, k.vermagic = _banner(elf)
        k.trusted_keys = certificate_ids(data)
        return k

    def image_keys(self, image: str) -> None:
        """Take the keys built into the kernel ``image`` (a vmlinuz or vmlinux of this kernel) as
        the ones module signatures are checked against, when the kernel's own source had none;
        the image is also where the target's vmlinux BTF is read from."""
        if self.image is None:
            self.image = image
        if self.trusted_keys is None:
            self.trusted_keys = Kernel.load(image).trusted_keys


# ---------------------------------------------------------------------------------------------
# Module.symvers
# ---------------------------------------------------------------------------------------------

def parse_symvers(path: str) -> tuple[dict[str, KernelExport], list[KernelExport]]:
    """Parse Module.symvers; returns (vmlinux exports by name, module rows)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise KernelError(f"{path}: {exc.strerror or exc}") from None
    vmlinux: dict[str, KernelExport] = {}
    modules: list[KernelExport] = []
    layout = ""  # the first line's; every line of one file has it (modpost writes them all alike)
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) == 5 and cols[3] in EXPORT_TYPES:  # 5.6+: crc sym module type namespace
            crc, sym, mod, typ, ns = cols
            this = "5.6+"
        elif len(cols) == 5 and cols[4] in EXPORT_TYPES:  # 5.4-5.5: crc sym namespace module type
            crc, sym, ns, mod, typ = cols
            this = "5.4"
        elif len(cols) == 4 and cols[3] in EXPORT_TYPES:  # <=5.3: crc sym module type
            crc, sym, mod, typ = cols
            ns = ""
            this = "5.3"
        else:
            raise KernelError(f"{path}:{no}: not a Module.symvers line (expected 4 or 5 tab-separated "
                              f"fields with an EXPORT_SYMBOL* type)")
        if this != layout:
            if layout:  # e.g. a 5.6+ line cut before its namespace field: a truncated file
                raise KernelError(f"{path}:{no}: a line of {len(cols)} fields among lines of "
                                  f"{4 if layout == '5.3' else 5} (a truncated or mixed Module.symvers)")
            layout = this
        try:
            crc_val = int(crc, 16)
        except ValueError:
            raise KernelError(f"{path}:{no}: bad CRC {crc!r}") from None
        gpl, kind = EXPORT_TYPES[typ]
        e = _new(KernelExport, (sym, crc_val, mod, gpl, ns, kind))  # no NamedTuple.__new__: ~25k rows
        if mod == "vmlinux":
            vmlinux[sym] = e
        else:
            modules.append(e)
    return vmlinux, modules


# ---------------------------------------------------------------------------------------------
# Headers: release, .config, vermagic
# ---------------------------------------------------------------------------------------------

def parse_config(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            if line.startswith("CONFIG_"):
                k, _, v = line.rstrip("\n").partition("=")
                if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
                    v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                out[k] = v
    return out


def headers_release(path: str, seen: list[str] | None = None) -> str:
    """UTS_RELEASE, as the kernel's vermagic uses it (Debian's include/config/kernel.release
    holds the upstream version instead, so it is only the last resort). ``seen``: where the files
    looked at are noted."""
    seen = [] if seen is None else seen
    uts = os.path.join(path, "include", "generated", "utsrelease.h")
    seen.append(uts)
    if os.path.isfile(uts):
        m = re.search(r'#define\s+UTS_RELEASE\s+"([^"]*)"', open(uts, encoding="utf-8").read())
        if m:
            return m.group(1)
    kv = os.path.join(path, ".kernelvariables")
    seen.append(kv)
    if os.path.isfile(kv):
        m = re.search(r"KERNELRELEASE\s*=\s*(\S+)", open(kv, encoding="utf-8").read())
        if m:
            return m.group(1)
    rel = os.path.join(path, "include", "config", "kernel.release")
    seen.append(rel)
    if os.path.isfile(rel):
        return open(rel, encoding="utf-8").read().strip()
    return ""


def machine_from_config(config: dict[str, str]) -> tuple[int | None, int | None]:
    bits = 64 if config.get("CONFIG_64BIT") == "y" else 32
    for sym, machine, cls_bits in CONFIG_MACHINES:
        if config.get(sym) == "y":
            return machine, cls_bits or bits
    return None, bits


def vermagic_from_config(release: str, config: dict[str, str], headers: str | None = None,
                         seen: list[str] | None = None) -> str | None:
    """VERMAGIC_STRING of include/linux/vermagic.h for this configuration (None when the
    architecture's part is not modelled: see :func:`arch_vermagic`).

    UTS_RELEASE " " MODULE_VERMAGIC_SMP MODULE_VERMAGIC_PREEMPT MODULE_VERMAGIC_MODULE_UNLOAD
    MODULE_VERMAGIC_MODVERSIONS MODULE_ARCH_VERMAGIC MODULE_RANDSTRUCT
    """
    arch = arch_vermagic(config)
    if arch is None:
        return None

    def y(sym: str) -> bool:
        return config.get(sym) == "y"

    parts = [release + " "]
    if y("CONFIG_SMP"):
        parts.append("SMP ")
    # "preempt " keyed on CONFIG_PREEMPT_BUILD since 5.16 (commit fa2bfdb0), on CONFIG_PREEMPT before.
    if y("CONFIG_PREEMPT_BUILD") or ("CONFIG_PREEMPT_BUILD" not in config and y("CONFIG_PREEMPT")):
        parts.append("preempt ")
    elif y("CONFIG_PREEMPT_RT"):
        parts.append("preempt_rt ")
    if y("CONFIG_MODULE_UNLOAD"):
        parts.append("mod_unload ")
    if y("CONFIG_MODVERSIONS"):
        parts.append("modversions ")
    parts.append(arch)
    if y("CONFIG_RANDSTRUCT") or y("CONFIG_GCC_PLUGIN_RANDSTRUCT"):
        seed = _randstruct_seed(headers, seen)
        if seed:
            parts.append("RANDSTRUCT_" + seed)
    return "".join(parts)


def arch_vermagic(config: dict[str, str]) -> str | None:
    """MODULE_ARCH_VERMAGIC (arch/*/include/asm/vermagic.h since 5.11, asm/module.h before), or
    None for an architecture whose definition is not modelled here (MIPS, SuperH, IA-64, ...):
    an unknown vermagic is better than a wrong one."""
    def y(sym: str) -> bool:
        return config.get(sym) == "y"

    if y("CONFIG_X86_64"):
        return ""
    if y("CONFIG_X86_32"):  # arch/x86/include/asm/vermagic.h: MODULE_PROC_FAMILY
        for sym, fam in X86_32_PROC_FAMILY:
            if y(sym):
                return fam
        return None  # the header has "#error unknown processor family"
    if y("CONFIG_ARM64"):  # arch/arm64/include/asm/vermagic.h
        return "aarch64"
    if y("CONFIG_ARM"):
        # arch/arm/include/asm/vermagic.h: "ARMv" __stringify(__LINUX_ARM_ARCH__) " ", then
        # "thumb2 " (CONFIG_THUMB2_KERNEL), then "p2v8 " (CONFIG_ARM_PATCH_PHYS_VIRT).
        level = None
        for sym, n in ARM_ARCH_LEVELS:
            if y(sym):
                level = n
        if level is None:
            return None
        return (f"ARMv{level} " + ("thumb2 " if y("CONFIG_THUMB2_KERNEL") else "")
                + ("p2v8 " if y("CONFIG_ARM_PATCH_PHYS_VIRT") else ""))
    if y("CONFIG_PPC"):
        # arch/powerpc/include/asm/vermagic.h: MODULE_ARCH_VERMAGIC_FTRACE MODULE_ARCH_VERMAGIC_RELOCATABLE
        return ("mprofile-kernel " if y("CONFIG_MPROFILE_KERNEL") else "") + (
            "relocatable " if y("CONFIG_RELOCATABLE") else "")
    if y("CONFIG_RISCV"):  # arch/riscv/include/asm/vermagic.h
        return "riscv"
    if any(y(a) for a in GENERIC_VERMAGIC_ARCHES):  # e.g. s390: include/asm-generic/vermagic.h
        return ""
    return None


def _randstruct_seed(headers: str | None, seen: list[str] | None = None) -> str:
    if not headers:
        return ""
    for rel in ("include/generated/randstruct_hash.h", "include/generated/randomize_layout_hash.h"):
        p = os.path.join(headers, rel)
        if seen is not None:
            seen.append(p)
        if os.path.isfile(p):
            m = re.search(r'"([0-9a-f]+)"', open(p, encoding="utf-8").read())
            if m:
                return m.group(1)
    return ""


def same_magic(amagic: str, bmagic: str, has_crcs: bool) -> bool:
    """Mirror of kernel/module/version.c:same_magic(): with modversions (the module has a
    ``__versions`` section) the release word before the first space is not compared."""
    if has_crcs:
        amagic = amagic[len(amagic.split(" ", 1)[0]):] if " " in amagic else ""
        bmagic = bmagic[len(bmagic.split(" ", 1)[0]):] if " " in bmagic else ""
    return amagic == bmagic


# ---------------------------------------------------------------------------------------------
# vmlinux / bzImage
# ---------------------------------------------------------------------------------------------

def extract_vmlinux(image: bytes, max_size: int = 1 << 30) -> bytes | None:
    """The ELF payload of a bzImage (what scripts/extract-vmlinux does, for xz, zstd and gzip):
    the first stream, at any offset, that decompresses completely within ``max_size`` into an ELF
    file (kmodsim.module: the same magic numbers and the same bounded decompression as modules)."""
    from .module import COMPRESSION_MAGICS, decompress

    view = memoryview(image)
    for magic, fmt in COMPRESSION_MAGICS:
        start = image.find(magic)
        while start >= 0:
            try:
                out = decompress(view[start:], fmt, max_size)
            except ValueError:
                out = b""
            if out.startswith(b"\x7fELF"):
                return out
            start = image.find(magic, start + 1)
    return None


def vmlinux_exports(elf: ElfFile) -> list[KernelExport]:
    """Exports of a linked vmlinux, read from the ksymtab entries (no symbol table needed).

    The entry layout is found by trying each the kernel has used — PREL32 12-byte (5.4+) and 8-byte
    (4.19-5.3), absolute 24-byte and 16-byte (pointer-sized fields) — and keeping the one whose
    name fields all land in ``__ksymtab_strings``.
    """
    strings = elf.section("__ksymtab_strings")
    if strings is None:
        raise ElfError("no __ksymtab_strings section: not a kernel image with exports")
    sdata = elf.data(strings)
    out: list[KernelExport] = []
    for secname, (gpl, kind) in (("__ksymtab", (False, "")), ("__ksymtab_gpl", (True, "gpl")),
                                 ("__ksymtab_gpl_future", (False, "gpl_future"))):
        sec = elf.section(secname)
        if sec is None or sec.size == 0 or sec.type == SHT_NOBITS:
            continue
        entries = _ksymtab_entries(elf, sec, strings, sdata)
        crcs = _kcrctab(elf, secname.replace("ksymtab", "kcrctab"), len(entries))
        for i, (name, ns) in enumerate(entries):
            out.append(KernelExport(name, crcs[i] if crcs else None, "vmlinux", gpl, ns, kind))
    if not any(e.crc is not None for e in out):
        crc_syms = _crc_symbols(elf)
        if crc_syms:
            out = [e._replace(crc=crc_syms.get(e.name)) for e in out]
    return out


def _ksymtab_entries(elf: ElfFile, sec: Section, strings: Section, sdata: bytes) -> list[tuple[str, str]]:
    data = elf.data(sec)
    lo, hi = strings.addr, strings.addr + strings.size
    ptr = "Q" if elf.is64 else "I"
    psz = 8 if elf.is64 else 4
    # (entry size, field size, relative?, has namespace)
    layouts = [(12, 4, True, True), (8, 4, True, False), (3 * psz, psz, False, True), (2 * psz, psz, False, False)]
    for esize, fsz, rel, has_ns in layouts:
        if len(data) % esize:
            continue
        fmt = elf.e + ("i" if rel else ptr)
        ok = True
        out = []
        for off in range(0, len(data), esize):
            addrs = []
            for fld in (1, 2) if has_ns else (1,):
                v = struct.unpack_from(fmt, data, off + fld * fsz)[0]
                a = sec.addr + off + fld * fsz + v if rel else v
                addrs.append(a)
            name_a = addrs[0]
            if not lo <= name_a < hi:
                ok = False
                break
            name = _str_at(sdata, name_a - lo)
            ns = ""
            if has_ns:
                ns_a = addrs[1]
                if ns_a == 0 or (rel and ns_a == sec.addr + off + 2 * fsz):
                    ns = ""
                elif lo <= ns_a < hi:
                    ns = _str_at(sdata, ns_a - lo)
                else:
                    ok = False
                    break
            out.append((name, ns))
        if ok:
            return out
    raise ElfError(f"{sec.name}: entries match no known struct kernel_symbol layout")


def _str_at(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    if end < 0:
        raise ElfError(f"string at {off:#x} of __ksymtab_strings is not NUL-terminated")
    return data[off:end].decode("latin-1")


def _kcrctab(elf: ElfFile, name: str, count: int) -> list[int] | None:
    sec = elf.section(name)
    if sec is None or sec.type == SHT_NOBITS:
        return None
    data = elf.data(sec)
    if len(data) != 4 * count:
        raise ElfError(f"{name} has {len(data) // 4} CRCs for {count} exports")
    return list(struct.unpack(elf.e + f"{count}I", data))


def _crc_symbols(elf: ElfFile) -> dict[str, int]:
    """CRCs from ``__crc_<S>`` symbols (absolute, before 5.19), from the symbol table's columns:
    the symbols whose name starts at an occurrence of ``__crc_`` in the string table. Every
    symbol name must lie in the string table (the ElfError of :meth:`ElfFile.symbols` otherwise)."""
    out: dict[str, int] = {}
    symtab = elf.symtab()
    if symtab is None:
        return out
    st_name, _info, _shndx, st_value, strtab = elf.symbol_arrays(symtab)
    if st_name and (max(st_name) >= len(strtab) or not strtab.endswith("\0")):
        for o in st_name:  # the first bad name, in table order
            cstr(strtab, o, "symbol name")
    offs = set()
    p = strtab.find("__crc_")
    while p >= 0:
        offs.add(p)
        p = strtab.find("__crc_", p + 1)
    if offs:
        for i in compress(range(len(st_name)), map(offs.__contains__, st_name)):
            o = st_name[i]
            out[strtab[o + 6:strtab.index("\0", o)]] = st_value[i] & 0xFFFFFFFF
    return out


_BANNER = re.compile(rb"Linux version (\S+) \(")


def _banner(elf: ElfFile) -> tuple[str, str | None]:
    """Release from linux_banner, and the VERMAGIC_STRING the image carries (kernel/module/main.c's
    ``vermagic[]``), found as the release followed by vermagic words."""
    ro = elf.section(".rodata")
    data = elf.data(ro) if ro is not None else b""
    m = _BANNER.search(data)
    if not m:
        return "", None
    release = m.group(1)
    vm = re.search(re.escape(release) + rb" (?:SMP |preempt[a-z_]* |mod_unload |modversions )+[^\0]*\0", data)
    return release.decode("latin-1"), vm.group(0)[:-1].decode("latin-1") if vm else None


# ---------------------------------------------------------------------------------------------
# Rules the kernel applies when it links a module (shared by ldd, check and the loader model)
# ---------------------------------------------------------------------------------------------

# include/linux/license.h: license_is_gpl_compatible()
GPL_COMPATIBLE_LICENSES = frozenset({
    "GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL",
})


def license_is_gpl_compatible(license: str) -> bool:
    """Mirror of include/linux/license.h:license_is_gpl_compatible()."""
    return license in GPL_COMPATIBLE_LICENSES


def check_version(versions: dict[str, int] | None, symbol: str, crc: int | None) -> str:
    """Mirror of kernel/module/version.c:check_version(), as a verdict.

    ``versions``: the module's ``__versions`` (None when the module has none). ``crc``: the
    exporter's CRC (None when the exporter has none). Returns "ok", "mismatch" (the kernel prints
    "disagrees about version of symbol"), "no-version" (the module lists no CRC for the symbol:
    "no symbol version for", refused by Debian's 6.1.192 and 6.12.118 — see kmodsim.loader's
    check_version(); mainline from v4.9 warned once and accepted), "no-crc" (the exporter supplied none: accepted, already tainted) or
    "no-versions" (the module has no ``__versions`` at all: a forced load that taints).
    """
    if crc is None:  # tested first, as the kernel does ("OK, we're already tainted")
        return "no-crc"
    if versions is None:
        return "no-versions"
    mine = versions.get(symbol)
    if mine is None:
        return "no-version"
    return "ok" if mine == crc else "mismatch"
