"""Resolving a module's imports against a kernel and a set of modules (``kmodsim ldd``).

The index and its owner policies are :mod:`kmodsim.symbols`'; ldd resolves as the kernel does
(:data:`kmodsim.symbols.LOADER`: vmlinux first, then the modules in the order given, first match
by name; GPL flag and namespace checked after the match) and lists every other exporter.
"""

from __future__ import annotations

from typing import NamedTuple

from .kernel import check_version, has_behaviour, license_is_gpl_compatible, release_version
from .module import Module
from .symbols import LOADER, Provider, SymbolIndex, namespace_problem

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
    version = release_version(index.release) if index.release else None
    module_ns = has_behaviour("module_namespaces", version or release_version(module.vermagic))
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
