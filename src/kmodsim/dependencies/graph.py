"""The computation: modules in depmod's order, the owner of each exported symbol (the last
exporter in module order wins), each module's dependencies and depmod's topological sort."""

from __future__ import annotations

import os
from typing import cast

from ..discovery import depmod_order, modname
from ..messages import DepmodMessage
from ..module import DEFAULT_MAX_SIZE
from ..symbols import DEPMOD_KERNEL_FAKES, last_wins
from .cycles import depmod_cycle_report, elementary_cycles, strongly_connected
from .kernel_symbols import load_symvers, load_system_map
from .kmod_view import KmodRecord, split0, u64s
from .plan import DepmodError, Plan, load_records, plan

# ---------------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------------


class Mod:
    __slots__ = ("name", "path", "relpath", "rec", "idx", "bname", "bpath")

    def __init__(self, name: str, path: str, relpath: str | None, rec: KmodRecord, idx: int = 0) -> None:
        self.name = name
        self.path = path
        self.relpath = relpath
        self.rec = rec
        self.idx = idx
        self.bname = name.encode("utf-8", "surrogateescape")  # as the files spell them
        self.bpath = (relpath if relpath is not None else path).encode("utf-8", "surrogateescape")

    @property
    def shown_path(self) -> str:
        """What modules.dep prints: the path below the tree, else the full path."""
        return self.relpath if self.relpath is not None else self.path


class Depmod:
    """One depmod run. Build with :func:`run`; then :meth:`outputs` or the graph queries."""

    def __init__(self, dirname: str, mods: list[Mod], ksyms: list[tuple[bytes, int]] | None,
                 owner: dict[bytes, int], warnings: list[DepmodMessage], errors: list[tuple[str, str]],
                 prefix: str = "") -> None:
        self.dirname = dirname
        self.mods = mods
        self.ksyms = ksyms  # the kernel's (name, CRC), from -E/-F
        self.owner = owner  # name -> owning module, module-owned names only
        self._symbols: dict[bytes, tuple[int | None, int]] | None = None
        self.deps: list[list[int]] = []  # distinct owners of each module's imports, first use first
        self.dep_sort: list[int] | None = None  # topological numbers; None: there are cycles
        self.users_left: list[int] = []  # after the sort: >0 for modules on or below a cycle
        self.warnings = warnings  # depmod's stderr lines (-e, cycles, config), in its order
        self.errors = errors  # (file, problem): unreadable inputs
        self.prefix = prefix
        self.cycle_lines: list[DepmodMessage] = []
        self._by_name: dict[str, int] | None = None

    # -- lookups ------------------------------------------------------------------------------
    @property
    def symbols(self) -> dict[bytes, tuple[int | None, int]]:
        """depmod's symbol table: name -> (owning module, or None for the kernel; CRC), by
        :data:`kmodsim.symbols.DEPMOD`'s policy: the kernel's names first (with depmod's fake ones,
        :data:`kmodsim.symbols.DEPMOD_KERNEL_FAKES`), then each module's exports in module order,
        a later exporter replacing an earlier one. Built on first use (-e, why, deps)."""
        if self._symbols is None:
            symbols: dict[bytes, tuple[int | None, int]] = {}
            if self.ksyms is not None:
                symbols.update((n, (None, c)) for n, c in self.ksyms)
                for fake, always in DEPMOD_KERNEL_FAKES:
                    if always or fake not in symbols:
                        symbols[fake] = (None, 0)
            pre = self.prefix.encode()
            for m in self.mods:  # DEPMOD's policy: a later exporter replaces an earlier one
                rec = m.rec
                if rec.exports:
                    names = split0(rec.exports)
                    if pre:
                        names = [n[1:] if n[:1] == pre else n for n in names]
                    symbols.update(zip(names, [(m.idx, c) for c in u64s(rec.export_crcs)], strict=True))
            self._symbols = symbols
        return self._symbols

    def index_of(self, name_or_path: str) -> int | None:
        if self._by_name is None:
            self._by_name = {m.name: m.idx for m in self.mods}
        i = self._by_name.get(name_or_path)
        if i is None:
            i = self._by_name.get(modname(os.path.basename(name_or_path)))
            if i is not None and os.sep in name_or_path and \
                    os.path.realpath(self.mods[i].path) != os.path.realpath(name_or_path):
                i = None
        return i

    def find(self, name: bytes) -> tuple[int | None, int] | None:
        if name[:1] == b".":
            name = name[1:]
        if self.prefix and name[:1] == self.prefix.encode():
            name = name[1:]
        return self.symbols.get(name)

    def edge_symbols(self, a: int, b: int) -> list[tuple[str, bool]]:
        """(symbol, weak) of ``a``'s imports that ``b`` owns, in import order."""
        rec = self.mods[a].rec
        out = []
        for n, w in zip(split0(rec.imports), rec.import_weak, strict=True):
            s = self.find(n)
            if s is not None and s[0] == b:
                out.append((n.decode("utf-8", "surrogateescape"), bool(w)))
        return out

    def closure(self, i: int) -> list[int]:
        """Every module ``i`` needs, directly or not, in modules.dep order."""
        seen: dict[int, None] = {}
        stack = list(reversed(self.deps[i]))
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen[d] = None
            stack.extend(reversed(self.deps[d]))
        out = list(seen)
        if self.dep_sort is not None:
            out.sort(key=self.dep_sort.__getitem__)
        return out

    # -- cycles ---------------------------------------------------------------------------------
    def cycles(self, limit: int = 1000) -> list[list[int]]:
        """Every elementary cycle (Johnson's algorithm on each strongly connected component),
        each rotated to start at its first module in module order; at most ``limit``."""
        out: list[list[int]] = []
        for comp in strongly_connected(self.deps):
            if len(comp) == 1 and comp[0] not in self.deps[comp[0]]:
                continue
            out.extend(elementary_cycles(self.deps, sorted(comp), limit - len(out)))
            if len(out) >= limit:
                break
        out.sort(key=lambda c: (len(c), c))
        return out



def compute(pl: Plan, recs: dict[str, KmodRecord], *, errsyms: bool = False, prefix: str = "") -> Depmod:
    """Everything depmod computes, from a plan and the records of its modules."""
    warnings: list[DepmodMessage] = []
    errors = list(pl.errors)
    # kernel symbols first: modules' exports replace them
    ksyms: list[tuple[bytes, int]] | None = None
    if pl.ksrc is not None:
        loader = load_symvers if pl.ksrc[0] == "symvers" else load_system_map
        try:
            ksyms = loader(pl.ksrc[1], prefix, warnings)
        except IsADirectoryError:
            ksyms = []  # as plan() says: an empty file to depmod
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise DepmodError(f"{pl.ksrc[1]}: {why}", DepmodMessage("load-kernel-symbols", (pl.ksrc[1], why))) from None
    check_crcs = pl.ksrc is not None and pl.ksrc[0] == "symvers"
    if errsyms and ksyms is None:
        warnings.append(DepmodMessage("needs-symbol-source"))
        errsyms = False
    if pl.cfg is not None:
        warnings.extend(pl.cfg.messages)
    for f in pl.found:
        if recs[f.path].problem:
            errors.append((f.path, recs[f.path].problem))

    mods = [Mod(f.name, f.path, f.relpath, recs[f.path]) for f in pl.found]
    mods = _depmod_order(mods, pl.dirname, warnings, pl.kmod.order_first_line_wins)
    for i, m in enumerate(mods):
        m.idx = i

    # who owns each name a module exports, by kmodsim.symbols.DEPMOD's policy (the last exporter
    # in module order wins); the full table, kernel's names and CRCs included, is built only when
    # needed: Depmod.symbols
    pre = prefix.encode()
    owner: dict[bytes, int] = {}
    for m in mods:
        rec = m.rec
        if not rec.exports:
            continue
        names_ = split0(rec.exports)
        if pre:
            names_ = [n[1:] if n[:1] == pre else n for n in names_]
        last_wins(owner, names_, m.idx)

    dm = Depmod(pl.dirname, mods, ksyms, owner, warnings, errors, prefix)
    dm.deps = _dependencies(dm, errsyms, check_crcs)
    dm.dep_sort = _topo_sort(dm)
    if dm.dep_sort is None:
        dm.cycle_lines = depmod_cycle_report(dm)
        warnings.extend(dm.cycle_lines)
    return dm


def run(basedir: str | None = None, kver: str | None = None, *, files: list[str] | None = None,
        symvers: str | None = None, system_map: str | None = None, errsyms: bool = False,
        config_paths: list[str] | None = None, prefix: str = "", jobs: int | None = None,
        use_cache: bool = True, cache_dir: str | None = None, max_size: int = DEFAULT_MAX_SIZE,
        dirname: str | None = None) -> Depmod:
    """Read a tree (or the given module ``files``) and compute everything depmod computes.

    Raises :class:`DepmodError` when the run cannot start (tree or symbol file unreadable)."""
    pl = plan(basedir, kver, files=files, symvers=symvers, system_map=system_map,
              config_paths=config_paths, dirname=dirname, stat=use_cache)
    recs = load_records(pl, jobs, use_cache, cache_dir, max_size, crcs=errsyms)
    return compute(pl, recs, errsyms=errsyms, prefix=prefix)



def _depmod_order(mods: list[Mod], dirname: str, warnings: list[DepmodMessage], first_line_wins: bool = False) -> list[Mod]:
    """The hash order of names, then modules.order first (depmod_modules_sort, shared with every
    command's discovery: :func:`kmodsim.discovery.depmod_order`)."""
    order = depmod_order([m.name for m in mods], [m.relpath for m in mods], dirname, warnings, first_line_wins)
    return [mods[i] for i in order]


def _dependencies(dm: Depmod, errsyms: bool, check_crcs: bool) -> list[list[int]]:
    """depmod_load_dependencies(): each module's distinct owners in first-use order, and the
    -e lines (``needs unknown symbol``, ``disagrees about version``)."""
    owner_get = dm.owner.get
    out: list[list[int]] = []
    warn = dm.warnings
    simple = not dm.prefix and not errsyms
    fromkeys = dict.fromkeys
    for m in dm.mods:
        rec = m.rec
        imports = rec.imports
        if not imports:
            out.append([])
            continue
        if simple and b"\0." not in imports and imports[:1] != b".":
            owners = fromkeys(map(owner_get, imports[:-1].split(b"\0")))
            owners.pop(None, None)
            out.append(cast("list[int]", [*owners]))  # None popped above: a second filter would only cost
            continue
        names = split0(imports)
        weak = rec.import_weak
        crcs = u64s(rec.import_crcs)
        seen: dict[int, None] = {}
        for k, n in enumerate(names):
            s = dm.find(n)
            w = weak[k]
            if s is None:
                if errsyms and not w:
                    warn.append(DepmodMessage("unknown-symbol", (m.path, n.decode("utf-8", "surrogateescape"))))
                continue
            if check_crcs and s[1] != crcs[k] and not w and errsyms:
                warn.append(DepmodMessage("symbol-version", (m.path, n.decode("utf-8", "surrogateescape"))))
            if s[0] is not None:
                seen[s[0]] = None
        out.append(list(seen))
    return out


def _topo_sort(dm: Depmod) -> list[int] | None:
    """depmod_calculate_dependencies(): a LIFO of the unused modules; None when a cycle is left."""
    n = len(dm.mods)
    deps = dm.deps
    users = [0] * n
    for ds in deps:
        for d in ds:
            users[d] += 1
    stack = [i for i in range(n) if users[i] == 0]
    order = [0x7FFFFFFF] * n
    k = 0
    while stack:
        i = stack.pop()
        order[i] = k
        k += 1
        for d in deps[i]:
            users[d] -= 1
            if users[d] == 0:
                stack.append(d)
    dm.users_left = users
    return order if k == n else None
