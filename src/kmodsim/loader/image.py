"""What the loader reads from a module file, in the form the model needs (kmodsim.module plus the
few facts it does not keep: init/exit functions, whether ``__versions`` exists, symbol-table order,
and what the footprint's layout needs). The file is opened and parsed once: the module's record
and these facts come from one :class:`~kmodsim.elf.ElfFile` of its image."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field, replace
from itertools import compress
from operator import not_
from typing import TYPE_CHECKING

from ..elf import SHF_ALLOC, SHT_NOBITS, STB_WEAK, ElfError, ElfFile, cstr
from ..keys import module_signer
from ..module import Export, Module, ModuleError, parse_module, parse_view, read_image

if TYPE_CHECKING:
    from ..memory_layout import Layout, LayoutInput

# include/linux/module.h: struct modversion_info { unsigned long crc; char name[MODULE_NAME_LEN]; }
MODVERSION_INFO_SIZE = 64


@dataclass(frozen=True)
class ModuleImage:
    path: str
    name: str
    vermagic: str | None  # None: no vermagic= in .modinfo
    license: str | None
    intree: bool
    staging: bool
    has_versions: bool  # find_sec(info, "__versions") != 0: an SHF_ALLOC section of that name
    # the records check_version() walks: sh_size / 64 of them (a partial record at the end is not
    # one), in file order, the CRC as the whole unsigned long it is compared as
    versions: tuple[tuple[str, int], ...]
    imports: tuple[tuple[str, bool], ...]  # (name, weak), symbol-table order (simplify_symbols)
    exports: tuple[Export, ...]  # mod->syms (sorted) then mod->gpl_syms (sorted)
    # mod->crcs / mod->gpl_crcs are set: find_sec(info, "__kcrctab"/"__kcrctab_gpl") != 0. An export
    # of a table without them has no CRC (crc None: symversion(NULL, i))
    syms_crcs: bool
    gpl_syms_crcs: bool
    import_ns: tuple[str, ...]
    params: dict[str, str]  # name -> parmtype
    has_init: bool
    has_exit: bool
    signed: bool
    machine: int
    depends: tuple[str, ...]
    # the key the appended signature names (kmodsim.keys.module_signer), None: unsigned, or named otherwise
    signer: tuple[bytes, bytes] | None = field(default=None, compare=False, repr=False)
    # what layout_sections()/layout_symtab() read (kmodsim.memory_layout), taken when the file was
    # read; None if the footprint cannot read it (then footprint() is None, the load goes on)
    layout_input: LayoutInput | None = field(default=None, compare=False, repr=False)
    # the module's split BTF: its ".BTF" section of any flags (find_module_sections():
    # any_section_objs(info, ".BTF", ...)), None without one (mod->btf_data_size == 0)
    btf: bytes | None = field(default=None, compare=False, repr=False)

    def size(self, footprint_profile: Layout | str, keep_versions: bool = False) -> int | None:
        """What /proc/modules shows once loaded (kmodsim.memory_layout), None if unreadable."""
        fp = self.footprint(footprint_profile, keep_versions)
        return None if fp is None else fp.size

    def footprint(self, footprint_profile: Layout | str, keep_versions: bool = False):
        """The module's :class:`kmodsim.memory_layout.Footprint` (core and init sizes), None if
        unreadable. ``keep_versions``: loaded with MODULE_INIT_IGNORE_MODVERSIONS (``__versions``
        stays in memory: :func:`kmodsim.memory_layout.layout`)."""
        key = (id(self), footprint_profile, keep_versions)  # images live in _cache for the process: id() is stable
        if key not in _sizes:
            from ..memory_layout import layout

            inp = self.layout_input
            _sizes[key] = None if inp is None else layout(inp, footprint_profile, self.path,
                                                          keep_versions=keep_versions)
        return _sizes[key]


_sizes: dict[tuple[int, Layout | str, bool], object] = {}  # -> Footprint or None
_cache: dict[tuple, ModuleImage] = {}


def load_image(path: str) -> ModuleImage:
    """Read (and cache by path, size, mtime) a module file. Raises kmodsim.module.ModuleError, and
    only that, on a file that cannot be read or is not a module (a non-ELF or truncated file)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ModuleError(path, exc.strerror or str(exc)) from None
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    img = _cache.get(key)
    if img is None:
        buf, comp, size = read_image(path)
        try:
            elf = ElfFile(buf)
            try:
                mod = Module(parse_view(buf, path, comp, size, elf)[0])
            except ElfError as exc:
                # kmodsim.module refuses a __versions whose size is not a multiple of 64 (a malformed
                # file for scan and check); the kernel just walks sh_size / 64 records: read the rest
                # of the module with that size, the records themselves below as check_version() does
                fixed = _versions_size_floored(elf, buf) if "__versions size" in str(exc) else None
                if fixed is None:
                    raise
                mod = parse_module(fixed, path, comp, size)
            img = replace(image_of(mod, elf), signer=module_signer(buf))
        except ElfError as exc:
            raise ModuleError(path, str(exc)) from None
        _cache[key] = img
    return img


def find_sec(elf: ElfFile, name: str) -> int:
    """kernel/module/main.c:find_sec(): the first section of that name with SHF_ALLOC set ("Alloc
    bit cleared means 'ignore it'"), 0 if none."""
    for i in elf.indices(name):
        if i and elf.section_at(i).flags & SHF_ALLOC:
            return i
    return 0


def _versions_size_floored(elf: ElfFile, buf) -> bytes | None:
    """A copy of the module with ``__versions``' sh_size rounded down to a multiple of 64."""
    sec = elf.section("__versions")
    if sec is None or not elf.is64:
        return None
    off = elf.shoff + sec.index * 64 + 32  # Elf64_Shdr (64 bytes): sh_size at 32
    out = bytearray(buf)
    struct.pack_into(elf.e + "Q", out, off, sec.size - sec.size % MODVERSION_INFO_SIZE)
    return bytes(out)


def modversions(elf: ElfFile) -> tuple[bool, tuple[tuple[str, int], ...]]:
    """(info->index.vers != 0, the records) as check_version() sees them: ``num_versions = sh_size /
    sizeof(struct modversion_info)``, each name compared with strcmp() from its field on (up to the
    first NUL, which may lie past the 56-byte field), the CRC an unsigned long."""
    idx = find_sec(elf, "__versions")
    if not idx:
        return False, ()
    sec = elf.section_at(idx)
    if sec.type == SHT_NOBITS:
        return True, ()
    data = elf.data(sec)
    width = 8 if elf.is64 else 4
    out = []
    for off in range(0, len(data) - len(data) % MODVERSION_INFO_SIZE, MODVERSION_INFO_SIZE):
        (crc,) = struct.unpack_from(elf.e + ("Q" if elf.is64 else "I"), data, off)
        end = data.find(b"\0", off + width)
        name = data[off + width:end if end >= 0 else len(data)]
        out.append((name.decode("latin-1"), crc))
    return True, tuple(out)


def _symbols(elf: ElfFile) -> tuple[list[tuple[str, bool]], set[str]]:
    """From the symbol table's columns: the imports simplify_symbols() walks — (name, weak) of
    every named SHN_UNDEF symbol, in table order — and which of init_module and cleanup_module
    are defined. Every symbol name must lie in the string table (the same ElfError otherwise)."""
    symtab = elf.symtab()
    if symtab is None:
        return [], set()
    st_name, st_info, st_shndx, _value, strtab = elf.symbol_arrays(symtab)
    if st_name and (max(st_name) >= len(strtab) or not strtab.endswith("\0")):
        for o in st_name:  # the first bad name, in table order
            cstr(strtab, o, "symbol name")
    n = len(strtab)  # named: the string at st_name is not empty (whatever the offset)
    und = [i for i in compress(range(len(st_name)), map(not_, st_shndx)) if st_name[i] < n and strtab[st_name[i]] != "\0"]
    imports = [(strtab[st_name[i]:strtab.index("\0", st_name[i])], st_info[i] >> 4 == STB_WEAK) for i in und]
    defined = set()
    for fn in ("init_module", "cleanup_module"):
        offs = set()
        p = strtab.find(fn + "\0")
        while p >= 0:
            offs.add(p)
            p = strtab.find(fn + "\0", p + 1)
        if offs and any(sh for nm, sh in zip(st_name, st_shndx, strict=True) if nm in offs):
            defined.add(fn)
    return imports, defined


def image_of(mod: Module, elf: ElfFile) -> ModuleImage:
    from ..memory_layout import input_of

    imports, defined = _symbols(elf)
    try:
        inp: LayoutInput | None = input_of(elf)
    except ElfError:
        inp = None
    syms_crcs, gpl_syms_crcs = bool(find_sec(elf, "__kcrctab")), bool(find_sec(elf, "__kcrctab_gpl"))
    plain = sorted((e if syms_crcs else e._replace(crc=None) for e in mod.exports if not e.gpl),
                   key=lambda e: e.name.encode())
    gpl = sorted((e if gpl_syms_crcs else e._replace(crc=None) for e in mod.exports if e.gpl),
                 key=lambda e: e.name.encode())
    has_versions, versions = modversions(elf)
    btf_sec = elf.section(".BTF")
    vm = mod.info("vermagic")
    lic = mod.info("license")
    return ModuleImage(
        path=mod.path, name=mod.name, vermagic=vm[0] if vm else None, license=lic[0] if lic else None,
        intree=bool(mod.info("intree")), staging=bool(mod.info("staging")),
        has_versions=has_versions, versions=versions,
        imports=tuple(imports), exports=tuple(plain + gpl), syms_crcs=syms_crcs, gpl_syms_crcs=gpl_syms_crcs,
        import_ns=tuple(mod.import_ns),
        params={p.name: p.type for p in mod.params}, has_init="init_module" in defined,
        has_exit="cleanup_module" in defined, signed=mod.signed, machine=mod.machine,
        depends=tuple(mod.depends), layout_input=inp,
        btf=None if btf_sec is None else bytes(elf.data(btf_sec)))
