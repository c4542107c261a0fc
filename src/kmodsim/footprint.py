"""What a module costs in RAM: the kernel's module memory layout, computed from the ``.ko``.

Profile "6.1" mirrors kernel/module/main.c of Linux 6.1 on x86-64 (no
CONFIG_ARCH_WANTS_MODULES_DATA_IN_VMALLOC, so ``data_layout`` is ``core_layout``):

* ``layout_and_allocate()`` first drops SHF_ALLOC from ``.modinfo``, ``__versions`` (in
  ``rewrite_section_headers()``) and ``.data..percpu`` (allocated separately, from the per-cpu
  area), and marks ``.data..ro_after_init`` and ``__jump_table`` SHF_RO_AFTER_INIT;
* ``layout_sections()`` places SHF_ALLOC sections, in section-table order, in five passes —
  text (EXECINSTR), read-only, ro-after-init, writable, anything left — each section at
  ``ALIGN(size, sh_addralign)`` (``module_get_offset()``); with CONFIG_STRICT_MODULE_RWX the running
  size is page-aligned after each pass but the writable one (``strict_align()``). Sections whose
  name starts with ``.init`` (``module_init_section()``; ``.exit`` too without MODULE_UNLOAD) go
  to the init layout instead;
* ``layout_symtab()`` (kernel/module/kallsyms.c) appends the core kallsyms copy: the symbols
  ``is_core_symbol()`` keeps (symbol 0, and every named symbol of a core SHF_ALLOC section — with
  KALLSYMS_ALL, not only text — or of the per-cpu section), each an Elf_Sym, their names, and one
  type byte each; then page-aligns. The full symtab, strtab, a ``struct mod_kallsyms`` and a type
  byte per symbol go to the init layout;
* after a successful init, ``do_init_module()`` frees the init layout and sets its size to 0, so
  /proc/modules (``m_show()``: init + core size) shows the core layout's size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .elf import SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHN_UNDEF, ElfFile
from .module import read_image

SHF_RO_AFTER_INIT = 0x00200000  # include/uapi/linux/elf.h
PAGE_SIZE = 4096


@dataclass(frozen=True)
class Profile:
    """Per-kernel-version layout behaviour, as data."""

    name: str
    strict_module_rwx: bool = True  # CONFIG_STRICT_MODULE_RWX
    kallsyms: bool = True  # CONFIG_KALLSYMS
    kallsyms_all: bool = True  # CONFIG_KALLSYMS_ALL
    module_unload: bool = True  # CONFIG_MODULE_UNLOAD
    page_size: int = PAGE_SIZE
    sizeof_mod_kallsyms: int = 32  # struct mod_kallsyms on 64-bit: 3 pointers + an int, padded
    alignof_mod_kallsyms: int = 8
    verified: bool = False  # checked against /proc/modules of a real kernel
    mod_mem: bool = False  # 6.4+: mod_mem[] types allocated (and page-aligned) one by one
    source: str = ""


PROFILES = {
    "6.1": Profile("6.1", verified=True,
                   source="kernel/module/main.c layout_sections(), kallsyms.c layout_symtab() of v6.1; "
                          "checked on linux-image-6.1.0-56-amd64 (tests/test_footprint.py)"),
    # 6.4 split the core/init layouts into mod_mem[] types (commit ac3b43283923, "module: replace
    # module_layout with module_memory"): no strict_align() between passes any more, each type is
    # PAGE_ALIGNed on its own in module_memory_alloc(), kallsyms' core copy goes to MOD_DATA.
    "6.4": Profile("6.4", mod_mem=True, verified=True,
                   source="kernel/module/main.c __layout_sections(), module_memory_alloc(); kallsyms.c of "
                          "v6.12; checked on linux-image-6.12.117+deb12-amd64 (tests/test_footprint.py)"),
}


@dataclass
class Footprint:
    name: str
    path: str
    size: int  # what /proc/modules shows after a successful init
    by_type: dict[str, int] = field(default_factory=dict)
    init_size: int = 0  # the init layout (freed after init)
    core_symbols: int = 0
    percpu: int = 0  # .data..percpu, allocated from the per-cpu area (not in /proc/modules)
    kallsyms_bytes: int = 0  # the core kallsyms copy (Elf_Syms, names, type bytes), before alignment

    @property
    def pages(self) -> int:
        return (self.size + PAGE_SIZE - 1) // PAGE_SIZE

    def to_json(self) -> dict:
        return {"name": self.name, "path": self.path, "size": self.size, "by_type": dict(self.by_type),
                "pages": self.pages, "init_size": self.init_size, "core_symbols": self.core_symbols,
                "kallsyms_bytes": self.kallsyms_bytes, "percpu": self.percpu}


def _align(x: int, a: int) -> int:
    a = a or 1
    return (x + a - 1) // a * a


class _Layout:
    def __init__(self, profile: Profile) -> None:
        self.p = profile
        self.size = 0

    def get_offset(self, align: int, size: int) -> int:
        """module_get_offset() (arch_mod_section_prepend() is 0 on x86)."""
        ret = _align(self.size, align)
        self.size = ret + size
        return ret

    def strict_align(self) -> None:
        if self.p.strict_module_rwx:
            self.size = _align(self.size, self.p.page_size)


def module_footprint(path: str, profile: Profile | str = "6.1", name: str | None = None) -> Footprint:
    """The memory the kernel of ``profile`` gives the module at ``path`` (.ko, .ko.xz, ...)."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    buf, _fmt, _size = read_image(path)
    try:
        return layout(ElfFile(buf), prof, path, name)
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def layout(elf: ElfFile, prof: Profile, path: str = "", name: str | None = None) -> Footprint:
    secs = elf.sections
    flags = [s.flags for s in secs]
    index = {s.name: s.index for s in secs}
    # layout_and_allocate() / rewrite_section_headers()
    for nm in ("__versions", ".modinfo", ".data..percpu"):
        if nm in index:
            flags[index[nm]] &= ~SHF_ALLOC
    for nm in (".data..ro_after_init", "__jump_table"):
        if nm in index:
            flags[index[nm]] |= SHF_RO_AFTER_INIT

    def is_init(sname: str) -> bool:
        return sname.startswith(".init") or (not prof.module_unload and sname.startswith(".exit"))

    if prof.mod_mem:
        return _layout_mod_mem(elf, prof, secs, flags, index, is_init, path, name)
    masks = [  # (required, forbidden), ARCH_SHF_SMALL = 0 on x86
        (SHF_EXECINSTR | SHF_ALLOC, 0),
        (SHF_ALLOC, SHF_WRITE),
        (SHF_RO_AFTER_INIT | SHF_ALLOC, 0),
        (SHF_WRITE | SHF_ALLOC, 0),
        (SHF_ALLOC, 0),
    ]
    kinds = ("text", "rodata", "ro_after_init", "data", "other")
    placed: dict[int, bool] = {}  # section index -> in init layout
    core, init = _Layout(prof), _Layout(prof)
    by_type: dict[str, int] = {}
    for want_init, lay in ((False, core), (True, init)):
        for m, (req, forbid) in enumerate(masks):
            start = lay.size
            for s in secs[1:]:
                f = flags[s.index]
                if (f & req) != req or (f & forbid) or s.index in placed or is_init(s.name) != want_init:
                    continue
                lay.get_offset(s.addralign, s.size)
                placed[s.index] = want_init
            if m != 3:  # strict_align() after every pass but the writable one
                lay.strict_align()
            if not want_init:
                by_type[kinds[m]] = by_type.get(kinds[m], 0) + lay.size - start
    # layout_symtab()
    percpu = secs[index[".data..percpu"]].size if ".data..percpu" in index else 0
    ndst = kallsyms_bytes = 0
    kallsyms = _core_kallsyms(elf, secs, flags, index, placed, prof)
    if kallsyms is not None:
        symtab, ndst, core_bytes, nsrc = kallsyms
        kallsyms_bytes = core_bytes
        start = core.size
        core.size = _align(core.size, symtab.addralign) + core_bytes  # info->symoffs, then the copy
        core.strict_align()
        by_type["kallsyms"] = core.size - start
        # the full tables, for init only
        init.get_offset(symtab.addralign, symtab.size)
        strsec = elf.section_at(symtab.link)
        init.get_offset(strsec.addralign, strsec.size)
        init.size = _align(init.size, prof.alignof_mod_kallsyms) + prof.sizeof_mod_kallsyms + nsrc
        init.strict_align()
    mod_name = name or os.path.basename(path).split(".ko")[0].replace("-", "_")
    return Footprint(mod_name, path, core.size, by_type, init.size, ndst, percpu, kallsyms_bytes)


def _core_kallsyms(elf: ElfFile, secs, flags, index, placed, prof: Profile):
    """layout_symtab()'s count: (symtab section, symbols kept, bytes of the core copy — Elf_Syms,
    names, type bytes —, symbols in all), or None without a symtab or CONFIG_KALLSYMS."""
    symtab = elf.symtab()
    if not prof.kallsyms or symtab is None:
        return None
    pcpu = index.get(".data..percpu", 0)
    mi = elf.section(".modinfo")  # a livepatch module keeps every symbol
    livepatch = mi is not None and b"livepatch=Y" in elf.data(mi).split(b"\0")
    data = elf.data(symtab)
    strtab = elf.data(elf.section_at(symtab.link))
    symsize = 24 if elf.is64 else 16
    nsrc = len(data) // symsize
    ndst = strtab_size = 0
    for i in range(nsrc):
        st_name, _val, _sz, _info, shndx = elf.symbol_at(data, i)
        if i == 0 or livepatch or _is_core_symbol(st_name, shndx, len(secs), flags, placed, pcpu, prof):
            end = strtab.find(b"\0", st_name)
            strtab_size += (end if end >= 0 else len(strtab)) - st_name + 1  # strlen() + 1
            ndst += 1
    return symtab, ndst, ndst * symsize + strtab_size + ndst, nsrc


def _layout_mod_mem(elf, prof: Profile, secs, flags, index, is_init, path, name) -> Footprint:
    """6.4+: __layout_sections() into mod_mem[] types, layout_symtab(), module_memory_alloc()."""
    masks = [(SHF_EXECINSTR | SHF_ALLOC, 0), (SHF_ALLOC, SHF_WRITE), (SHF_RO_AFTER_INIT | SHF_ALLOC, 0),
             (SHF_WRITE | SHF_ALLOC, 0), (SHF_ALLOC, 0)]
    core_types = ("text", "rodata", "ro_after_init", "data", "data")
    init_types = ("init_text", "init_rodata", None, "init_data", "init_data")
    size = dict.fromkeys(("text", "data", "rodata", "ro_after_init", "init_text", "init_data", "init_rodata"), 0)

    def get_offset(t: str, align: int, n: int) -> None:  # module_get_offset_and_type()
        size[t] = _align(size[t], align) + n

    placed: dict[int, bool] = {}
    for want_init, types in ((False, core_types), (True, init_types)):
        for m, (req, forbid) in enumerate(masks):
            t = types[m]
            for s in secs[1:]:
                f = flags[s.index]
                if (f & req) != req or (f & forbid) or s.index in placed or is_init(s.name) != want_init:
                    continue
                if t is None:  # WARN_ON_ONCE(type == MOD_INVALID): skipped
                    continue
                get_offset(t, s.addralign, s.size)
                placed[s.index] = want_init
    ndst = 0
    kallsyms = _core_kallsyms(elf, secs, flags, index, placed, prof)
    kallsyms_bytes = 0
    if kallsyms is not None:
        symtab, ndst, core_bytes, nsrc = kallsyms
        get_offset("init_data", symtab.addralign, symtab.size)
        before = size["data"]
        size["data"] = _align(size["data"], symtab.addralign) + core_bytes
        kallsyms_bytes = size["data"] - before
        strsec = elf.section_at(symtab.link)
        get_offset("init_data", strsec.addralign, strsec.size)
        size["init_data"] = _align(size["init_data"], prof.alignof_mod_kallsyms) + prof.sizeof_mod_kallsyms + nsrc
    alloc = {t: _align(n, prof.page_size) for t, n in size.items()}  # module_memory_alloc(): PAGE_ALIGN
    by_type = {t: alloc[t] for t in ("text", "rodata", "ro_after_init", "data")}  # kallsyms is in "data"
    percpu = secs[index[".data..percpu"]].size if ".data..percpu" in index else 0
    mod_name = name or os.path.basename(path).split(".ko")[0].replace("-", "_")
    return Footprint(mod_name, path, sum(by_type.values()), by_type,
                     sum(alloc[t] for t in ("init_text", "init_data", "init_rodata")), ndst, percpu, kallsyms_bytes)


def _is_core_symbol(st_name: int, shndx: int, shnum: int, flags, placed, pcpu: int, prof: Profile) -> bool:
    """kernel/module/kallsyms.c:is_core_symbol()."""
    if shndx == SHN_UNDEF or shndx >= shnum or not st_name:
        return False
    if prof.kallsyms_all and pcpu and shndx == pcpu:
        return True
    f = flags[shndx]
    if not f & SHF_ALLOC or (not prof.kallsyms_all and not f & SHF_EXECINSTR):
        return False
    # a section the layout did not place keeps sh_entsize = ~0UL: init in 6.1 (the top bit), not an
    # init type in 6.4+ (but such a section has no SHF_ALLOC, so it never gets here)
    return shndx in placed and not placed[shndx] if not prof.mod_mem else not placed.get(shndx, False)
