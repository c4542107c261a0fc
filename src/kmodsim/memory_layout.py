"""What a module costs in RAM: the kernel's module memory layout, computed from the ``.ko``.

Layout "6.1" mirrors kernel/module/main.c of Linux 6.1 on x86-64 (no
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
from itertools import repeat
from operator import sub
from typing import TYPE_CHECKING, NamedTuple

from .elf import SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHN_UNDEF, ElfError, ElfFile
from .errors import Error
from .module import DEFAULT_MAX_SIZE, FileImage, Module, ModuleError, open_image, parse_view, read_image

_new = tuple.__new__  # a NamedTuple from a tuple at C speed

if TYPE_CHECKING:
    from .target import Target

class FootprintError(Error):
    """A footprint that cannot be computed (a target without a release: the layout depends on it)."""


SHF_RO_AFTER_INIT = 0x00200000  # include/uapi/linux/elf.h
PAGE_SIZE = 4096


@dataclass(frozen=True)
class Layout:
    """The memory layout model of one target: which of the two layouts (``mod_mem``, v6.4's
    ``ac3b43283923``: :data:`kmodsim.target.BEHAVIOUR`) and the Kconfig options it reads (from the
    target's ``.config``: :data:`kmodsim.target.KCONFIG`). ``name`` is the first release of the
    layout ("6.1" for the core/init layouts, "6.4" for mod_mem[]); :func:`layout_of` builds it."""

    name: str
    mod_mem: bool = False  # 6.4+: mod_mem[] types allocated (and page-aligned) one by one
    strict_module_rwx: bool = True  # CONFIG_STRICT_MODULE_RWX
    kallsyms: bool = True  # CONFIG_KALLSYMS
    kallsyms_all: bool = True  # CONFIG_KALLSYMS_ALL
    module_unload: bool = True  # CONFIG_MODULE_UNLOAD
    page_size: int = PAGE_SIZE
    sizeof_mod_kallsyms: int = 32  # struct mod_kallsyms on 64-bit: 3 pointers + an int, padded
    alignof_mod_kallsyms: int = 8


# Where each layout was checked against /proc/modules of a real kernel (tests/test_footprint.py).
SOURCES = {
    "6.1": "kernel/module/main.c layout_sections(), kallsyms.c layout_symtab() of v6.1; "
           "checked on linux-image-6.1.0-56-amd64 (tests/test_footprint.py)",
    "6.4": "kernel/module/main.c __layout_sections(), module_memory_alloc(); kallsyms.c of "
           "v6.12; checked on linux-image-6.12.117+deb12-amd64 (tests/test_footprint.py)",
}


# Layout fields that are .config options (kmodsim.target.KCONFIG)
CONFIG_FIELDS = ("strict_module_rwx", "kallsyms", "kallsyms_all", "module_unload")


def layout_of(target: Target, name: str | None = None) -> Layout:
    """The layout of a target: mod_mem[] from the release :data:`kmodsim.target.BEHAVIOUR` gives
    (v6.4, ac3b43283923) — or the layout ``name`` (the loader's ``--profile``) — the Kconfig
    options from its ``.config`` (Debian's without one)."""
    from .target import FACTS, series_name

    if name is not None:
        mod_mem = named_layout(name).mod_mem
    else:
        mod_mem = target.has("mod_mem")
        name = series_name(FACTS["mod_mem"].since) if mod_mem else "6.1"
    return Layout(name, mod_mem, **{f: target.kconfig(f) for f in CONFIG_FIELDS})


def footprint_layout(target: Target) -> Layout:
    """:func:`layout_of` a target whose release is known: the release chooses the layout, so a
    target without one (a Module.symvers alone) has no answer. Raises :class:`FootprintError`
    naming the kernel."""
    if not target.release:
        where = target.kernel.source if target.kernel is not None else "target"
        raise FootprintError(f"{where}: no footprint model for kernel (unknown release) yet "
                             f"(give a headers directory, a vmlinux or a vmlinuz)")
    return layout_of(target)


def named_layout(name: str) -> Layout:
    """A layout by its name ("6.1", "6.4"), with Debian's configuration (kmodsim.target.KCONFIG)."""
    from .target import KCONFIG, has, release_version

    v = release_version(name)
    if name not in SOURCES or v is None:
        raise ValueError(f"unknown layout {name!r} (known: {', '.join(SOURCES)})")
    return Layout(name, has("mod_mem", v), **{f: KCONFIG[f].debian for f in CONFIG_FIELDS})


def _layout(profile: Layout | str) -> Layout:
    return named_layout(profile) if isinstance(profile, str) else profile


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


def _align(x: int, a: int) -> int:
    a = a or 1
    return (x + a - 1) // a * a


# ---------------------------------------------------------------------------------------------
# What the layout needs from a module: its sections and, for kallsyms, its symbols
# ---------------------------------------------------------------------------------------------

class Sec(NamedTuple):
    name: str
    flags: int
    size: int
    addralign: int


class Sym(NamedTuple):
    named: bool  # st_name != 0 (is_core_symbol() tests the offset, not the string)
    name_len: int  # strlen() of the name
    shndx: int


@dataclass
class LayoutInput:
    """A module as layout_sections()/layout_symtab() see it; built from a .ko (:func:`input_of`)
    or predicted for modules linked together (:func:`merge_inputs`)."""

    sections: list[Sec]  # index 0 is the NULL section
    symbols: list[Sym]  # index 0 is the null symbol
    sym_size: int = 24  # sizeof(Elf_Sym)
    symtab: Sec | None = None
    strtab: Sec | None = None
    livepatch: bool = False  # modinfo livepatch=Y: every symbol is kept


def input_of(elf: ElfFile) -> LayoutInput:
    """What layout_sections()/layout_symtab() read of a module, from its (strict) ELF view: the
    section table's columns, and the symbol table's st_name and st_shndx columns (every whole
    entry; a name runs to its NUL, or to the end of the string table)."""
    secs = list(map(_new, repeat(Sec), zip(elf.sh_names, elf.sh_flags, elf.sh_size, elf.sh_addralign, strict=True)))
    symtab = elf.symtab()
    syms: list[Sym] = []
    strsec = None
    symsize = 24 if elf.is64 else 16
    if symtab is not None:
        data = elf.data(symtab)
        strsec = elf.section_at(symtab.link)
        strtab = elf.data(strsec)
        st_name, _info, st_shndx, _value = elf.symbol_columns(data[:len(data) - len(data) % symsize], values=False)
        ends = list(map(strtab.find, repeat(b"\0"), st_name))
        if -1 in ends:
            ends = [len(strtab) if e < 0 else e for e in ends]
        syms = list(map(_new, repeat(Sym), zip(map(bool, st_name), map(sub, ends, st_name), st_shndx, strict=True)))
    mi = elf.section(".modinfo")  # a livepatch module keeps every symbol
    livepatch = mi is not None and b"livepatch=Y" in elf.data(mi).split(b"\0")
    return LayoutInput(
        secs, syms, symsize,
        None if symtab is None else Sec(symtab.name, symtab.flags, symtab.size, symtab.addralign),
        None if strsec is None else Sec(strsec.name, strsec.flags, strsec.size, strsec.addralign),
        livepatch)


def read_input(path: str, max_size: int = DEFAULT_MAX_SIZE) -> tuple[Module, LayoutInput]:
    """A module file read once: its :class:`~kmodsim.module.Module` and what the layout needs of
    it, from one parse of the image. Raises :class:`~kmodsim.module.ModuleError` (one line)."""
    buf, fmt, size, _key = open_image(path, max_size)
    try:
        rec, elf = parse_view(buf, path, fmt, size)
        return Module(rec), input_of(elf)
    except ElfError as exc:
        raise ModuleError(path, str(exc)) from None
    finally:
        if isinstance(buf, FileImage):
            buf.close()


def module_footprint(path: str, profile: Layout | str = "6.1", name: str | None = None) -> Footprint:
    """The memory the kernel of ``profile`` gives the module at ``path`` (.ko, .ko.xz, ...)."""
    buf, _fmt, _size = read_image(path)
    try:
        inp = input_of(ElfFile(buf))
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()
    return layout(inp, profile, path, name)


# ---------------------------------------------------------------------------------------------
# The layout
# ---------------------------------------------------------------------------------------------

MASKS = [  # layout_sections(): (required, forbidden) flags per pass; ARCH_SHF_SMALL is 0 on x86
    (SHF_EXECINSTR | SHF_ALLOC, 0),
    (SHF_ALLOC, SHF_WRITE),
    (SHF_RO_AFTER_INIT | SHF_ALLOC, 0),
    (SHF_WRITE | SHF_ALLOC, 0),
    (SHF_ALLOC, 0),
]


def layout(inp: LayoutInput, profile: Layout | str = "6.1", path: str = "", name: str | None = None,
           keep_versions: bool = False) -> Footprint:
    """The module's memory. ``keep_versions``: a load with MODULE_INIT_IGNORE_MODVERSIONS
    (``modprobe -f``, ``--force-modversion``), where setup_load_info() "pretends no __versions
    section" (``info->index.vers = 0``), so rewrite_section_headers() clears SHF_ALLOC of section 0
    instead and ``__versions`` is laid out with the read-only data (v6.1 and v6.12 alike; seen on
    Debian's 6.1.0-54 under QEMU: adfs of 6.1.0-53 takes 40960 bytes with -f, 36864 without)."""
    prof = _layout(profile)
    secs = inp.sections
    flags = [s.flags for s in secs]
    index: dict[str, int] = {}
    for i, s in enumerate(secs):
        index.setdefault(s.name, i)
    # layout_and_allocate() / rewrite_section_headers()
    for nm in ((".modinfo", ".data..percpu") if keep_versions else ("__versions", ".modinfo", ".data..percpu")):
        if nm in index:
            flags[index[nm]] &= ~SHF_ALLOC
    for nm in (".data..ro_after_init", "__jump_table"):
        if nm in index:
            flags[index[nm]] |= SHF_RO_AFTER_INIT

    def is_init(sname: str) -> bool:  # module_init_layout_section()
        return sname.startswith(".init") or (not prof.module_unload and sname.startswith(".exit"))

    # section index -> (in the init layout?, core type) for every SHF_ALLOC section placed
    placed: dict[int, bool] = {}
    core_types: tuple[str | None, ...]
    init_types: tuple[str | None, ...]
    if prof.mod_mem:
        core_types = ("text", "rodata", "ro_after_init", "data", "data")
        init_types = ("init_text", "init_rodata", None, "init_data", "init_data")
    else:  # one core and one init layout; "other" is the last pass (ARCH_SHF_SMALL on other arches)
        core_types = ("text", "rodata", "ro_after_init", "data", "other")
        init_types = ("init",) * 5
    size: dict[str, int] = {}

    def get_offset(t: str, align: int, n: int) -> None:  # module_get_offset()
        size[t] = _align(size.get(t, 0), align) + n

    by_type: dict[str, int] = {}
    core_total = init_total = 0
    for want_init, types in ((False, core_types), (True, init_types)):
        for m, _ in enumerate(MASKS):
            t = types[m]
            req, forbid = MASKS[m]
            for i in range(1, len(secs)):
                f = flags[i]
                if (f & req) != req or (f & forbid) or i in placed or is_init(secs[i].name) != want_init:
                    continue
                if t is None:  # 6.4+: WARN_ON_ONCE(type == MOD_INVALID), left unplaced
                    continue
                if prof.mod_mem:
                    get_offset(t, secs[i].addralign, secs[i].size)
                else:  # 6.1: one running size per layout, strict_align() after passes 0, 1, 2, 4
                    cur = init_total if want_init else core_total
                    cur = _align(cur, secs[i].addralign) + secs[i].size
                    if want_init:
                        init_total = cur
                    else:
                        by_type[t] = by_type.get(t, 0) + cur - core_total
                        core_total = cur
                placed[i] = want_init
            if not prof.mod_mem and m != 3 and prof.strict_module_rwx:
                if want_init:
                    init_total = _align(init_total, prof.page_size)
                else:
                    assert t is not None  # 6.1's core layout types are all named
                    by_type[t] = by_type.get(t, 0) + _align(core_total, prof.page_size) - core_total
                    core_total = _align(core_total, prof.page_size)

    # layout_symtab(): the core copy of kallsyms, the full tables in init
    ndst = kallsyms_bytes = 0
    if prof.kallsyms and inp.symtab is not None:
        assert inp.strtab is not None  # input_of()/merge_inputs() set both or neither
        pcpu = index.get(".data..percpu", 0)
        strtab_size = 0
        for i, sym in enumerate(inp.symbols):
            if i == 0 or inp.livepatch or _is_core_symbol(sym, len(secs), flags, placed, pcpu, prof):
                strtab_size += sym.name_len + 1
                ndst += 1
        kallsyms_bytes = ndst * inp.sym_size + strtab_size + ndst  # Elf_Syms, names, type bytes
        nsrc = len(inp.symbols)
        init_tail = prof.sizeof_mod_kallsyms + nsrc
        if prof.mod_mem:
            get_offset("init_data", inp.symtab.addralign, inp.symtab.size)
            size["data"] = _align(size.get("data", 0), inp.symtab.addralign) + kallsyms_bytes
            get_offset("init_data", inp.strtab.addralign, inp.strtab.size)
            size["init_data"] = _align(size["init_data"], prof.alignof_mod_kallsyms) + init_tail
        else:
            start = core_total
            core_total = _align(core_total, inp.symtab.addralign) + kallsyms_bytes  # info->symoffs...
            if prof.strict_module_rwx:
                core_total = _align(core_total, prof.page_size)
            by_type["kallsyms"] = core_total - start
            init_total = _align(init_total, inp.symtab.addralign) + inp.symtab.size
            init_total = _align(init_total, inp.strtab.addralign) + inp.strtab.size
            init_total = _align(init_total, prof.alignof_mod_kallsyms) + init_tail
            if prof.strict_module_rwx:
                init_total = _align(init_total, prof.page_size)

    if prof.mod_mem:  # module_memory_alloc(): each type PAGE_ALIGNed on its own
        alloc = {t: _align(n, prof.page_size) for t, n in size.items()}
        by_type = {t: alloc.get(t, 0) for t in ("text", "rodata", "ro_after_init", "data")}  # kallsyms in data
        core_total = sum(by_type.values())
        init_total = sum(alloc.get(t, 0) for t in ("init_text", "init_data", "init_rodata"))
    percpu = secs[index[".data..percpu"]].size if ".data..percpu" in index else 0
    mod_name = name or os.path.basename(path).split(".ko")[0].replace("-", "_")
    return Footprint(mod_name, path, core_total, by_type, init_total, ndst, percpu, kallsyms_bytes)


def _is_core_symbol(sym: Sym, shnum: int, flags: list[int], placed: dict[int, bool], pcpu: int, prof: Layout) -> bool:
    """kernel/module/kallsyms.c:is_core_symbol()."""
    if sym.shndx == SHN_UNDEF or sym.shndx >= shnum or not sym.named:
        return False
    if prof.kallsyms_all and pcpu and sym.shndx == pcpu:
        return True
    f = flags[sym.shndx]
    if not f & SHF_ALLOC or (not prof.kallsyms_all and not f & SHF_EXECINSTR):
        return False
    # A section the layout did not place keeps sh_entsize = ~0UL: that has the init bit set in 6.1;
    # in 6.4+ it decodes to no init type (such a section is unallocated anyway, unless MOD_INVALID).
    if prof.mod_mem:
        return not placed.get(sym.shndx, False)
    return sym.shndx in placed and not placed[sym.shndx]


# ---------------------------------------------------------------------------------------------
# What if modules were linked into one
# ---------------------------------------------------------------------------------------------

# Sections every .ko has exactly once, whatever it links: the struct module and the build-salt
# notes of its .mod.o, and the linker's build-id note (checked on kbuild builds: tests/kbuild/merge).
SINGLETON_SECTIONS = (".gnu.linkonce.this_module", ".note.Linux", ".note.gnu.build-id")


def merge_inputs(inputs: list[LayoutInput]) -> LayoutInput:
    """The module kbuild would link from the objects of ``inputs`` (in that order): each output
    section is its input sections concatenated, each at its own alignment (the module link merges no
    strings across objects), except the once-per-module sections; the symbol table is the union,
    the once-per-module sections' symbols (``__this_module``, the ``_note_*``) counted once."""
    out: list[Sec] = [Sec("", 0, 0, 0)]
    where: dict[str, int] = {}
    symbols: list[Sym] = [Sym(False, 0, 0)]
    for inp in inputs:
        remap: dict[int, int | None] = {}
        for i, s in enumerate(inp.sections[1:], 1):
            j = where.get(s.name)
            if j is None:
                where[s.name] = j = len(out)
                out.append(s)
            elif s.name in SINGLETON_SECTIONS:
                remap[i] = None  # this member's copy does not exist in the merged module
                continue
            else:
                m = out[j]
                out[j] = Sec(m.name, m.flags, _align(m.size, s.addralign) + s.size, max(m.addralign, s.addralign))
            remap[i] = j
        for sym in inp.symbols[1:]:
            if SHN_UNDEF < sym.shndx < len(inp.sections):
                j = remap.get(sym.shndx)
                if j is None:
                    continue
                symbols.append(Sym(sym.named, sym.name_len, j))
            else:
                symbols.append(sym)  # undefined, absolute, common: not core either way
    syms = [i.symtab for i in inputs if i.symtab is not None]
    strs = [i.strtab for i in inputs if i.strtab is not None]
    symtab = Sec(".symtab", 0, len(symbols) * inputs[0].sym_size, max((s.addralign for s in syms), default=8))
    strtab = Sec(".strtab", 0, sum(s.size for s in strs), 1)
    return LayoutInput(out, symbols, inputs[0].sym_size, symtab if syms else None, strtab if strs else None,
                       any(i.livepatch for i in inputs))


@dataclass
class MergeReport:
    """``--merge``: one group of modules linked into one."""

    members: list[str]
    footprint: Footprint
    separate: int  # the members' sizes added up
    internal_exports: list[str]  # exported by a member, imported only by other members
    unused_exports: list[str]

    @property
    def delta(self) -> int:
        return self.footprint.size - self.separate


class WhatIf(NamedTuple):
    """What merging groups of modules would change (:func:`what_if`)."""

    profile: str
    modules: list[Footprint]  # each module as it is, in the order given
    merges: list[MergeReport]  # one a group
    duplicates: dict[str, list[str]]  # names exported twice across the resulting set -> exporters
    before: int  # bytes of the configuration as it is
    after: int  # ... and with every group merged


def what_if(modules: list[Module], groups: list[list[int]], profile: Layout | str,
            layout_inputs: list[LayoutInput] | None = None) -> WhatIf:
    """Merge each group (indexes into ``modules``, kmodsim Module objects) into one module and say
    what changes: each merged module's footprint, the exports that become internal, the names then
    exported twice across the resulting set (and by whom), and the RAM of both configurations.
    ``layout_inputs``: the modules' layout inputs when the caller has them (:func:`read_input`:
    each file is then not read again)."""
    prof = _layout(profile)
    inputs = {}
    for i, m in enumerate(modules):
        if layout_inputs is not None:
            inputs[i] = layout_inputs[i]
            continue
        buf, _fmt, _size = read_image(m.path)
        try:
            inputs[i] = input_of(ElfFile(buf))
        finally:
            close = getattr(buf, "close", None)
            if close is not None:
                close()
    single = {i: layout(inputs[i], prof, m.path, m.name) for i, m in enumerate(modules)}
    users: dict[str, set[int]] = {}
    for i, m in enumerate(modules):
        for imp in m.imports:
            users.setdefault(imp.name, set()).add(i)
    reports = []
    for g in groups:
        name = "+".join(modules[i].name for i in g)
        fp = layout(merge_inputs([inputs[i] for i in g]), prof, name, name)
        internal, unused = [], []
        for i in g:
            for e in modules[i].exports:
                u = users.get(e.name, set()) - {i}
                if not u:
                    unused.append(e.name)
                elif u <= set(g):
                    internal.append(e.name)
        reports.append(MergeReport([modules[i].name for i in g], fp, sum(single[i].size for i in g),
                                   sorted(internal), sorted(unused)))
    merged = {i for g in groups for i in g}
    result = [(r.footprint.name, {e.name for i in g for e in modules[i].exports}) for r, g in zip(reports, groups, strict=True)]
    result += [(modules[i].name, {e.name for e in modules[i].exports}) for i in range(len(modules)) if i not in merged]
    exporters: dict[str, list[str]] = {}
    for owner, names in result:
        for n in names:
            exporters.setdefault(n, []).append(owner)
    dups = {n: who for n, who in sorted(exporters.items()) if len(who) > 1}
    before = sum(f.size for f in single.values())
    after = sum(r.footprint.size for r in reports) + sum(single[i].size for i in range(len(modules)) if i not in merged)
    return WhatIf(prof.name, [single[i] for i in range(len(modules))], reports, dups, before, after)
