"""The symbol index: every exporter of every name, and the rules that pick one owner.

Four tools answer "who provides symbol S?" and they do not agree when two exporters share a name.
Each answer is an *owner policy* here, named after the tool and citing the code it mirrors:

===========  =============================================================================  =========
policy       rule                                                                           used by
===========  =============================================================================  =========
``LOADER``   vmlinux first, then the loaded modules; the first visible exporter wins        check, ldd, loader
             (kernel/module/main.c ``find_symbol()`` / ``find_exported_symbol_in_section()``)
``DEPMOD``   the kernel's table first, then the modules in depmod's order; a later          depmod, why
             exporter replaces an earlier one (kmod tools/depmod.c ``depmod_symbol_add()``
             through shared/hash.c ``hash_add()``, which replaces)
``MODPOST``  Module.symvers (vmlinux) first, then the modules as read; the newest export     check
             is found first (scripts/mod/modpost.c ``hash_add_symbol()`` prepends to the
             bucket ``find_symbol()`` walks), and ``sym_add_exported()`` reports the
             previous one unless the build is external and that one is not vmlinux
===========  =============================================================================  =========

The namespace rules (``MODULE_IMPORT_NS``, and the ``module:<names>`` namespaces of 6.16+) live
here too, once: :func:`namespace_problem`, used by check, ldd and the loader.

:class:`SymbolIndex` keeps the providers of each name in search order (the order they were added);
the policies read it. depmod's hot path keeps its own flat tables (bytes names, module numbers) but
fills them through :func:`last_wins` and :data:`DEPMOD_KERNEL_FAKES`, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module

__all__ = [
    "DEPMOD", "DEPMOD_KERNEL_FAKES", "LOADER", "MODPOST", "MODULE_NS_PREFIX", "OwnerPolicy", "Provider",
    "SymbolIndex", "last_wins", "module_match", "namespace_problem",
]


class Provider(NamedTuple):
    """One export of a name."""
    owner: str  # "vmlinux" or a module name
    path: str  # module file, or the Module.symvers module path, or "" for vmlinux
    gpl: bool
    namespace: str
    crc: int | None


_new = tuple.__new__  # a NamedTuple without its Python-level __new__ (thousands per run)

# ---------------------------------------------------------------------------------------------
# Owner policies
# ---------------------------------------------------------------------------------------------

class OwnerPolicy:
    """Which of the exporters of one name (in search order) owns it."""

    name = ""

    def pick(self, providers: Sequence[Provider], gplok: bool = True) -> Provider | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<owner policy {self.name}>"


class _Loader(OwnerPolicy):
    """The kernel's: kernel/module/main.c ``find_symbol()`` searches vmlinux's export tables, then
    every module on the ``modules`` list, and stops at the first match;
    ``find_exported_symbol_in_section()`` rejects a GPL-only export when the user may not use
    one (``!fsa->gplok``), and the search goes on. Since ``verify_exported_symbols()`` refuses a
    second exporter of a name, a running kernel has one exporter per name: the first loaded
    (vmlinux before any module). Namespaces are checked after the match
    (``verify_namespace_is_imported()``, :func:`namespace_problem`)."""

    name = "loader"

    def pick(self, providers: Iterable[Provider], gplok: bool = True) -> Provider | None:
        """The first visible provider; ``providers`` may be a generator in search order (the
        search stops at the match, as the kernel's does)."""
        for p in providers:
            if gplok or not p.gpl:
                return p
        return None


class _Depmod(OwnerPolicy):
    """kmod's depmod (tools/depmod.c): ``depmod_load_symvers()`` / ``depmod_load_system_map()`` add
    the kernel's symbols first (owner NULL), then ``depmod_load_modules()`` adds each module's
    exports in module order through ``depmod_symbol_add()`` -> ``hash_add()`` (shared/hash.c),
    which replaces an existing entry: the last exporter wins, silently. depmod also adds
    ``__this_module``, ``_GLOBAL_OFFSET_TABLE_`` and (when absent) ``TOC.`` as kernel symbols
    (:data:`DEPMOD_KERNEL_FAKES`). GPL flag and namespace play no part."""

    name = "depmod"

    def pick(self, providers: Sequence[Provider], gplok: bool = True) -> Provider | None:
        return providers[-1] if providers else None


class _Modpost(OwnerPolicy):
    """scripts/mod/modpost.c (6.1, 6.12): ``sym_add_exported()`` allocates a new ``struct symbol``
    for every export and ``hash_add_symbol()`` puts it at the head of its bucket (6.1: by hand;
    later through hashtable.h ``hash_add()``, an ``hlist_add_head()``), so
    ``find_symbol()`` — used by ``check_exports()`` to resolve imports — finds the newest export:
    the last one read wins (vmlinux's rows of Module.symvers are read first). Before adding,
    ``sym_add_exported()`` reports ``'<S>' exported twice. Previous export was in <owner>`` naming
    the export found so far, when the build is in-tree, or that export is vmlinux's, or it is the
    same module (:meth:`reports_duplicate`); an error since 5.19, a warning before."""

    name = "modpost"

    def pick(self, providers: Sequence[Provider], gplok: bool = True) -> Provider | None:
        return providers[-1] if providers else None

    @staticmethod
    def reports_duplicate(previous: Provider, new: Provider, external: bool) -> bool:
        """``s && (!external_module || s->module->is_vmlinux || s->module == mod)``."""
        return not external or previous.owner == "vmlinux" or previous.owner == new.owner

    def duplicate_reports(self, providers: Sequence[Provider], external: bool) -> list[tuple[Provider, Provider]]:
        """(new, previous) for each "exported twice" modpost prints for one name, in read order."""
        return [(p, providers[i - 1]) for i, p in enumerate(providers)
                if i and self.reports_duplicate(providers[i - 1], p, external)]


LOADER = _Loader()
DEPMOD: OwnerPolicy = _Depmod()
MODPOST = _Modpost()

# tools/depmod.c depmod_load_symvers()/depmod_load_system_map(): names depmod treats as the kernel's
# whatever the symbol file says ("TOC." only when the file has none)
DEPMOD_KERNEL_FAKES: tuple[tuple[bytes, bool], ...] = (
    (b"__this_module", True), (b"_GLOBAL_OFFSET_TABLE_", True), (b"TOC.", False))


def last_wins(table: dict[Any, Any], names: Iterable[Any], owner: object) -> None:
    """:data:`DEPMOD`'s rule on a flat table (name -> owner): ``owner`` replaces any earlier
    exporter of each of ``names`` (``hash_add()``). At C speed: depmod's hot path."""
    table.update(zip(names, repeat(owner)))


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------

class SymbolIndex:
    """Every exporter of every name, in the order added (the search order: vmlinux, then modules in
    the order given). :meth:`owner` applies a policy; :meth:`providers` lists them all."""

    __slots__ = ("by_name", "release")

    def __init__(self) -> None:
        self.by_name: dict[str, list[Provider]] = {}
        self.release = ""  # the release of the kernel whose exports were added (its rules apply)

    def add(self, name: str, p: Provider) -> None:
        self.by_name.setdefault(name, []).append(p)

    def add_kernel(self, kernel: Kernel) -> None:
        """vmlinux's exports (from Module.symvers, vmlinux or its image)."""
        self.release = kernel.release or self.release
        by_name = self.by_name
        for k in kernel.exports.values():
            by_name.setdefault(k.name, []).append(_new(Provider, ("vmlinux", "", k.gpl, k.namespace, k.crc)))

    def add_module(self, m: Module) -> None:
        by_name = self.by_name
        name, path = m.name, m.path
        for e in m.exports:
            by_name.setdefault(e.name, []).append(_new(Provider, (name, path, e.gpl, e.namespace, e.crc)))

    def add_symvers_modules(self, kernel: Kernel) -> None:
        """The module rows of the kernel's Module.symvers (owner: the module's name)."""
        for row in kernel.module_rows:
            owner = row.module.rsplit("/", 1)[-1].replace("-", "_")
            self.add(row.name, Provider(owner, row.module, row.gpl, row.namespace, row.crc))

    @classmethod
    def build(cls, kernel: Kernel | None, modules: Iterable[Module] = (),
              symvers_modules: bool = False) -> SymbolIndex:
        """Index vmlinux's exports, then ``modules``; with ``symvers_modules`` also the module rows
        of the kernel's Module.symvers (used when no module tree is given)."""
        idx = cls()
        if kernel is not None:
            idx.add_kernel(kernel)
        for m in modules:
            idx.add_module(m)
        if symvers_modules and kernel is not None:
            idx.add_symvers_modules(kernel)
        return idx

    def providers(self, name: str, exclude: str = "") -> list[Provider]:
        """Every exporter of ``name`` in search order, but those named ``exclude``."""
        return [p for p in self.by_name.get(name, ()) if p.owner != exclude]

    def owner(self, name: str, policy: OwnerPolicy, exclude: str = "", gplok: bool = True) -> Provider | None:
        return policy.pick(self.providers(name, exclude), gplok)

    def duplicates(self) -> dict[str, list[Provider]]:
        """Names with more than one exporter, in index order."""
        return {n: ps for n, ps in self.by_name.items() if len(ps) > 1}


# ---------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------

# v6.16, "module: Add module specific symbol namespace support" (8f945479021a):
# EXPORT_SYMBOL_FOR_MODULES(sym, "mod1,mod2*") exports into the namespace "module:mod1,mod2*"
MODULE_NS_PREFIX = "module:"


def module_match(modname: str, patterns: str) -> bool:
    """kernel/module/main.c ``verify_module_namespace()`` (6.16; ``module_match()`` later): does
    ``modname`` match one of the comma-separated ``patterns``? A pattern ending in ``*`` matches
    by prefix (the only glob); ``-`` and ``_`` compare equal (``mod_strncmp()``). modpost's copy of
    the function is the same."""
    name = modname.replace("-", "_")
    for pat in patterns.split(","):
        if not pat:
            continue
        pat = pat.replace("-", "_")
        if pat.endswith("*"):
            if name.startswith(pat[:-1]):
                return True
        elif name == pat:
            return True
    return False


def namespace_problem(namespace: str, modname: str, imported: Iterable[str] | set[str],
                      module_namespaces: bool, import_counts: bool = True) -> str:
    """Whether a module may use an export of ``namespace``: "" (yes), "not-imported" (a namespace
    the module does not import: kernel/module/main.c ``verify_namespace_is_imported()``, modpost
    ``check_exports()``) or "module-only" (a ``module:`` namespace, 6.16+ when
    ``module_namespaces``, that does not list the module).

    For a ``module:`` namespace the kernel accepts a listed module, and otherwise still looks at
    the module's imports (``import_counts``); modpost forbids importing such a namespace at all
    (``import_counts=False``: the use is reported whatever the imports say). Before 6.16 a
    ``module:`` namespace is an ordinary one."""
    if not namespace:
        return ""
    if module_namespaces and namespace.startswith(MODULE_NS_PREFIX):
        if module_match(modname, namespace[len(MODULE_NS_PREFIX):]):
            return ""
        if import_counts and namespace in imported:
            return ""
        return "module-only"
    return "" if namespace in imported else "not-imported"
