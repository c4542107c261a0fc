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
        ob, nb = (None if kb is None else kb.fresh() for kb in btf)
        causes, summary = explain(crc, ob, nb)
        for kb in (ob, nb):
            if kb is not None:
                notes += [f"{e}: its BTF is left out (causes through it unexplained)" for e in kb.errors]
        changes = [c._replace(causes=causes[c.symbol]) if c.change == "crc" else c for c in changes]
    return AbiDiff(old, new, changes, symbol_lists, scope, notes, compared, summary)


def diff_sides(req: AbiDiffRequest) -> AbiDiff:
    """``kmodsim abi diff``: read the symbol lists, then OLD and NEW, and compare them. Raises
    :class:`kmodsim.Error` (naming the file) when a list or a kernel cannot be read; unreadable
    modules of a tree are the result's ``problems``."""
    lists, scope = _lists(req.symbol_lists)
    _sides, (diff,) = compare_run([req.old, req.new], req, lists, scope)
    return diff


def compare_run(paths: Sequence[str], req: AbiDiffRequest | AbiHistoryRequest, lists: tuple[str, ...] = (),
                scope: frozenset[str] | None = None, progress: Callable[[int, int, str], None] | None = None) -> tuple[list[AbiSide], list[AbiDiff]]:
    """Each of ``paths`` read once, and each consecutive pair compared (:func:`compare`, with
    causes when ``req.causes``; only the names in ``scope`` when given, the symbol lists
    ``lists`` say): the sides and the diffs, in order. Reads and comparisons are
    tasks of :func:`kmodsim.cluster.map_pairs`: here, each kernel read in turn and compared with
    the one before (two held at once), or on ``req.scheduler``'s cluster, where each read and
    each comparison is a task and only the sides and the diffs come back (a kernel's BTF stays
    on the worker that read it). ``req.resolve`` turns a name into a path inside the task (so a
    cluster worker fetches its own kernel); a side keeps the name given. On a cluster each task
    reads its trees with one process unless ``req.jobs`` says otherwise (the cluster's workers
    are the parallelism), and reads vmlinux's BTF there (decompressing the image is the task's
    work, not the client's). ``progress(i, n, name)``: see :func:`kmodsim.cluster.map_pairs`."""
    from ..cluster import map_pairs

    on_cluster = bool(req.scheduler)
    jobs = req.jobs if req.jobs or not on_cluster else 1
    read = partial(_read_side, resolve=req.resolve, jobs=jobs, use_cache=req.use_cache,
                   config_paths=req.config_paths, max_size=req.max_size, causes=req.causes,
                   eager_btf=on_cluster)
    pair = partial(_compare_read, symbol_lists=lists, scope=scope, causes=req.causes,
                   resolve=req.resolve if on_cluster else None)
    return map_pairs(read, pair, list(paths), req.scheduler, keep=_side_of, progress=progress)


class _Read(NamedTuple):
    """One kernel as its task read it: its side, its BTF, and the path its name resolved to there."""

    side: AbiSide
    btf: KernelBtf | None
    at: str


def _read_side(path: str, *, resolve: Callable[[str], str] | None, jobs: int | None, use_cache: bool,
               config_paths: Sequence[str] | None, max_size: int, causes: bool, eager_btf: bool) -> _Read:
    at = resolve(path) if resolve else path
    side = load_side(at, jobs=jobs, use_cache=use_cache, config_paths=config_paths, max_size=max_size)
    if side.path != path:
        side = side._replace(path=path)
    btf = side_btf(side, max_size) if causes else None
    if btf is not None and eager_btf:
        btf.vmlinux()  # (an image it cannot read is one of btf.errors, reported as here)
    return _Read(side, btf, at)


def _side_of(read: _Read) -> AbiSide:
    return read.side


def _compare_read(old: _Read, new: _Read, *, symbol_lists: tuple[str, ...], scope: frozenset[str] | None,
                  causes: bool, resolve: Callable[[str], str] | None) -> AbiDiff:
    """:func:`compare` of two reads, in the task that compares them. On a cluster that may be
    another host than the one that read a kernel: a kernel named by its package (``resolve``
    gives it a path) is resolved here too — fetched into this host's cache if it is not there —
    and its modules' BTF read from that path."""
    btf = None
    if causes:
        btf = tuple(r.btf if r.btf is None or resolve is None or r.at == r.side.path
                    else r.btf.moved(r.at, resolve(r.side.path)) for r in (old, new))
    return compare(old.side, new.side, symbol_lists, scope, btf)  # type: ignore[arg-type]


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
    compared (:func:`compare_run`; ``progress`` as there). Raises :class:`kmodsim.Error` as
    :func:`diff_sides` does."""
    lists, scope = _lists(req.symbol_lists)
    kernels, diffs = compare_run(req.paths, req, lists, scope, progress)
    return AbiHistory(kernels, [AbiStep(i, d) for i, d in enumerate(diffs, 1)], lists, scope)
