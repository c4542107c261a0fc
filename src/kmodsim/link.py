"""Resolving a module's imports against a kernel and a set of modules (``kmodsim ldd``).

The index and its owner policies are :mod:`kmodsim.symbols`'; ldd resolves as the kernel does
(:data:`kmodsim.symbols.LOADER`: vmlinux first, then the modules in the order given, first match
by name; GPL flag and namespace checked after the match) and lists every other exporter.
"""

from __future__ import annotations

from typing import NamedTuple

from .errors import PathError
from .kernel import Kernel, check_version, license_is_gpl_compatible
from .module import DEFAULT_MAX_SIZE, Module
from .symbols import LOADER, Provider, SymbolIndex, namespace_problem
from .target import has, release_version

__all__ = ["Provider", "Resolution", "SymbolIndex", "resolve"]


class Resolution(NamedTuple):
    symbol: str
    expected_crc: int | None  # from the module's __versions
    weak: bool
    provider: Provider | None
    others: tuple[Provider, ...]  # further exporters of the same name
    crc: str  # check_version() verdict, "" when unresolved
    gpl_ok: bool  # False: GPL-only export, module license not GPL-compatible
    namespace_ok: bool  # False: namespaced export the module may not use (symbols.namespace_problem)

    @property
    def ok(self) -> bool:
        return (self.provider is not None or self.weak) and self.crc != "mismatch" and self.gpl_ok \
            and self.namespace_ok


def resolve(module: Module, index: SymbolIndex) -> list[Resolution]:
    """Resolve every import of ``module`` as the kernel would (:data:`LOADER`: first provider
    wins). The namespace rules are the target's: its release (else the module's vermagic) decides
    whether ``module:`` namespaces are module-only (6.16+)."""
    versions = dict(module.versions) if module.versions else None
    gpl_ok_license = license_is_gpl_compatible(module.license)
    imported_ns = set(module.import_ns)
    version = release_version(index.release) or release_version(module.vermagic)
    module_ns = version is not None and has("module_namespaces", version)
    out = []
    for imp in module.imports:
        provs = index.providers(imp.name, exclude=module.name)
        p = LOADER.pick(provs)
        if p is None:
            out.append(Resolution(imp.name, imp.crc, imp.weak, None, (), "", True, True))
            continue
        out.append(Resolution(
            imp.name, imp.crc, imp.weak, p, tuple(provs[1:]), check_version(versions, imp.name, p.crc),
            gpl_ok_license or not p.gpl,
            not namespace_problem(p.namespace, module.name, imported_ns, module_ns)))
    return out


class LinkError(PathError):
    """A module that cannot be resolved against the kernel at all (another machine); ``str()``
    names the file."""


class LddRequest(NamedTuple):
    """``kmodsim ldd``: a module file, the target kernel, and optionally a tree of providers."""

    file: str
    kernel_path: str
    modules_dir: str | None = None
    jobs: int | None = None
    config_paths: list[str] | None = None
    max_size: int = DEFAULT_MAX_SIZE


class LddResult(NamedTuple):
    module: Module
    kernel: Kernel
    resolutions: list[Resolution]
    vermagic_ok: bool | None  # same_magic(); None when the kernel's vermagic is unknown
    ignored: list[str]  # .ko.gz files of the --modules tree (depmod passes over them)
    problems: list[tuple[str, str]]  # (path, problem) of the --modules tree's bad files

    @property
    def clean(self) -> bool:
        """Every import resolves cleanly and the vermagic matches."""
        return all(r.ok for r in self.resolutions) and self.vermagic_ok is not False


def ldd(req: LddRequest) -> LddResult:
    """Resolve the imports of ``req.file`` as the kernel would. Raises :class:`kmodsim.Error` for an
    input that stops the run (the kernel, the module, a machine mismatch); a bad file of the
    ``--modules`` tree is a problem of the result and the rest is still used."""
    from .elf import MACHINE_NAMES
    from .kernel import same_magic
    from .module import read_module

    kernel = Kernel.load(req.kernel_path)
    m = read_module(req.file, req.max_size)
    if kernel.machine is not None and m.machine != kernel.machine:
        raise LinkError(req.file, f"ELF machine {m.machine_name} does not match the kernel's "
                                  f"({MACHINE_NAMES.get(kernel.machine, kernel.machine)})")
    modules: list[Module] = []
    ignored: list[str] = []
    problems: list[tuple[str, str]] = []
    if req.modules_dir:
        from .tree import scan

        res = scan([req.modules_dir], jobs=req.jobs, max_size=req.max_size, config_paths=req.config_paths)
        ignored = list(res.ignored)
        problems = [(e.path, e.problem) for e in res.errors]
        modules = res.modules
    index = SymbolIndex.build(kernel, modules, symvers_modules=not req.modules_dir)
    vermagic_ok = None
    if kernel.vermagic is not None:
        vermagic_ok = same_magic(m.vermagic, kernel.vermagic, bool(m.versions))
    return LddResult(m, kernel, resolve(m, index), vermagic_ok, ignored, problems)
