"""Acceptance on Debian kernels of other architectures: the reader is not only right on x86-64.

* s390x (``linux-image-<abi>-s390x``): ELF64, big-endian, RELA;
* i386 (``linux-image-<abi>-686``): ELF32, little-endian, REL, a CPU-family word in vermagic;
* armhf (``linux-image-<abi>-armmp``): ELF32, little-endian, REL, "ARMv7 p2v8 " in vermagic;
* ppc64el (``linux-image-<abi>-powerpc64le``): ELF64 LE, "mprofile-kernel relocatable ".

Each is fetched with apt's ordinary client into a private apt state (``DebianKernel(..., arch=)``:
nothing installed, no ``dpkg --add-architecture``), with the headers package of its flavour.
For every module: exports equal its Module.symvers rows (name, GPL, namespace, CRC); imports equal
the undefined symbols ``readelf -sW`` lists, with the ``__versions`` CRCs pyelftools reads; ELF
class, byte order, e_machine, sections and the symbol table equal readelf's/pyelftools' view; the
relocations of the ksymtab sections equal pyelftools'. ``Kernel.load(headers)`` computes the
vermagic that ``modinfo -F vermagic`` (kmod) reads from every module, and the modules' e_machine.
Expected values come from those tools only, never from kmodsim.
"""

from __future__ import annotations

import glob
import io
import os
import subprocess

import pytest
from elftools.elf import enums
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_E_MACHINE

from kmodsim.elf import ElfFile
from kmodsim.kernel import Kernel, KernelError
from kmodsim.module import _this_module_name
from kmodsim.tree import scan

import oracles
from conftest import need

pytestmark = [pytest.mark.realkernel, pytest.mark.slow]

# arch -> (meta-package, e_machine name as pyelftools spells it, ELF class, little-endian)
ARCHES = {
    "s390x": ("linux-image-s390x", "EM_S390", 64, False),
    "i386": ("linux-image-686", "EM_386", 32, True),
    "armhf": ("linux-image-armmp", "EM_ARM", 32, True),
    "ppc64el": ("linux-image-powerpc64le", "EM_PPC64", 64, True),
}

_kernels: dict[str, object] = {}


@pytest.fixture(scope="module", params=list(ARCHES))
def foreign(request):
    """The unpacked image package the arch's meta-package points at, plus its headers."""
    arch = request.param
    if arch not in _kernels:
        from kmodsim.debian import DebianError, DebianKernel, image_package

        try:
            k = DebianKernel(image_package(ARCHES[arch][0], arch=arch), arch=arch)
            k.headers_dir = k.headers()
        except DebianError as exc:
            need(f"{arch}: {exc}")
        if not k.kver.startswith("6.1."):
            need(f"{ARCHES[arch][0]} ({arch}) points at {k.kver}, not a 6.1 kernel")
        _kernels[arch] = k
    return arch, _kernels[arch]


def _module_files(root: str) -> list[str]:
    """Every module file below root, found without kmodsim."""
    return sorted(p for suf in (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
                  for p in glob.glob(os.path.join(root, "**", "*" + suf), recursive=True))


def _readelf_name(name: str) -> str:
    """A symbol name as readelf prints it: control characters as ^X (binutils print_symbol)."""
    return "".join("^" + chr(ord(c) + 0x40) if ord(c) < 0x20 else c for c in name)


_TYPES = {0: "NOTYPE", 1: "OBJECT", 2: "FUNC", 3: "SECTION", 4: "FILE", 5: "COMMON", 6: "TLS"}
_BINDS = {0: "LOCAL", 1: "GLOBAL", 2: "WEAK"}
_NDX = {0: "UND", 0xFFF1: "ABS", 0xFFF2: "COM"}
# section type names pyelftools gives (generic and per-machine) -> sh_type values
_SHT = {n: v for d in (getattr(enums, x) for x in dir(enums) if x.startswith("ENUM_SH_TYPE_"))
        for n, v in d.items() if n != "_default_"}


def test_every_module_exports_imports_and_elf(foreign):
    arch, k = foreign
    _meta, em_name, bits, little = ARCHES[arch]
    root = k.modules_dir
    files = _module_files(root)
    assert len(files) > 2000
    assert all(p.endswith(".ko") for p in files)  # Debian 6.1: plain .ko, readelf reads them as they are

    res = scan([root], use_cache=False)
    assert res.errors == []
    mods = res.modules
    assert sorted(m.path for m in mods) == files

    # exports: the Module.symvers rows whose module column is the path below kernel/
    rows = oracles.symvers(os.path.join(k.headers_dir, "Module.symvers"))
    exported_modules = {mod for mod in rows if mod != "vmlinux"}
    seen = set()
    n_exports = 0
    for m in mods:
        rel = os.path.relpath(m.path, os.path.join(root, "kernel"))
        key = rel[: rel.index(".ko")]
        got = {e.name: (e.crc, e.gpl, e.namespace) for e in m.exports}
        assert len(got) == len(m.exports), m.path  # no export listed twice
        assert got == rows.get(key, {}), m.path
        if got:
            seen.add(key)
        n_exports += len(got)
    assert seen == exported_modules  # no Module.symvers module is missing from the tree
    assert n_exports > 5000
    assert any(e.namespace for m in mods for e in m.exports)  # namespaces were exercised

    # imports: readelf's UND symbols (weak ones too), CRCs from pyelftools' view of __versions;
    # the whole symbol table as readelf prints it, through the general ElfFile.symbols()
    symtab = oracles.readelf_symtab(files)
    n_imports = n_relocs = 0
    for m in mods:
        data = open(m.path, "rb").read()
        syms = symtab[m.path]
        und = [(s[6], s[4] == "WEAK") for s in syms if s[5] == "UND" and s[6]]
        assert [(i.name, i.weak) for i in m.imports] == und, m.path
        vers = oracles.versions(data)
        assert [i.crc for i in m.imports] == [vers.get(s) for s, _w in und], m.path
        assert dict(m.versions) == vers, m.path  # every record, module_layout included
        n_imports += len(und)

        elf = ElfFile(data)
        mine = [(s.index, s.value, s.size, _TYPES.get(s.type, str(s.type)), _BINDS.get(s.bind, str(s.bind)),
                 _NDX.get(s.shndx, str(s.shndx)),
                 _readelf_name(s.name or (elf.sections[s.shndx].name if s.type == 3 else "")))
                for s in elf.symbols()]
        assert mine == syms, m.path

        # ELF header, sections and the ksymtab relocations (REL or RELA), as pyelftools reads them
        ref = ELFFile(io.BytesIO(data))
        assert (ref.header.e_machine, ref.elfclass, ref.little_endian) == (em_name, bits, little), m.path
        assert (m.machine, m.ei_class, m.little_endian) == (
            ENUM_E_MACHINE[em_name], 2 if bits == 64 else 1, little), m.path
        ref_secs = list(ref.iter_sections())
        want = [(s.name, _SHT.get(s.header.sh_type, s.header.sh_type), s.header.sh_flags, s.header.sh_size,
                 s.header.sh_addralign, s.header.sh_entsize) for s in ref_secs[1:]]
        assert [tuple(s) for s in m.sections] == want, m.path
        for idx, sec in enumerate(ref_secs):
            if sec.header.sh_type not in ("SHT_REL", "SHT_RELA"):
                continue
            if not ref_secs[sec.header.sh_info].name.startswith(("__ksymtab", "__kcrctab")):
                continue
            rela = sec.header.sh_type == "SHT_RELA"
            ref_rel = [(r["r_offset"], r["r_info_sym"], r["r_info_type"], r["r_addend"] if rela else None)
                       for r in sec.iter_relocations()]
            assert [tuple(r) for r in elf.relocations(elf.section_at(idx))] == ref_rel, (m.path, sec.name)
            n_relocs += len(ref_rel)

        # struct module's name at its 32/64-bit offset in .gnu.linkonce.this_module
        name = next(v for kv in oracles.modinfo(data) for kk, _, v in [kv.partition("=")] if kk == "name")
        assert _this_module_name(elf) == name == m.name, m.path
    assert n_imports > 50_000
    assert n_relocs >= 2 * n_exports  # value and name fields of every kernel_symbol at least
    print(f"{arch}: {len(mods)} modules, {n_exports} exports, {n_imports} imports, {n_relocs} ksymtab relocs")


def test_vermagic_machine_and_exports_from_headers(foreign):
    """include/linux/vermagic.h computed from the foreign .config + UTS_RELEASE vs modinfo(8)."""
    arch, k = foreign
    _meta, em_name, bits, _little = ARCHES[arch]
    kern = Kernel.load(k.headers_dir)
    paths = _module_files(k.modules_dir)
    out = subprocess.run(["modinfo", "-F", "vermagic", *paths], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert len(out) == len(paths)
    assert set(out) == {kern.vermagic}  # trailing space included
    assert kern.vermagic.startswith(k.kver + " ") and "modversions " in kern.vermagic
    assert kern.release == k.kver
    assert kern.machine == ENUM_E_MACHINE[em_name]
    assert kern.ei_class == bits
    rows = oracles.symvers(os.path.join(k.headers_dir, "Module.symvers"))["vmlinux"]
    assert {e.name: (e.crc, e.gpl, e.namespace) for e in kern.exports.values()} == rows


def test_kernel_image(foreign):
    """The ksymtab entries of the image's vmlinux, read without symbols, vs Module.symvers: i386's
    bzImage holds an ELF32 payload, ppc64el ships an ELF64 vmlinux. s390x's and armhf's compressed
    images hold no ELF payload: a clear error, not a Module.symvers parse error."""
    arch, k = foreign
    if arch in ("s390x", "armhf"):
        with pytest.raises(KernelError, match="x86 bzImage"):
            Kernel.load(k.vmlinuz)
        return
    _meta, em_name, bits, _little = ARCHES[arch]
    kern = Kernel.load(k.vmlinuz)
    rows = oracles.symvers(os.path.join(k.headers_dir, "Module.symvers"))["vmlinux"]
    assert {e.name: (e.crc, e.gpl, e.namespace) for e in kern.exports.values()} == rows
    assert kern.release == k.kver
    assert kern.machine == ENUM_E_MACHINE[em_name] and kern.ei_class == bits
    assert kern.vermagic == Kernel.load(k.headers_dir).vermagic
