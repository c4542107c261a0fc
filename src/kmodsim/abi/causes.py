"""Why an export's CRC changed: the type-level causes, from the BTF both kernels ship.

What a CRC covers (genksyms, ``scripts/genksyms/genksyms.c`` ``expand_and_crc_sym()``, the
tool of every kernel before 6.14 and of ``CONFIG_GENKSYMS`` after): the CRC of an export is a
CRC32 of the tokens of its declaration as the exporting file sees it — a function's return type
and parameter types (parameter *names* are dropped by the parser, ``parse.y``
``direct_m_abstract_declarator``), a variable's type — where every ``struct``/``union``/``enum``
tag and every typedef name is replaced by its definition, recursively, each definition once per
export (``expansion_trail``: a second reference hashes just ``struct NAME``). A reference is
expanded whatever its context: ``struct foo *`` expands ``struct foo`` exactly as ``struct foo``
does — genksyms sees the tokens, not the pointer. So a change to any definition *reachable by
name* from the declaration, through pointers too, changes the CRC. Two limits: a tag the file
only declares (``struct foo;``) hashes as ``struct foo { UNKNOWN }``, so its definition does not
count for that export; and what is hashed is the preprocessed source text — member names,
types as spelled, array sizes and enumerator values as written, some attributes — not a layout.

BTF (``.BTF`` of vmlinux, and each module's split ``.BTF`` on top of it) records the same
definitions as compiled: members with their types and bit offsets, enumerators with their
values, function prototypes. This module walks both kernels' BTF in parallel from the export's
``FUNC`` (its prototype's return and parameter types) or ``VAR`` (its type), the way genksyms
expands the declaration — into every struct, union, enum and typedef reached by name, pointers
included — and names the *first* definitions that differ on each path: the changed definition
stops the walk on that path (what lies behind it is already covered by it), unchanged ones are
walked through. A definition differs when its members (name, type as spelled — a reference to
another named type by its name —, bitfield width), its enumerators (name, value) or its kind
differ; or, with the same members, when its layout differs (a member at another offset, another
size) without a member whose by-value type changed size (that one is the cause, further down).

Each CRC change gets its causes (:class:`Cause`: the changed type, what changed, the path from the
export to it), or one *unexplained* entry, never a guess:

* ``unexplained (no BTF)`` — a side has no BTF: a headers package or a Module.symvers, an image
  built without ``CONFIG_DEBUG_INFO_BTF``, a module without ``.BTF``;
* ``unexplained (no BTF function or variable)`` — BTF does not describe the symbol: exports
  defined in assembly (``memcpy``, the retpoline thunks: their CRCs come from
  ``asm-prototypes.h``), data exports (pahole encodes only per-CPU variables before 1.26's
  ``--btf_gen_all``), functions pahole left out (inconsistent prototypes across units);
* ``unexplained (no difference in BTF)`` — every definition reachable differs in nothing BTF
  records: genksyms also hashes what BTF drops (attributes, a macro's spelling of an array size,
  a typedef's spelling where BTF keeps the same type, an opaque struct's move between declared
  and defined in the exporting file).

A path may name a type the exporting file saw only declared (BTF has every definition): the type
really differs — the test checks every one against ``bpftool btf dump`` — but genksyms may not
have hashed it for that export.

Speed: thousands of exports share types, so every (old, new) type pair is compared once, and the
set of first differences reachable from each pair is computed once for the whole graph
(strongly connected components, Tarjan); a path is found per changed type by one breadth-first
search backwards from it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..btf import (
    KIND_ARRAY,
    KIND_CONST,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_FLOAT,
    KIND_FUNC,
    KIND_FUNC_PROTO,
    KIND_FWD,
    KIND_INT,
    KIND_PTR,
    KIND_RESTRICT,
    KIND_STRUCT,
    KIND_TYPE_TAG,
    KIND_TYPEDEF,
    KIND_UNION,
    KIND_VAR,
    KIND_VOLATILE,
    Btf,
    BtfError,
    module_btf,
    vmlinux_btf,
)

NO_BTF = "unexplained (no BTF)"
NO_DECL = "unexplained (no BTF function or variable)"
NO_DIFF = "unexplained (no difference in BTF)"
UNEXPLAINED = (NO_BTF, NO_DECL, NO_DIFF)

_MAX_DEPTH = 64  # nesting of anonymous types, pointers, arrays within one definition
_MAX_DETAILS = 4  # differences of one definition named (the rest counted)


@dataclass(frozen=True, order=True)
class Cause:
    """One cause of a CRC change: ``type`` (``struct kvm_vcpu_arch``, ``enum x``, ``typedef y``, a
    function's prototype ``f()`` or a variable's type ``v``; None: unexplained) and what changed
    in it, reached from the export along ``path`` (``["kvm_vcpu_kick(arg 0)", "struct kvm_vcpu",
    ".arch", "struct kvm_vcpu_arch"]``; empty when unexplained)."""

    type: str | None
    change: str
    path: tuple[str, ...] = ()

    @property
    def explained(self) -> bool:
        return self.type is not None


@dataclass(frozen=True)
class TypeChange:
    """One changed definition and the CRC changes it explains."""

    type: str
    change: str
    symbols: int  # CRC changes with this among their causes
    example: tuple[str, ...]  # the path of the first of them (by name)


@dataclass(frozen=True)
class CauseSummary:
    """The causes of one diff's CRC changes, grouped."""

    crc_changes: int
    explained: int  # CRC changes with at least one cause
    unexplained: dict[str, int] = field(default_factory=dict)  # reason (UNEXPLAINED) -> CRC changes
    type_changes: tuple[TypeChange, ...] = ()  # most symbols first, then type, then change

    @property
    def unexplained_total(self) -> int:
        return sum(self.unexplained.values())


# ---------------------------------------------------------------------------------------------
# A kernel's BTF: vmlinux's, and each module's on top of it, read on first use
# ---------------------------------------------------------------------------------------------

class KernelBtf:
    """The BTF of one side: vmlinux's ``.BTF`` from ``image`` (a vmlinux or a vmlinuz) and each
    module's split ``.BTF`` from ``module_files`` (owner -> file), each read once, when first
    asked. A side without an image has no BTF at all (a module's needs vmlinux's as its base)."""

    def __init__(self, image: str, module_files: dict[str, str], max_size: int = 1 << 30) -> None:
        self.image = image
        self.module_files = module_files
        self.max_size = max_size
        self._vmlinux: Btf | None = None
        self._vmlinux_error: str | None = None if image else "no kernel image"
        self._modules: dict[str, Btf | None] = {}
        self.errors: list[str] = []  # what could not be read ("<file>: <problem>"), in the order met

    def vmlinux(self) -> Btf | None:
        if self._vmlinux is None and self._vmlinux_error is None:
            try:
                self._vmlinux = vmlinux_btf(self.image, self.max_size)
            except (BtfError, OSError) as exc:
                msg = str(exc) if str(exc).startswith(self.image) else f"{self.image}: {exc}"
                self._vmlinux_error = msg
                self.errors.append(msg)
        return self._vmlinux

    def of(self, owner: str) -> Btf | None:
        """The BTF an export of ``owner`` ("vmlinux" or a module) is described in, if any."""
        base = self.vmlinux()
        if base is None or owner == "vmlinux":
            return base
        if owner not in self._modules:
            path = self.module_files.get(owner)
            btf = None
            if path is not None:
                try:
                    btf = module_btf(path, base, self.max_size)
                except (BtfError, OSError) as exc:
                    self.errors.append(str(exc))
            self._modules[owner] = btf
        return self._modules[owner]

    def fresh(self) -> KernelBtf:
        """The same side's BTF for one comparison: vmlinux's read (once, here) and shared, its
        modules' read anew and its :attr:`errors` its own (the vmlinux error, if any, first).
        Comparisons that share a side (the two steps of a history a kernel is part of, tasks of
        one cluster worker) neither see nor change each other's state: their notes are the same
        whichever ran first."""
        self.vmlinux()
        out = self._sharing_vmlinux(self.image, self.module_files)
        out.errors = [self._vmlinux_error] if self._vmlinux_error else []
        return out

    def _sharing_vmlinux(self, image: str, module_files: dict[str, str]) -> KernelBtf:
        """A new BTF of these files, with this one's vmlinux BTF (or its error) if already read."""
        out = KernelBtf(image, module_files, self.max_size)
        out._vmlinux, out._vmlinux_error = self._vmlinux, self._vmlinux_error
        return out

    def moved(self, was: str, now: str) -> KernelBtf:
        """This BTF with its files under ``now`` instead of ``was`` (the same kernel unpacked at
        another path: another host of a cluster); vmlinux's BTF, if read, is kept."""
        if now == was:
            return self

        def rebase(path: str) -> str:
            rel = os.path.relpath(path, was)
            return path if rel.startswith(os.pardir) else os.path.join(now, rel)

        return self._sharing_vmlinux(rebase(self.image), {o: rebase(f) for o, f in self.module_files.items()})

    def drop(self, owner: str) -> None:
        """Forget a module's BTF (memory: a whole tree's is not kept at once)."""
        self._modules.pop(owner, None)


# ---------------------------------------------------------------------------------------------
# Definitions as genksyms would hash them: spelled, with references to named types by name
# ---------------------------------------------------------------------------------------------

_QUALS = {KIND_CONST: "const", KIND_VOLATILE: "volatile", KIND_RESTRICT: "restrict"}
_TAGS = {KIND_STRUCT: "struct", KIND_UNION: "union", KIND_ENUM: "enum", KIND_ENUM64: "enum"}

Ref = tuple[str, int]  # (label of the way there, type id of a named struct/union/enum/typedef/fwd)


def _spell(btf: Btf, tid: int, refs: list[Ref], label: str, depth: int = 0) -> tuple[Any, ...]:
    """The type ``tid`` as a hashable spelling: named types by name (each appended to ``refs``
    with ``label``, the member path that reaches it), anonymous ones inline."""
    if depth > _MAX_DEPTH:
        raise BtfError(f"type {tid}: nested more than {_MAX_DEPTH} deep")
    t = btf.type(tid)
    if t is None:
        return ("void",)
    kind, name, sot, extra = t
    if kind == KIND_INT:
        return ("int", name, sot, extra)
    if kind == KIND_FLOAT:
        return ("float", name, sot)
    if kind == KIND_PTR:
        return ("*", _spell(btf, sot, refs, label, depth + 1))
    if kind == KIND_ARRAY:
        return ("[]", extra[1], _spell(btf, extra[0], refs, label, depth + 1))
    if kind in _QUALS:
        return (_QUALS[kind], _spell(btf, sot, refs, label, depth + 1))
    if kind == KIND_TYPE_TAG:  # __user & co. under clang: not in genksyms' tokens
        return _spell(btf, sot, refs, label, depth + 1)
    if kind == KIND_TYPEDEF:
        refs.append((label, tid))
        return ("typedef", name)
    if kind == KIND_FWD:
        refs.append((label, tid))
        return ("union" if extra else "struct", name)
    if kind in _TAGS:
        if name:
            refs.append((label, tid))
            return (_TAGS[kind], name)
        return _inline(btf, t, refs, label, depth)
    if kind == KIND_FUNC_PROTO:
        ret = _spell(btf, sot, refs, f"{label}(return)", depth + 1)
        params = tuple(("...",) if (not p_name and p_type == 0 and i == len(extra) - 1)
                       else _spell(btf, p_type, refs, f"{label}(arg {i})", depth + 1)
                       for i, (p_name, p_type) in enumerate(extra))
        return ("fn", ret, params)
    raise BtfError(f"type {tid}: kind {kind} where a type is expected")


def _inline(btf: Btf, t: tuple[Any, ...], refs: list[Ref], label: str, depth: int) -> tuple[Any, ...]:
    """A struct/union/enum's body: members (name, spelling, bitfield width) or enumerators."""
    kind, _name, size, extra = t
    if kind in (KIND_ENUM, KIND_ENUM64):
        return ("enum", size, tuple(extra))
    members = tuple((m_name, _spell(btf, m_type, refs, f"{label}.{m_name}" if m_name else label, depth + 1), bits)
                    for m_name, m_type, _off, bits in extra)
    return (_TAGS[kind], members)


class _Def:
    """A named type's definition in one BTF: its spelling (``text``), its layout (size, member
    offsets) and the named types it refers to, in order."""

    __slots__ = ("display", "text", "layout", "refs", "btf", "tid")

    def __init__(self, btf: Btf, tid: int) -> None:
        t = btf.type(tid)
        assert t is not None
        kind, name, sot, extra = t
        self.btf, self.tid = btf, tid
        self.refs: list[Ref] = []
        self.layout: tuple[Any, ...] = ()
        if kind == KIND_TYPEDEF:
            self.display = f"typedef {name}"
            self.text: tuple[Any, ...] = ("typedef", _spell(btf, sot, self.refs, ""))
        elif kind == KIND_FWD:
            self.display = f"{'union' if extra else 'struct'} {name}"
            self.text = ("declared only",)
        else:
            self.display = f"{_TAGS[kind]} {name}"
            self.text = _inline(btf, t, self.refs, "", 0)
            if kind in (KIND_STRUCT, KIND_UNION):
                self.layout = (sot, tuple(off for _n, _t, off, _b in extra))


def _size(btf: Btf, tid: int) -> int | None:
    try:
        return btf.size_of(tid)
    except BtfError:
        return None  # a pointer, void, a function


def _c(s: tuple[Any, ...]) -> str:
    """A spelling as C-like text, for messages: ``struct foo *``, ``int [4]``, ``void (*)(int)``."""
    k = s[0]
    if k in ("void", "..."):
        return str(k)
    if k in ("int", "float", "typedef"):
        return str(s[1])
    if k in ("struct", "union", "enum"):
        return f"{k} {s[1] if isinstance(s[1], str) else '{...}'}"
    if k == "*":
        if s[1][0] == "fn":
            return f"{_c(s[1][1])} (*)({', '.join(_c(p) for p in s[1][2])})"
        return f"{_c(s[1])} *"
    if k == "[]":
        return f"{_c(s[2])} [{s[1]}]"
    if k in ("const", "volatile", "restrict"):
        return f"{k} {_c(s[1])}"
    if k == "fn":
        return f"{_c(s[1])} ({', '.join(_c(p) for p in s[2])})"
    return repr(s)


def _members(text: tuple[Any, ...], prefix: str = "") -> list[tuple[str, tuple[Any, ...], int]]:
    """A struct/union's members flattened: anonymous ones' members by their own names."""
    out: list[tuple[str, tuple[Any, ...], int]] = []
    for i, (name, spelling, bits) in enumerate(text[1]):
        if not name and spelling[0] in ("struct", "union") and not isinstance(spelling[1], str):
            out.extend(_members(spelling, f"{prefix}(anonymous {i})."))
        else:
            out.append((name, spelling, bits))
    return out


def _describe(o: _Def, n: _Def) -> list[str]:
    """What differs between two definitions of one named type ([] when nothing genksyms or the
    layout would see)."""
    a, b = o.text, n.text
    if a[0] != b[0]:
        if a[0] == "declared only":
            return ["became defined"]
        if b[0] == "declared only":
            return ["no longer defined (declared only)"]
        return [f"{a[0]} -> {b[0]}"]
    if a != b:
        if a[0] == "typedef":
            return [f"retyped: '{_c(a[1])}' -> '{_c(b[1])}'"]
        if a[0] == "enum":
            return _describe_enum(a, b)
        return _describe_members(a, b)
    if o.layout != n.layout:
        # same members: a by-value member whose type changed size moved the rest (that type is the
        # cause, further down); else the layout itself changed (alignment, packing)
        ot, nt = o.btf.type(o.tid), n.btf.type(n.tid)
        assert ot is not None and nt is not None
        for (_n1, t1, _o1, _b1), (_n2, t2, _o2, _b2) in zip(ot[3], nt[3], strict=True):
            if _size(o.btf, t1) != _size(n.btf, t2):
                return []
        out = [f"member '{m[0] or '(anonymous)'}' moved: bit {x} -> {y}"
               for m, x, y in zip(ot[3], o.layout[1], n.layout[1], strict=True) if x != y]
        if o.layout[0] != n.layout[0]:
            out.append(f"size {o.layout[0]} -> {n.layout[0]}")
        return out
    return []


def _describe_enum(a: tuple[Any, ...], b: tuple[Any, ...]) -> list[str]:
    va, vb = dict(a[2]), dict(b[2])
    out = [f"enumerator '{k}' removed" for k in va if k not in vb]
    out += [f"enumerator '{k}' added" for k in vb if k not in va]
    out += [f"enumerator '{k}' value {va[k]} -> {vb[k]}" for k in va if k in vb and va[k] != vb[k]]
    if not out and list(va) != list(vb):
        out.append("enumerators reordered")
    if a[1] != b[1]:
        out.append(f"size {a[1]} -> {b[1]}")
    return out or ["enumerators changed"]


def _describe_members(a: tuple[Any, ...], b: tuple[Any, ...]) -> list[str]:
    ma, mb = _members(a), _members(b)
    da = {m[0]: m for m in ma if m[0]}
    db = {m[0]: m for m in mb if m[0]}
    out = [f"member '{k}' removed" for k in da if k not in db]
    out += [f"member '{k}' added" for k in db if k not in da]
    for k, m in da.items():
        if k in db:
            x = db[k]
            if m[1] != x[1]:
                out.append(f"member '{k}' retyped: '{_c(m[1])}' -> '{_c(x[1])}'")
            elif m[2] != x[2]:
                out.append(f"member '{k}' bitfield width {m[2]} -> {x[2]}")
    if not out:
        na = [m for m in ma if not m[0]]
        nb = [m for m in mb if not m[0]]
        if len(na) != len(nb):
            out.append(f"anonymous members {len(na)} -> {len(nb)}")
        elif [m[0] for m in ma] != [m[0] for m in mb]:
            out.append("members reordered")
        else:
            out.append("anonymous members changed")
    return out


def _summary(details: list[str]) -> str:
    if len(details) <= _MAX_DETAILS:
        return "; ".join(details)
    return "; ".join(details[:_MAX_DETAILS]) + f"; (+{len(details) - _MAX_DETAILS} more)"


# ---------------------------------------------------------------------------------------------
# The walk: pairs of (old, new) definitions
# ---------------------------------------------------------------------------------------------

Half = tuple[Any, ...]  # one side's type: ("v", id) in vmlinux, ("m", kind, name, size, members) in a module
Node = tuple[Half, Half]  # (old, new)
Edge = tuple[str, Node]  # (label of the way there, node)


def half(btf: Btf, tid: int) -> Half:
    """A type's identity for the walk: vmlinux's by id; a module's own by kind, name, size and
    member names — split BTF is deduplicated against vmlinux only, so a type of one module used by
    many (``struct drm_device`` in every DRM driver's ``.BTF``) is one copy a module, compared once
    for all of them."""
    if btf.base is None or tid < btf.first_id:
        return ("v", tid)
    t = btf.type(tid)
    assert t is not None
    kind, name, size, extra = t
    if kind in (KIND_STRUCT, KIND_UNION):
        return ("m", kind, name, size, tuple(m[0] for m in extra))
    if kind in (KIND_ENUM, KIND_ENUM64):
        return ("m", kind, name, size, tuple(extra))
    return ("m", kind, name, size)


class _Graph:
    """Pairs of named types met walking both kernels in parallel, compared once each."""

    def __init__(self, old_base: Btf, new_base: Btf) -> None:
        self.bases = (old_base, new_base)
        self.at: tuple[Btf, Btf] = (old_base, new_base)  # the BTFs of the exports being walked
        self.display: dict[Node, str] = {}
        self.changes: dict[Node, str] = {}  # what changed ("" nothing)
        self.succ: dict[Node, list[Edge]] = {}
        self.reach: dict[Node, frozenset[Node]] = {}  # the first changed pairs reachable
        self.pred: dict[Node, list[Node]] = {}

    def node(self, o: int, n: int) -> Node:
        return (half(self.at[0], o), half(self.at[1], n))

    def _btf(self, side: int, h: Half) -> Btf:
        return self.bases[side] if h[0] == "v" else self.at[side]

    def compare(self, node: Node, ids: tuple[int, int]) -> str:
        """What changed between the pair's two definitions ("" nothing); fills ``succ``."""
        if node in self.changes:
            return self.changes[node]
        ob, nb = self._btf(0, node[0]), self._btf(1, node[1])
        o, n = _Def(ob, ids[0]), _Def(nb, ids[1])
        change = _summary(_describe(o, n))
        self.changes[node] = change
        self.display[node] = o.display
        if change:
            self.succ[node] = []
        else:  # same spelling: the references correspond one to one, in order
            self.succ[node] = [(la, (half(ob, ro), half(nb, rn))) for (la, ro), (_lb, rn)
                               in zip(o.refs, n.refs, strict=True)]
            self._ids.update({(half(ob, ro), half(nb, rn)): (ro, rn) for (_la, ro), (_lb, rn)
                              in zip(o.refs, n.refs, strict=True)})
        return change

    def reachable(self, roots: Iterable[tuple[Node, tuple[int, int]]]) -> None:
        """``reach`` for every pair reachable from ``roots`` (with their ids in the BTFs of
        :attr:`at`): Tarjan's strongly connected components, iteratively — every pair of a cycle of
        unchanged definitions reaches the same."""
        index: dict[Node, int] = {}
        low: dict[Node, int] = {}
        stack: list[Node] = []
        on: set[Node] = set()
        self._ids: dict[Node, tuple[int, int]] = {}
        work: list[tuple[Node, Iterator[Edge]]] = []

        def enter(v: Node) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            self.compare(v, self._ids[v])
            work.append((v, iter(self.succ[v])))

        for root, ids in roots:
            if root in self.reach or root in index:
                continue
            self._ids[root] = ids
            enter(root)
            while work:
                v, it = work[-1]
                for _label, w in it:
                    self.pred.setdefault(w, []).append(v)
                    if w in self.reach:
                        continue
                    if w not in index:
                        enter(w)
                        break
                    if w in on:
                        low[v] = min(low[v], index[w])
                else:
                    work.pop()
                    if work:
                        u = work[-1][0]
                        low[u] = min(low[u], low[v])
                    if low[v] == index[v]:
                        comp: list[Node] = []
                        while True:
                            w = stack.pop()
                            on.discard(w)
                            comp.append(w)
                            if w == v:
                                break
                        self._settle(comp)
        self._ids = {}

    def _settle(self, comp: list[Node]) -> None:
        members = set(comp)
        acc: set[Node] = set()
        for v in comp:
            if self.changes[v]:
                acc.add(v)
                continue
            for _label, w in self.succ[v]:
                if w not in members:
                    acc |= self.reach[w]
        frozen = frozenset(acc)
        for v in comp:
            self.reach[v] = frozenset((v,)) if self.changes[v] else frozen

    def distances(self, target: Node) -> dict[Node, int]:
        """Steps from every pair that reaches ``target`` through unchanged pairs to it."""
        dist = {target: 0}
        queue = deque([target])
        while queue:
            v = queue.popleft()
            for u in self.pred.get(v, ()):
                if u not in dist and not self.changes[u] and target in self.reach.get(u, ()):
                    dist[u] = dist[v] + 1
                    queue.append(u)
        return dist

    def path(self, edges: list[Edge], target: Node, dist: dict[Node, int]) -> tuple[str, ...]:
        """The shortest way from a root's edges to ``target`` (the first such edge at each step)."""
        best = min((dist[w], i) for i, (_la, w) in enumerate(edges) if w in dist)
        label, v = edges[best[1]]
        out = [label]
        while True:
            out.append(self.display[v])
            if v == target:
                return tuple(x for x in out if x)
            d = dist[v]
            label, v = next(e for e in self.succ[v] if dist.get(e[1]) == d - 1)
            out.append(label)


# ---------------------------------------------------------------------------------------------
# Exports
# ---------------------------------------------------------------------------------------------

def _decl(btf: Btf, symbol: str) -> list[int]:
    """The BTF functions and variables named ``symbol`` that are the BTF's own (a module's: not
    its base's)."""
    ids = btf.named.get((KIND_FUNC, symbol), []) + btf.named.get((KIND_VAR, symbol), [])
    return sorted(ids)


def _root(btf: Btf, tid: int, symbol: str) -> tuple[tuple[Any, ...], list[Ref]]:
    """An export's declaration as genksyms hashes it: a function's prototype (return and
    parameter types, not their names), a variable's type."""
    t = btf.type(tid)
    assert t is not None
    refs: list[Ref] = []
    if t[0] == KIND_FUNC:
        proto = btf.type(t[2])
        if proto is None or proto[0] != KIND_FUNC_PROTO:
            raise BtfError(f"function {symbol}: type {t[2]} is not a prototype")
        return ("function", _spell(btf, t[2], refs, symbol)), refs
    return ("variable", _spell(btf, t[2], refs, symbol)), refs


def _root_change(symbol: str, a: tuple[Any, ...], b: tuple[Any, ...]) -> Cause:
    if a[0] != b[0]:
        return Cause(symbol, f"{a[0]} -> {b[0]}", (symbol,))
    if a[0] == "variable":
        return Cause(symbol, f"retyped: '{_c(a[1])}' -> '{_c(b[1])}'", (symbol,))
    fa, fb = a[1], b[1]
    out = []
    if fa[1] != fb[1]:
        out.append(f"return type '{_c(fa[1])}' -> '{_c(fb[1])}'")
    if len(fa[2]) != len(fb[2]):
        out.append(f"{len(fa[2])} -> {len(fb[2])} parameters")
    out += [f"arg {i} retyped: '{_c(x)}' -> '{_c(y)}'" for i, (x, y) in enumerate(zip(fa[2], fb[2], strict=False))
            if x != y]
    return Cause(f"{symbol}()", _summary(out), (f"{symbol}()",))


Root = tuple[tuple[Any, ...], list[Ref]]


def _pick(olds: list[Root], news: list[Root]) -> tuple[Root, Root] | None:
    """The declaration to compare on each side. BTF may hold several functions of one name (static
    ones of other files beside the export): when their spellings differ, the one spelled alike on
    both sides, if exactly one is; else None (which one the export is cannot be told)."""
    ot = list(dict.fromkeys(r[0] for r in olds))
    nt = list(dict.fromkeys(r[0] for r in news))
    if len(ot) == 1 and len(nt) == 1:
        return olds[0], news[0]
    both = [t for t in ot if t in nt]
    if len(both) != 1:
        return None
    return next(r for r in olds if r[0] == both[0]), next(r for r in news if r[0] == both[0])


@dataclass
class _Pending:
    symbol: str
    edges: list[Edge]
    causes: list[Cause] = field(default_factory=list)


def explain(changes: Sequence[tuple[str, str, str]], old: KernelBtf | None, new: KernelBtf | None,
            progress: Callable[[int, int], None] | None = None) -> tuple[dict[str, tuple[Cause, ...]], CauseSummary]:
    """The causes of each CRC change ``(symbol, old owner, new owner)``, by symbol, and their
    summary. ``None`` for a side: it has no BTF."""
    out: dict[str, tuple[Cause, ...]] = {}
    unexplained = dict.fromkeys(UNEXPLAINED, 0)
    ovm, nvm = (None, None) if old is None or new is None else (old.vmlinux(), new.vmlinux())
    if old is None or new is None or ovm is None or nvm is None:
        for sym, _o, _n in changes:
            out[sym] = (Cause(None, NO_BTF),)
        unexplained[NO_BTF] = len(changes)
        return out, CauseSummary(len(changes), 0, {k: v for k, v in unexplained.items() if v}, ())
    g = _Graph(ovm, nvm)
    pending: list[_Pending] = []
    # module by module (sorted), so that a module's BTF is held only while its exports are read
    by_owner: dict[tuple[str, str], list[str]] = {}
    for sym, oo, no in changes:
        by_owner.setdefault((oo, no), []).append(sym)
    done = 0
    for (oo, no), syms in sorted(by_owner.items()):
        ob, nb = old.of(oo), new.of(no)
        if ob is not None and nb is not None:
            g.at = (ob, nb)
        group: list[_Pending] = []
        roots: list[tuple[Node, tuple[int, int]]] = []
        for sym in syms:
            if ob is None or nb is None:
                out[sym] = (Cause(None, NO_BTF),)
                continue
            od, nd = _decl(ob, sym), _decl(nb, sym)
            if not od or not nd:
                out[sym] = (Cause(None, NO_DECL),)
                continue
            try:
                picked = _pick([_root(ob, t, sym) for t in od], [_root(nb, t, sym) for t in nd])
            except BtfError:
                picked = None
            if picked is None:
                out[sym] = (Cause(None, NO_DECL),)
                continue
            ra, rb = picked
            if ra[0] != rb[0]:
                out[sym] = (_root_change(sym, ra[0], rb[0]),)
                continue
            ids = [(ro, rn) for (_la, ro), (_lb, rn) in zip(ra[1], rb[1], strict=True)]
            edges = [(la, (half(ob, ro), half(nb, rn))) for (la, ro), (_lb, rn) in zip(ra[1], rb[1], strict=True)]
            group.append(_Pending(sym, edges))
            roots += [(e[1], i) for e, i in zip(edges, ids, strict=True)]
        g.reachable(roots)
        pending += group
        if oo != "vmlinux":
            old.drop(oo)
        if no != "vmlinux":
            new.drop(no)
        done += len(syms)
        if progress is not None:
            progress(done, len(changes))
    # each changed type: one search backwards, then the path of every export it explains
    wants: dict[Node, list[_Pending]] = {}
    for p in pending:
        found: set[Node] = set()
        for _la, w in p.edges:
            found |= g.reach[w]
        for c in found:
            wants.setdefault(c, []).append(p)
        if not found:
            p.causes.append(Cause(None, NO_DIFF))
    for c in sorted(wants, key=lambda n: (g.display[n], repr(n))):
        dist = g.distances(c)
        d = g.display[c]
        for p in wants[c]:
            p.causes.append(Cause(d, g.changes[c], g.path(p.edges, c, dist)))
    for p in pending:
        # one cause a changed definition (copies of one definition in several BTFs: the shortest way)
        best: dict[tuple[str | None, str], Cause] = {}
        for cause in p.causes:
            k = (cause.type, cause.change)
            if k not in best or (len(cause.path), cause.path) < (len(best[k].path), best[k].path):
                best[k] = cause
        out[p.symbol] = tuple(sorted(best.values()))
    return dict(sorted(out.items())), summarize(out)


def summarize(causes: dict[str, tuple[Cause, ...]]) -> CauseSummary:
    """Counts and groups of a diff's causes (by symbol)."""
    unexplained = dict.fromkeys(UNEXPLAINED, 0)
    groups: dict[tuple[str, str], list[str]] = {}
    first: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
    explained = 0
    for sym, cs in causes.items():
        if cs and all(c.type is not None for c in cs):
            explained += 1
        for c in cs:
            if c.type is None:
                unexplained[c.change] = unexplained.get(c.change, 0) + 1
                continue
            k = (c.type, c.change)
            groups.setdefault(k, []).append(sym)
            if k not in first or (sym, c.path) < first[k]:
                first[k] = (sym, c.path)
    tc = sorted((TypeChange(t, ch, len(syms), first[(t, ch)][1]) for (t, ch), syms in groups.items()),
                key=lambda x: (-x.symbols, x.type, x.change))
    return CauseSummary(len(causes), explained, {k: v for k, v in unexplained.items() if v}, tuple(tc))
