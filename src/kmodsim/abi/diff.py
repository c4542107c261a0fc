"""Two kernels' exports compared name by name (``kmodsim abi diff``), and a run of kernels in order
(``kmodsim abi history``).

A change is one name and one kind of difference; a name may have several (CRC and owner, say):

=============  ==================================================================================
``removed``    exported by OLD only — a module using it: "Unknown symbol" (``resolve_symbol()``)
``crc``        the CRC differs — "disagrees about version of symbol" (``check_version()``)
``license``    EXPORT_SYMBOL <-> EXPORT_SYMBOL_GPL (``find_exported_symbol_in_section()`` refuses a
               GPL-only export to a module whose license is not GPL-compatible)
``namespace``  the symbol namespace differs (``verify_namespace_is_imported()``)
``owner``      another exporter: vmlinux <-> a module, or module A -> module B
``added``      exported by NEW only
=============  ==================================================================================

A change is *incompatible* when a module built against OLD, which loads there, can fail to link
against NEW: a removal, a CRC change, an export that becomes GPL-only, a namespace added or
changed. The rest is compatible: an addition; a GPL-only export opened to all, a namespace
dropped (no module is refused for an import it no longer needs); an owner move — the loader
links against whichever exporter is loaded, and depmod, which decides what modprobe loads first,
resolves symbols when the kernel is installed, not when the module was built (Debian's ABI check,
``debian/lib/python/debian_linux/abi.py``, leaves the module out of its comparison for that
reason). Symbol lists (Android GKI ``[abi_symbol_list]`` files or one name a line, read by
:func:`kmodsim.checks.load_symbol_list`, as ``check --symbol-list`` reads them) restrict the
report, and so the verdict, to the names they list.

Each CRC change gets its type-level causes from both kernels' BTF (:mod:`kmodsim.abi.causes`),
or one "unexplained" entry saying why not; the other kinds of change have none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import NamedTuple

from ..checks import load_symbol_list
from ..module import DEFAULT_MAX_SIZE
from .causes import Cause, CauseSummary, KernelBtf, explain
from .sides import AbiExport, AbiSide, load_side

# the order of kinds in reports: what breaks modules most often first, ``added`` last
CHANGE_KINDS = ("removed", "crc", "license", "namespace", "owner", "added")
_RANK = {k: i for i, k in enumerate(CHANGE_KINDS)}


class AbiChange(NamedTuple):
    """One kind of change of one exported name."""

    symbol: str
    change: str  # one of CHANGE_KINDS
    old: AbiExport | None  # None: added
    new: AbiExport | None  # None: removed
    causes: tuple[Cause, ...] = ()  # the type-level causes of a CRC change (kmodsim.abi.causes)

    @property
    def compatible(self) -> bool:
        """Whether a module built against the old export still links against the new one (see the
        module docstring)."""
        c = self.change
        if c == "license":
            return not (self.new is not None and self.new.gpl)  # only GPL-only -> open is harmless
        if c == "namespace":
            return not (self.new is not None and self.new.namespace)  # only a dropped namespace is
        return c in ("added", "owner")


class AbiDiffRequest(NamedTuple):
    """``kmodsim abi diff``'s inputs: OLD and NEW (anything ``--kernel`` takes, or a module tree /
    root file system), symbol lists, and how to read trees."""

    old: str
    new: str
    symbol_lists: Sequence[str] = ()
    jobs: int | None = None
    use_cache: bool = True
    config_paths: Sequence[str] | None = None  # depmod.d for the trees
    max_size: int = DEFAULT_MAX_SIZE
    causes: bool = True  # explain CRC changes from the kernels' BTF
    scheduler: str | None = None  # each side one task on a cluster (kmodsim.cluster.map_tasks)
    resolve: Callable[[str], str] | None = None  # an input's name -> its path (e.g. debian.resolve_input)


class AbiDiff(NamedTuple):
    """The changes from ``old`` to ``new``, in report order (kind as in :data:`CHANGE_KINDS`, then
    name), restricted to ``scope`` (the names of the symbol lists) when lists were given."""

    old: AbiSide
    new: AbiSide
    changes: list[AbiChange]
    symbol_lists: tuple[str, ...] = ()
    scope: frozenset[str] | None = None
    notes: list[str] = []  # what the reader must know of the answer (left-out module exports...)
    compared: tuple[int, int] = (0, 0)  # exports of OLD and NEW compared (in scope, when lists are given)
    causes: CauseSummary | None = None  # None: causes not asked for

    @property
    def problems(self) -> list[tuple[str, str]]:
        """Unreadable modules of either tree (path, problem), in the order met."""
        return self.old.problems + self.new.problems

    @property
    def compatible(self) -> bool:
        """No incompatible change in scope (:attr:`AbiChange.compatible`)."""
        return all(c.compatible for c in self.changes)

    def counts(self) -> dict[str, int]:
        """Changes of each kind, every kind present (in :data:`CHANGE_KINDS` order)."""
        out = dict.fromkeys(CHANGE_KINDS, 0)
        for c in self.changes:
            out[c.change] += 1
        return out

    @property
    def symbols_changed(self) -> int:
        return len({c.symbol for c in self.changes})

    @property
    def incompatible(self) -> int:
        return sum(not c.compatible for c in self.changes)


def diff_exports(old: dict[str, AbiExport], new: dict[str, AbiExport],
                 scope: Iterable[str] | None = None) -> list[AbiChange]:
    """Every change from ``old`` to ``new`` (names in ``scope`` only, when given), in report order."""
    names = old.keys() | new.keys()
    if scope is not None:
        names &= set(scope)
    out: list[AbiChange] = []
    for name in names:
        o, n = old.get(name), new.get(name)
        if o is None:
            out.append(AbiChange(name, "added", None, n))
        elif n is None:
            out.append(AbiChange(name, "removed", o, None))
        elif o != n:
            if o.crc != n.crc:
                out.append(AbiChange(name, "crc", o, n))
            if o.gpl != n.gpl:
                out.append(AbiChange(name, "license", o, n))
            if o.namespace != n.namespace:
                out.append(AbiChange(name, "namespace", o, n))
            if o.owner != n.owner:
                out.append(AbiChange(name, "owner", o, n))
    out.sort(key=lambda c: (_RANK[c.change], c.symbol))
    return out


def _comparable(old: AbiSide, new: AbiSide) -> tuple[dict[str, AbiExport], dict[str, AbiExport], list[str]]:
    """The two export tables as they can be compared, and the notes that say what was left out:
    when only one side knows its modules' exports (a headers directory against a vmlinuz), only
    vmlinux's exports are compared."""
    notes = []
    a, b = old.exports, new.exports
    if old.modules != new.modules:
        has, lacks = (old, new) if old.modules else (new, old)
        notes.append(f"{lacks.path} holds vmlinux's exports only: the module exports of {has.path} are "
                     f"left out of the comparison")
        if old.modules:
            a = {k: v for k, v in a.items() if v.owner == "vmlinux"}
        else:
            b = {k: v for k, v in b.items() if v.owner == "vmlinux"}
    for side in (old, new):
        if side.shared:
            notes.append(f"{side.path}: {side.shared} name(s) have more than one exporter; each stands for "
                         f"the one the kernel finds first (vmlinux, then the modules in depmod's order)")
    return a, b, notes


def _lists(paths: Sequence[str]) -> tuple[tuple[str, ...], frozenset[str] | None]:
    if not paths:
        return (), None
    scope: set[str] = set()
    for p in paths:
        scope |= load_symbol_list(p)
    return tuple(paths), frozenset(scope)


def side_btf(side: AbiSide, max_size: int = DEFAULT_MAX_SIZE) -> KernelBtf | None:
    """The BTF a side carries (its image's, its modules'), read on first use; None without an image."""
    return KernelBtf(side.image, side.module_files, max_size) if side.image else None


def compare(old: AbiSide, new: AbiSide, symbol_lists: tuple[str, ...] = (),
            scope: frozenset[str] | None = None, btf: tuple[KernelBtf | None, KernelBtf | None] | None = None) -> AbiDiff:
    """Two sides already read, compared; with ``btf`` (each side's, :func:`side_btf`), each CRC
    change explained (:func:`kmodsim.abi.causes.explain`)."""
    a, b, notes = _comparable(old, new)
    compared = (len(a), len(b)) if scope is None else (len(scope & a.keys()), len(scope & b.keys()))
    changes = diff_exports(a, b, scope)
    summary = None
    if btf is not None:
        crc = [(c.symbol, c.old.owner, c.new.owner) for c in changes if c.change == "crc" and c.old and c.new]
        causes, summary = explain(crc, *btf)
        for k in (0, 1):
            kb = btf[k]
            if kb is not None:
                notes += [f"{e}: its BTF is left out (causes through it unexplained)" for e in kb.errors]
                kb.errors.clear()
        changes = [c._replace(causes=causes[c.symbol]) if c.change == "crc" else c for c in changes]
    return AbiDiff(old, new, changes, symbol_lists, scope, notes, compared, summary)


def diff_sides(req: AbiDiffRequest) -> AbiDiff:
    """``kmodsim abi diff``: read the symbol lists, then OLD and NEW, and compare them. Raises
    :class:`kmodsim.Error` (naming the file) when a list or a kernel cannot be read; unreadable
    modules of a tree are the result's ``problems``."""
    lists, scope = _lists(req.symbol_lists)
    (old, old_btf), (new, new_btf) = read_sides([req.old, req.new], req)
    return compare(old, new, lists, scope, (old_btf, new_btf) if req.causes else None)


def read_sides(paths: Sequence[str], req: AbiDiffRequest | AbiHistoryRequest,
               progress: Callable[[int, int, str], None] | None = None) -> list[tuple[AbiSide, KernelBtf | None]]:
    """Each of ``paths`` read as one task (:func:`kmodsim.cluster.map_tasks`: here, one after the
    other, or on ``req.scheduler``'s cluster), in order: its side and, when ``req.causes``, its BTF
    (:func:`side_btf`). ``req.resolve`` turns a name into a path inside the task (so a cluster
    worker fetches its own kernel); the side keeps the name given. On a cluster each task reads its
    trees with one process unless ``req.jobs`` says otherwise (the cluster's workers are the
    parallelism), and reads vmlinux's BTF there (decompressing the image is the task's work, not
    the client's); module BTF is read where the sides are compared, on first use."""
    from ..cluster import map_tasks

    on_cluster = bool(req.scheduler)
    jobs = req.jobs if req.jobs or not on_cluster else 1
    read = partial(_read_side, resolve=req.resolve, jobs=jobs, use_cache=req.use_cache,
                   config_paths=req.config_paths, max_size=req.max_size, causes=req.causes,
                   eager_btf=on_cluster)
    return map_tasks(read, list(paths), req.scheduler, progress)


def _read_side(path: str, *, resolve: Callable[[str], str] | None, jobs: int | None, use_cache: bool,
               config_paths: Sequence[str] | None, max_size: int, causes: bool,
               eager_btf: bool) -> tuple[AbiSide, KernelBtf | None]:
    side = load_side(resolve(path) if resolve else path, jobs=jobs, use_cache=use_cache,
                     config_paths=config_paths, max_size=max_size)
    if side.path != path:
        side = side._replace(path=path)
    btf = side_btf(side, max_size) if causes else None
    if btf is not None and eager_btf:
        btf.vmlinux()  # (an image it cannot read is one of btf.errors, reported as here)
    return side, btf


# ---------------------------------------------------------------------------------------------
# A run of kernels
# ---------------------------------------------------------------------------------------------

class AbiHistoryRequest(NamedTuple):
    """``kmodsim abi history``'s inputs: kernels in order (oldest first), as ``abi diff`` takes them."""

    paths: Sequence[str]
    symbol_lists: Sequence[str] = ()
    jobs: int | None = None
    use_cache: bool = True
    config_paths: Sequence[str] | None = None
    max_size: int = DEFAULT_MAX_SIZE
    causes: bool = True
    scheduler: str | None = None  # each kernel one task on a cluster (kmodsim.cluster.map_tasks)
    resolve: Callable[[str], str] | None = None  # an input's name -> its path (e.g. debian.resolve_input)


class AbiStep(NamedTuple):
    """One step of a history: the diff of two consecutive kernels."""

    step: int  # 1-based: kernels[step - 1] -> kernels[step]
    diff: AbiDiff


class AbiHistory(NamedTuple):
    """Each kernel read once, and the diff of each consecutive pair."""

    kernels: list[AbiSide]
    steps: list[AbiStep]
    symbol_lists: tuple[str, ...] = ()
    scope: frozenset[str] | None = None

    @property
    def problems(self) -> list[tuple[str, str]]:
        return [p for k in self.kernels for p in k.problems]

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(n for s in self.steps for n in s.diff.notes))

    @property
    def compatible(self) -> bool:
        return all(s.diff.compatible for s in self.steps)


def history(req: AbiHistoryRequest, progress: Callable[[int, int, str], None] | None = None) -> AbiHistory:
    """``kmodsim abi history``: every kernel of ``req.paths`` read once, in order, and each step
    compared. ``progress(i, n, path)`` is called before the i-th kernel (1-based) is read (on a
    cluster: as the i-th task finishes). Raises
    :class:`kmodsim.Error` as :func:`diff_sides` does."""
    lists, scope = _lists(req.symbol_lists)
    read = read_sides(req.paths, req, progress)
    kernels = [side for side, _ in read]
    btfs = [btf for _, btf in read]  # each kernel's BTF, kept for the two steps it is part of
    del read
    steps: list[AbiStep] = []
    for i in range(1, len(kernels)):
        pair = (btfs[i - 1], btfs[i]) if req.causes else None
        steps.append(AbiStep(i, compare(kernels[i - 1], kernels[i], lists, scope, pair)))
        btfs[i - 1] = None  # (its BTF is not needed again)
    return AbiHistory(kernels, steps, lists, scope)
