"""What the loader reads from a module file, in the form the model needs (kmodsim.module plus the
few facts it does not keep: init/exit functions, whether ``__versions`` exists, symbol-table order)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..elf import SHN_UNDEF, ElfError, ElfFile
from ..module import Export, Module, ModuleError, parse_module, read_image


@dataclass(frozen=True)
class ModuleImage:
    path: str
    name: str
    vermagic: str | None  # None: no vermagic= in .modinfo
    license: str | None
    intree: bool
    staging: bool
    has_versions: bool  # a __versions section exists (info->index.vers != 0)
    versions: dict[str, int]
    imports: tuple[tuple[str, bool], ...]  # (name, weak), symbol-table order (simplify_symbols)
    exports: tuple[Export, ...]  # mod->syms (sorted) then mod->gpl_syms (sorted)
    import_ns: tuple[str, ...]
    params: dict[str, str]  # name -> parmtype
    has_init: bool
    has_exit: bool
    signed: bool
    machine: int
    depends: tuple[str, ...]

    def size(self, footprint_profile: str) -> int | None:
        """What /proc/modules shows once loaded (kmodsim.footprint), None if unreadable."""
        fp = self.footprint(footprint_profile)
        return None if fp is None else fp.size

    def footprint(self, footprint_profile: str):
        """The module's :class:`kmodsim.footprint.Footprint` (core and init sizes), None if unreadable."""
        key = (id(self), footprint_profile)  # images live in _cache for the process: id() is stable
        if key not in _sizes:
            from ..elf import ElfError
            from ..footprint import module_footprint
            from ..module import ModuleError

            try:
                _sizes[key] = module_footprint(self.path, footprint_profile)
            except (ModuleError, ElfError):
                _sizes[key] = None
        return _sizes[key]


_sizes: dict[tuple[int, str], object] = {}  # -> Footprint or None
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
            mod = parse_module(buf, path, comp, size)
            img = image_of(mod, ElfFile(buf))
        except ElfError as exc:
            raise ModuleError(path, str(exc)) from None
        _cache[key] = img
    return img


def image_of(mod: Module, elf: ElfFile) -> ModuleImage:
    imports: list[tuple[str, bool]] = []
    defined: set[str] = set()
    for s in elf.symbols():
        if not s.name:
            continue
        if s.shndx == SHN_UNDEF:
            imports.append((s.name, s.bind == 2))
        elif s.name in ("init_module", "cleanup_module"):
            defined.add(s.name)
    plain = sorted((e for e in mod.exports if not e.gpl), key=lambda e: e.name.encode())
    gpl = sorted((e for e in mod.exports if e.gpl), key=lambda e: e.name.encode())
    vm = mod.info("vermagic")
    lic = mod.info("license")
    return ModuleImage(
        path=mod.path, name=mod.name, vermagic=vm[0] if vm else None, license=lic[0] if lic else None,
        intree=bool(mod.info("intree")), staging=bool(mod.info("staging")),
        has_versions=elf.section("__versions") is not None, versions=dict(mod.versions),
        imports=tuple(imports), exports=tuple(plain + gpl), import_ns=tuple(mod.import_ns),
        params={p.name: p.type for p in mod.params}, has_init="init_module" in defined,
        has_exit="cleanup_module" in defined, signed=mod.signed, machine=mod.machine,
        depends=tuple(mod.depends))
