"""The ops-table census: every definition, instance, call, NULL test and store of one struct type.

Given a struct name ``S`` (``kvm_x86_ops``, ``file_operations``, ``net_device_ops`` ...) and a set of
C files, :func:`run_census` runs these passes over the unpreprocessed source (see
:mod:`kmodsim.ops.parse` for how kernel macros are kept from derailing the parser):

**File selection.**  Every input is read; a file is parsed when it mentions ``S``, the static-call
prefix of ``S``, a static-call wrapper macro, or a variable or struct field declared with type
``S`` -- repeated until no new file qualifies.  Other files are counted as scanned.

**Struct pass.**  ``struct S { ... }``: function-pointer members (``int (*m)(...)``, also inside
``#ifdef``), in order, with their prototypes; other members are data members.

**Declaration pass.**  Every declaration whose type is ``struct S``: file-scope variables and
struct fields of that type are remembered as *table names*; those with an initializer list are
*instances* (``struct S vmx_ops = { .m = f, ... }``, positional initializers too), giving the
implementing function per member.  Parameters and locals are resolved per function, so a local of
another type with the same name shadows a table name.

**Access pass.**  Every ``E.m`` / ``E->m`` with ``m`` a member and ``E`` a table name (also
``(*p).m``, ``tbl[i].m``, ``((struct S *)x)->m``, ``a->b.f_op->m`` when ``f_op`` is a field of type
``S``) is classified by its context:

* call: ``p->m(...)`` (idiom ``p->m()``), ``x.m(...)`` (``x.m()``), or the first argument of
  ``INDIRECT_CALL_n(p->m, f1, ..., args)`` (``INDIRECT_CALL_n()``);
* NULL test: the truth value of the member is used -- ``if (p->m)``, ``if (!x.m)``,
  ``while (...)``, ``x.m ? a : b``, ``x.m == NULL``, ``x.m && ...``, ``WARN_ON(!x.m)`` and the other
  assertion macros (recorded as *assertions*: they claim the member is set);
* store: ``x.m = ...`` (a runtime assignment);
* anything else (compared with a function, passed as an argument, address taken) is a *read*.

**Static-call pass.**  ``static_call(<prefix>m)(...)``, ``static_call_cond(<prefix>m)(...)``,
``static_call_mod(...)`` and wrapper macros such as ``kvm_x86_call(m)(...)``.  The prefix and the
wrappers are found by the macro pass; ``kvm_x86_ops`` -> ``kvm_x86_`` is the fallback.

**Copy pass.**  Whole-table stores: ``x = *p``, ``memcpy(&x, src, n)``, ``p = &x`` / ``p = q``.

**Macro pass** (macro-aware, on ``#define`` bodies, which the parser keeps as opaque text):

* ``DECLARE_STATIC_CALL(kvm_x86_##func, *(((struct S *)0)->func))`` and the like give the
  static-call prefix; ``#define kvm_x86_call(f) static_call(kvm_x86_##f)`` defines a wrapper;
* one-parameter macros whose body mentions ``struct S``, ``<table>.param`` or ``<prefix>##param``
  (and object-like aliases of them) form the X-macro family (``KVM_X86_OP``,
  ``KVM_X86_OP_OPTIONAL``, ``KVM_X86_OP_OPTIONAL_RET0``); lines ``KVM_X86_OP(m)`` outside any
  ``#define`` in any input are the X-macro list;
* calls in the idioms above written inside macro bodies are call sites with ``in_macro: true``.

**Classification.**  A member is *optional* when an instance leaves it unset (or NULL), when an
instance gets ``inst.m = NULL`` at run time, when it is called with ``static_call_cond``, or when a
NULL test (not an assertion) sits in a function that also calls it (a *guard*).  An optional
member returning a value is *ret0* when it is called unguarded (so the missing implementation must
return 0) or a guard falls back to 0 (``x.m ? x.m(a) : 0``, ``if (!x.m) return 0;``).  Anything
else is *mandatory*.  The result is compared with the X-macro list; differences are mismatches.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tree_sitter import Node

from ..errors import Error
from . import parse
from .model import (
    MANDATORY,
    OPTIONAL,
    RET0,
    Assignment,
    CallSite,
    Instance,
    Location,
    Member,
    Mismatch,
    NullCheck,
    XMacroEntry,
    XMacroList,
)
from .parse import InputError, ParseError, SourceFile, nearest_ancestor

STATIC_CALL_MACROS = ("static_call", "static_call_cond", "static_call_mod")
ASSERT_MACROS = frozenset(
    "WARN_ON WARN_ON_ONCE WARN WARN_ONCE BUG_ON KVM_BUG_ON WARN_ON_SMP VM_BUG_ON VM_WARN_ON "
    "VM_WARN_ON_ONCE".split()
)
TRANSPARENT_CALLS = frozenset(("likely", "unlikely", "READ_ONCE"))
_CONDITION_PARENTS = ("if_statement", "while_statement", "do_statement")
_NULLISH = frozenset(("NULL", "0", "(void *)0", "nullptr", "false"))


@dataclass
class RawInput:
    """One input file as read from disk (before any parsing)."""

    path: Path
    name: str
    data: bytes
    explicit: bool  # named on the command line (not found by walking a directory)


@dataclass
class Census:
    """Everything :func:`run_census` found.  See :mod:`kmodsim.ops.render` for the JSON form."""

    struct: str
    definition: Location | None
    members: list[Member]
    data_members: list[str]
    instances: list[Instance]
    copies: list[Assignment]
    xmacro: XMacroList | None
    mismatches: list[Mismatch]
    parse_errors: list[ParseError]
    static_prefix: str
    wrappers: list[str]
    files_scanned: int
    files_parsed: list[str]
    sources: dict[str, SourceFile] = field(default_factory=dict, repr=False)
    input_errors: list[InputError] = field(default_factory=list)
    # the inputs no pass needed (they name neither the struct nor a table): parsed on demand
    unparsed: dict[str, RawInput] = field(default_factory=dict, repr=False)
    _parsed_later: dict[str, SourceFile | None] = field(default_factory=dict, repr=False)

    def files_with(self, word: str) -> list[SourceFile]:
        """Every input whose text holds ``word``, by name: the parsed sources, and the other inputs
        parsed now (once; one that cannot be read or parsed is skipped, as the census skipped it)."""
        key = word.encode()
        out = []
        for name in sorted({*self.sources, *self.unparsed}):
            sf = self.sources.get(name)
            if sf is None:
                raw = self.unparsed[name]
                if key not in raw.data:
                    continue
                if name not in self._parsed_later:
                    try:
                        self._parsed_later[name] = parse.read_source(raw.path, raw.name, raw.explicit)
                    except InputError:
                        self._parsed_later[name] = None
                sf = self._parsed_later[name]
            if sf is not None and key in sf.data:
                out.append(sf)
        return out

    def member(self, name: str) -> Member | None:
        for m in self.members:
            if m.name == name:
                return m
        return None


class CensusError(Error):
    """The census cannot be made (e.g. the struct is not defined in the inputs)."""


def load_inputs(paths: Iterable[str]) -> tuple[list[RawInput], list[InputError], Path]:
    """Read every C file under ``paths``.  Returns the inputs, the per-argument errors and the
    root directory file names are reported relative to."""
    paths = list(paths)
    root = parse.common_root(paths)
    inputs: list[RawInput] = []
    errors: list[InputError] = []
    seen: set[Path] = set()
    for arg, path, err in parse.iter_c_files(paths):
        if err is not None:
            errors.append(err)
            continue
        assert path is not None
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            name = str(real.relative_to(root))
        except ValueError:
            name = str(path)
        explicit = Path(arg) == path
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            errors.append(InputError(str(path), "is a directory"))
            continue
        except OSError as exc:
            errors.append(InputError(str(path), f"cannot read: {exc.strerror or exc}"))
            continue
        head = data[:8192]
        if head.startswith(b"\x7fELF"):
            errors.append(InputError(str(path), "not C source (an ELF object; use --binary)"))
            continue
        if b"\x00" in head:
            errors.append(InputError(str(path), "not C source (binary data)"))
            continue
        inputs.append(RawInput(path=path, name=name, data=data, explicit=explicit))
    return inputs, errors, root


# ----------------------------------------------------------------------------------------------
# small tree helpers


def _text(sf: SourceFile, node: Node) -> str:
    return sf.text(node)


_C_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_SPACES = re.compile(r"\s+")


def _squash(s: str) -> str:
    """Source text on one line, comments dropped, runs of blanks made one space."""
    if "/*" in s:
        s = _C_COMMENT.sub(" ", s)
    return _SPACES.sub(" ", s).strip()


def _declarator_name(d: Node | None) -> tuple[str | None, int, Node | None, bool]:
    """Unwrap a declarator: ``(name, pointer depth, initializer value, is_function)``."""
    depth = 0
    value = None
    while d is not None:
        t = d.type
        if t == "init_declarator":
            value = d.child_by_field_name("value")
            d = d.child_by_field_name("declarator")
        elif t == "pointer_declarator":
            depth += 1
            d = d.child_by_field_name("declarator")
        elif t in ("array_declarator", "attributed_declarator"):
            d = d.child_by_field_name("declarator") or (d.named_children[0] if d.named_children else None)
        elif t == "parenthesized_declarator":
            d = d.named_children[0] if d.named_children else None
        elif t == "function_declarator":
            inner = _declarator_name(d.child_by_field_name("declarator"))
            return inner[0], depth, value, True
        elif t in ("identifier", "field_identifier"):
            return _src(d), depth, value, False
        else:
            return None, depth, value, False
    return None, depth, value, False


def _function_pointer(decl: Node) -> tuple[str, int, Node, Node] | None:
    """If a field declarator declares a function pointer, ``(name, outer pointer depth,
    function_declarator, the '(*name)' node)``."""
    depth = 0
    d: Node | None = decl
    while d is not None and d.type == "pointer_declarator":
        depth += 1
        d = d.child_by_field_name("declarator")
    if d is None or d.type != "function_declarator":
        return None
    inner = d.child_by_field_name("declarator")
    if inner is None or inner.type != "parenthesized_declarator":
        return None
    p = inner.named_children[0] if inner.named_children else None
    if p is None or p.type != "pointer_declarator":
        return None
    ident = p.child_by_field_name("declarator")
    if ident is None or ident.type != "field_identifier":
        return None
    return _src(ident), depth, d, inner


def _iter_fields(body: Node):
    """Field declarations of a struct body, also those inside #if/#ifdef blocks."""
    for c in body.named_children:
        if c.type == "field_declaration":
            yield c
        elif c.type.startswith("preproc_") or c.type == "ERROR":
            yield from _iter_fields(c)


def preproc_block(node: Node) -> bool:
    """An #if/#ifdef block or one of its #else/#elif parts: at top level (a header's include guard)
    its items are top-level items."""
    return node.type.startswith("preproc_if") or node.type in ("preproc_else", "preproc_elif", "preproc_elifdef")


def _iter_toplevel(root: Node):
    """Top-level nodes of a translation unit, looking inside #if blocks."""
    for c in root.named_children:
        if preproc_block(c):
            yield from _iter_toplevel(c)
        else:
            yield c


def _src(node: Node | None) -> str:
    """The source text of a node the grammar guarantees (tree-sitter types every child and text
    as optional; a tree parsed from bytes has both)."""
    assert node is not None and node.text is not None
    return node.text.decode()


def _field(node: Node, name: str) -> Node:
    """A field the grammar guarantees (the operator of a unary or binary expression ...)."""
    child = node.child_by_field_name(name)
    assert child is not None
    return child


def _strip(node: Node | None) -> Node:
    assert node is not None
    while node.type == "parenthesized_expression" and node.named_children:
        node = node.named_children[0]
    return node


def _is_nullish(sf: SourceFile, node: Node | None) -> bool:
    if node is None:
        return False
    node = _strip(node)
    return node.type in ("null", "false") or _squash(_text(sf, node)) in _NULLISH


def _call_name(call: Node) -> str | None:
    f = call.child_by_field_name("function")
    if f is not None and f.type == "identifier":
        return _src(f)
    return None


# ----------------------------------------------------------------------------------------------


class _Analyzer:
    def __init__(self, struct: str, inputs: list[RawInput]) -> None:
        self.struct = struct
        self.inputs = inputs
        self.sources: dict[str, SourceFile] = {}
        self.parse_errors: list[ParseError] = []
        self.input_errors: list[InputError] = []
        self.unparsed: dict[str, RawInput] = {}
        self.definition: tuple[SourceFile, Node] | None = None
        self.members: dict[str, Member] = {}
        self.data_members: list[str] = []
        self.field_order: list[str] = []
        # names declared with type struct S: name -> pointer?  (file scope, non-static)
        self.global_tables: dict[str, bool] = {}
        # static file-scope tables: (file, name) -> pointer?
        self.static_tables: dict[tuple[str, str], bool] = {}
        # fields declared with type struct S: field name -> names of the structs holding them
        self.field_tables: dict[str, set[str]] = {}
        self._field_other_types: set[str] | None = None
        self.instances: dict[str, Instance] = {}
        self.static_prefix: str | None = None
        self.wrappers: set[str] = set()
        self.macros: list[tuple[SourceFile, Node, str, list[str] | None, str]] = []
        self.family: set[str] = set()
        self._fs_cache: dict[str, dict[str, str]] = {}
        self._local_cache: dict[tuple[str, int], dict[str, str]] = {}
        self._fn_name: dict[tuple[str, int], str | None] = {}
        self.copies: list[Assignment] = []
        self.reads: dict[str, list[Location]] = defaultdict(list)
        self._pending_instances: list[tuple[SourceFile, str, Node, Node]] = []
        self._struct_rx = re.compile(r"\bstruct\s+" + re.escape(struct) + r"\b")

    # -- file selection and parsing ------------------------------------------------------------

    def _parse(self, raw: RawInput) -> None:
        try:
            sf = parse.read_source(raw.path, raw.name, raw.explicit)
        except InputError as exc:
            self.input_errors.append(InputError(str(raw.path), exc.problem))
            return
        self.sources[raw.name] = sf
        self.parse_errors.extend(sf.errors)
        self._scan_definitions(sf)

    def select_and_parse(self) -> None:
        name = self.struct.encode()
        pending = []
        for raw in self.inputs:
            forced = raw.explicit and not str(raw.path).endswith(parse.C_SUFFIXES)
            if forced or (name in raw.data and re.search(rb"\b" + re.escape(name) + rb"\b", raw.data)):
                self._parse(raw)
            else:
                pending.append(raw)
        if self.definition is None:
            return
        if self.static_prefix is None:
            self.static_prefix = re.sub(r"ops$", "", self.struct) if self.struct.endswith("_ops") else ""
        self.resolve_macros()
        while pending:
            tokens = set(self.global_tables) | set(self.field_tables) | self.wrappers
            tokens |= {n for (_, n) in self.static_tables}
            words = [re.escape(t.encode()) for t in sorted(tokens)]
            alts = []
            if words:
                alts.append(rb"\b(?:" + rb"|".join(words) + rb")\b")
            if self.static_prefix:
                alts.append(rb"\b" + re.escape(self.static_prefix.encode()) + rb"\w")
            if not alts:
                break
            rx = re.compile(b"|".join(alts))
            hits = [r for r in pending if rx.search(r.data)]
            if not hits:
                break
            pending = [r for r in pending if r not in hits]
            for raw in hits:
                self._parse(raw)
            self.resolve_macros()
        self.unparsed = {raw.name: raw for raw in pending}
        for sf, nm, d, value in self._pending_instances:
            self._read_instance(sf, nm, d, value)

    # -- struct and declaration pass ------------------------------------------------------------

    def _scan_definitions(self, sf: SourceFile) -> None:
        """Struct/declaration pass and macro collection in one traversal."""
        q = parse.query(
            f'(struct_specifier name: (type_identifier) @n (#eq? @n "{self.struct}")) @s\n'
            "(preproc_function_def name: (identifier) @name parameters: (preproc_params) @params"
            " value: (preproc_arg) @body)\n"
            "(preproc_def name: (identifier) @name value: (preproc_arg) @body)"
        )
        for index, m in parse.QueryCursor(q).matches(sf.tree.root_node):
            if index == 0:
                self._declaration(sf, m["s"][0])
            else:
                self._macro(sf, m)

    def _declaration(self, sf: SourceFile, node: Node) -> None:
        parent = node.parent
        if node.child_by_field_name("body") is not None:
            if self.definition is None:
                self.definition = (sf, node)
                self._read_struct(sf, node)
            return
        if parent is None:
            return
        if parent.type == "field_declaration" and parent.child_by_field_name("type") == node:
            holder = _container_struct(parent)
            for d in parent.children_by_field_name("declarator"):
                nm, _depth, _v, is_fn = _declarator_name(d)
                if nm and not is_fn:
                    self.field_tables.setdefault(nm, set()).add(holder)
        elif parent.type == "declaration" and parent.child_by_field_name("type") == node:
            in_function = parse.enclosing_function(parent) is not None
            static = any(c.type == "storage_class_specifier" and c.text == b"static" for c in parent.children)
            for d in parent.children_by_field_name("declarator"):
                nm, depth, value, is_fn = _declarator_name(d)
                if not nm or is_fn:
                    continue
                if not in_function:
                    if static and sf.name.endswith(".c"):
                        self.static_tables[(sf.name, nm)] = depth > 0
                    else:
                        self.global_tables[nm] = depth > 0
                if value is not None and value.type == "initializer_list" and depth == 0:
                    self._pending_instances.append((sf, nm, d, value))

    def _read_struct(self, sf: SourceFile, node: Node) -> None:
        body = node.child_by_field_name("body")
        if body is None:  # a declaration without a member list
            return
        for fd in _iter_fields(body):
            tnode = fd.child_by_field_name("type")
            if tnode is None:
                continue
            type_text = _squash(sf.data[fd.start_byte : tnode.end_byte].decode("utf-8", "replace"))
            for d in fd.children_by_field_name("declarator"):
                fp = _function_pointer(d)
                if fp is None:
                    nm, _depth, _v, _f = _declarator_name(d)
                    if nm:
                        self.data_members.append(nm)
                        self.field_order.append(nm)
                    continue
                name, depth, _fdecl, paren = fp
                decl_text = (
                    sf.data[d.start_byte : paren.start_byte]
                    + b"@@NAME@@"
                    + sf.data[paren.end_byte : d.end_byte]
                ).decode("utf-8", "replace")
                proto = _squash(re.sub(r"//[^\n]*", " ", f"{type_text} {decl_text}"))
                bare_type = _squash(re.sub(r"\b(const|volatile)\b", "", type_text))
                self.members[name] = Member(
                    name=name,
                    index=len(self.members),
                    file=sf.name,
                    line=d.start_point[0] + 1,
                    return_type=type_text + " " + "*" * depth if depth else type_text,
                    returns_void=(bare_type == "void" and depth == 0),
                    prototype=proto,
                )
                self.field_order.append(name)

    def _read_instance(self, sf: SourceFile, name: str, decl: Node, init: Node) -> None:
        impls: dict[str, str] = {}
        nulls: list[str] = []
        position = 0

        def walk(n: Node, in_error: bool = False) -> None:
            nonlocal position
            for c in n.named_children:
                if c.type == "initializer_pair":
                    desig = c.children_by_field_name("designator")
                    value = c.child_by_field_name("value")
                    if len(desig) == 1 and desig[0].type == "field_designator" and value is not None:
                        fname = _src(desig[0].named_children[0])
                        self._store_init(sf, fname, value, impls, nulls)
                        if fname in self.field_order:
                            position = self.field_order.index(fname) + 1
                elif c.type.startswith("preproc_") or c.type == "ERROR":
                    walk(c, in_error or c.type == "ERROR")
                elif c.type == "comment" or in_error or designated:
                    # what an unparsable region holds is not trusted as a positional value, and in
                    # a designated list a bare item is a macro (KVM_COMPAT(f) -> .compat_ioctl = f)
                    continue
                else:  # positional initializer
                    if position < len(self.field_order):
                        self._store_init(sf, self.field_order[position], c, impls, nulls)
                    position += 1

        designated = any(c.type == "initializer_pair" for c in init.named_children)
        walk(init)
        self.instances[name] = Instance(
            name=name, file=sf.name, line=decl.start_point[0] + 1, implementations=impls, explicit_null=nulls
        )

    def _store_init(self, sf: SourceFile, fname: str, value: Node, impls: dict, nulls: list) -> None:
        if fname not in self.members:
            return
        if _is_nullish(sf, value):
            nulls.append(fname)
        else:
            impls[fname] = _squash(_text(sf, value))

    # -- macro pass --------------------------------------------------------------------------

    def _macro(self, sf: SourceFile, m: dict) -> None:
        name = _src(m["name"][0])
        params = None
        if "params" in m:
            params = [_src(p) for p in m["params"][0].named_children if p.type == "identifier"]
        body = _text(sf, m["body"][0])
        self.macros.append((sf, m["body"][0], name, params, body))
        if params and self.static_prefix is None and "STATIC_CALL" in body:
            sc = re.search(
                r"\b(?:DECLARE|DEFINE)_STATIC_CALL\w*\s*\(\s*(\w+)\s*##\s*" + re.escape(params[0])
                + r"\b[^;]*\bstruct\s+" + re.escape(self.struct) + r"\b",
                body,
                re.S,
            )
            if sc:
                self.static_prefix = sc.group(1)

    def resolve_macros(self) -> None:
        """Wrappers and the X-macro family, once the static-call prefix is known."""
        prefix = self.static_prefix or ""
        tables = set(self.global_tables) | {n for (_, n) in self.static_tables} | {self.struct}
        for _sf, _node, name, params, body in self.macros:
            if params is None or len(params) != 1:
                continue
            p = re.escape(params[0])
            if prefix and re.fullmatch(
                r"\s*\(?\s*static_call(?:_cond)?\s*\(\s*" + re.escape(prefix) + r"\s*##\s*" + p + r"\s*\)\s*\)?\s*",
                body.replace("\\\n", " "),
            ):
                self.wrappers.add(name)
                continue
            mentions = re.search(r"\bstruct\s+" + re.escape(self.struct) + r"\b", body) or (
                prefix and re.search(r"\b" + re.escape(prefix) + r"\s*##\s*" + p + r"\b", body)
            )
            if not mentions:
                tabs = "|".join(re.escape(t) for t in sorted(tables))
                mentions = re.search(r"\b(?:" + tabs + r")\s*(?:\.|->)\s*" + p + r"\b", body)
            if mentions:
                self.family.add(name)
        changed = True
        while changed:  # object-like aliases: #define KVM_X86_OP_OPTIONAL KVM_X86_OP
            changed = False
            for _sf, _node, name, params, body in self.macros:
                if params is None and body.strip() in self.family and name not in self.family:
                    self.family.add(name)
                    changed = True

    # -- access pass -------------------------------------------------------------------------

    def _fs_names(self, sf: SourceFile) -> dict[str, str]:
        """File-scope declarations of ``sf``: name -> struct name of its type ("" if not a struct)."""
        cached = self._fs_cache.get(sf.name)
        if cached is not None:
            return cached
        out: dict[str, str] = {}
        for c in _iter_toplevel(sf.tree.root_node):
            if c.type == "declaration":
                _declared_types(c, out, functions=False)
        self._fs_cache[sf.name] = out
        return out

    def _locals(self, sf: SourceFile, fn: Node) -> dict[str, str]:
        """Parameters and locals of function ``fn``: name -> struct name of its type ("" if none)."""
        key = (sf.name, fn.start_byte)
        cached = self._local_cache.get(key)
        if cached is not None:
            return cached
        out: dict[str, str] = {}
        q = parse.query("[(parameter_declaration) (declaration)] @d")
        for d in parse.captures(q, fn).get("d", []):
            _declared_types(d, out, functions=d.type == "parameter_declaration")
        self._local_cache[key] = out
        return out

    def _type_of(self, sf: SourceFile, node: Node | None) -> str | None:
        """Struct name of the type of an identifier-like expression ("" if not a struct), None if unknown."""
        n = _strip(node)
        while True:
            if n.type == "pointer_expression" and n.children and n.children[0].type == "*":
                n = _strip(n.child_by_field_name("argument"))
            elif n.type == "subscript_expression":
                n = _strip(n.child_by_field_name("argument"))
            else:
                break
        if n.type == "identifier":
            name = _src(n)
            fn = parse.enclosing_function(n)
            if fn is not None:
                local = self._locals(sf, fn)
                if name in local:
                    return local[name]
            fs = self._fs_names(sf)
            if name in fs:
                return fs[name]
            if (sf.name, name) in self.static_tables or name in self.global_tables:
                return self.struct
            return None
        if n.type == "cast_expression":
            t = n.child_by_field_name("type")
            m = re.search(r"\b(?:struct|union)\s+(\w+)", _src(t)) if t is not None else None
            return m.group(1) if m else ""
        return None

    def _is_table(self, sf: SourceFile, obj: Node) -> bool:
        """Does expression ``obj`` denote a struct S (or a pointer to one)?"""
        n = _strip(obj)
        if n.type == "field_expression":
            f = n.child_by_field_name("field")
            holders = self.field_tables.get(_src(f)) if f is not None else None
            if not holders:
                return False
            base = self._type_of(sf, n.child_by_field_name("argument"))
            if base:  # the holder's type is known: the field must be one of S's holders
                return base in holders
            return _src(f) not in self._other_field_types()
        return self._type_of(sf, n) == self.struct

    def _other_field_types(self) -> set[str]:
        """Field names of S-typed fields that some parsed struct also declares with another type
        (``ops``, say): such a name alone does not tell that ``x->ops`` is a table."""
        if self._field_other_types is None:
            out: set[str] = set()
            q = parse.query("(field_declaration declarator: (_) @d) @fd")
            rx = re.compile(rb"\b(?:" + b"|".join(re.escape(n.encode()) for n in sorted(self.field_tables)) + rb")\b")
            for sf in self.sources.values():
                if not rx.search(sf.data):
                    continue
                for _i, m in parse.QueryCursor(q).matches(sf.tree.root_node):
                    nm, _depth, _v, is_fn = _declarator_name(m["d"][0])
                    if nm in self.field_tables and not is_fn:
                        t = m["fd"][0].child_by_field_name("type")
                        if not (t is not None and t.type == "struct_specifier" and _struct_name(t) == self.struct):
                            out.add(nm)
            self._field_other_types = out
        return self._field_other_types

    def _function(self, sf: SourceFile, node: Node) -> tuple[str | None, int]:
        fn = parse.enclosing_function(node)
        if fn is None:
            return None, -1
        key = (sf.name, fn.start_byte)
        if key not in self._fn_name:
            self._fn_name[key] = parse.function_name(fn)
        return self._fn_name[key], fn.start_byte

    def _span(self, node: Node) -> tuple[int, int] | None:
        fn = parse.enclosing_function(node)
        return (fn.start_byte, fn.end_byte) if fn is not None else None

    def _call_site(self, loc: dict, member: str, idiom: str, callee: Node, call: Node) -> CallSite:
        """A call of ``member`` whose callee expression is ``callee``, in the call ``call``."""
        return CallSite(**loc, member=member, idiom=idiom, value_used=_value_used(call),
                        in_parse_error=_in_error(callee), span=(callee.start_byte, callee.end_byte),
                        function_span=self._span(callee))

    def _loc(self, sf: SourceFile, node: Node) -> dict:
        fname, _ = self._function(sf, node)
        return {
            "file": sf.name,
            "line": node.start_point[0] + 1,
            "column": node.start_point[1] + 1,
            "function": fname,
        }

    def scan_uses(self, sf: SourceFile) -> None:
        """Access, static-call and copy passes in one traversal of ``sf``'s tree."""
        if not self.members:
            return
        for index, m in parse.QueryCursor(self._use_query()).matches(sf.tree.root_node):
            if index == 0:
                if self._is_table(sf, m["obj"][0]):
                    self._classify(sf, m["fe"][0], _src(m["f"][0]))
            elif index == 1:
                self._static_call(sf, m)
            else:
                self._copy(sf, m)

    def _use_query(self):
        members = " ".join(f'"{m}"' for m in self.members)
        callers = " ".join(f'"{c}"' for c in list(STATIC_CALL_MACROS) + sorted(self.wrappers))
        patterns = [
            f"(field_expression argument: (_) @obj field: (field_identifier) @f (#any-of? @f {members})) @fe",
            "(call_expression function: (call_expression function: (identifier) @w"
            f" arguments: (argument_list . (identifier) @a .)) @inner (#any-of? @w {callers})) @call",
            "(call_expression function: (identifier) @f arguments: (argument_list . (_) @dst)"
            ' (#any-of? @f "memcpy" "__memcpy" "memmove")) @a',
        ]
        names = sorted(set(self.global_tables) | {n for (_f, n) in self.static_tables})
        if names:
            alts = " ".join(f'"{n}"' for n in names)
            patterns.append(f"(assignment_expression left: (identifier) @l right: (_) @r (#any-of? @l {alts})) @a")
            patterns.append(
                "(assignment_expression left: (pointer_expression argument: (identifier) @pl) @l"
                f" right: (_) @r (#any-of? @pl {alts})) @a"
            )
        if self.field_tables:
            alts = " ".join(f'"{n}"' for n in sorted(self.field_tables))
            patterns.append(
                "(assignment_expression left: (field_expression field: (field_identifier) @lf) @l"
                f" right: (_) @r (#any-of? @lf {alts})) @a"
            )
        return parse.query("\n".join(patterns))

    def _classify(self, sf: SourceFile, fe: Node, member: str) -> None:
        mem = self.members[member]
        op = fe.child_by_field_name("operator")
        arrow = op is not None and op.type == "->"
        shown = "p->m" if arrow else "x.m"
        loc = self._loc(sf, fe)
        child, p = fe, fe.parent
        while p is not None and p.type == "parenthesized_expression" and p.parent is not None and (
            p.parent.type not in _CONDITION_PARENTS
        ):
            child, p = p, p.parent
        if p is None:
            return
        if p.type == "call_expression" and p.child_by_field_name("function") == child:
            mem.call_sites.append(self._call_site(loc, member, f"{shown}()", fe, p))
            return
        if p.type == "argument_list" and p.parent is not None and p.parent.type == "call_expression":
            callee = _call_name(p.parent) or ""
            if re.fullmatch(r"INDIRECT_CALL_\d+", callee) and p.named_children and p.named_children[0] == child:
                call = p.parent
                n = int(callee.rsplit("_", 1)[1])
                args = [a for a in p.named_children if a.type != "comment"]
                if len(args) > n + 1:
                    span, suffix = (call.start_byte, args[n + 1].start_byte), "("
                else:
                    span, suffix = (call.start_byte, call.end_byte), "()"
                mem.call_sites.append(
                    CallSite(
                        **loc,
                        member=member,
                        idiom=f"{callee}()",
                        value_used=_value_used(call),
                        in_parse_error=_in_error(fe),
                        function_span=self._span(fe),
                        span=span,
                        replacement_suffix=suffix,
                    )
                )
                return
        if p.type == "assignment_expression" and p.child_by_field_name("left") == child:
            right = p.child_by_field_name("right")
            opn = p.child_by_field_name("operator")
            value = _squash(_text(sf, right)) if right is not None else ""
            a = Assignment(
                **loc,
                target=_squash(_text(sf, fe)),
                value=value,
                idiom=f"{shown} {_src(opn) if opn is not None else '='} ...",
                member=member,
            )
            mem.assignments.append(a)
            obj = _strip(fe.child_by_field_name("argument"))
            if a.sets_null and obj.type == "identifier" and _src(obj) in self.instances:
                mem.cleared_in.append(_src(obj))
            return
        test = _null_test(sf, fe, shown)
        if test is not None:
            idiom, assertion, fallback, predicate = test
            mem.null_checks.append(NullCheck(**loc, member=member, idiom=idiom, assertion=assertion,
                                             fallback=fallback, predicate=predicate))
            return
        self.reads[member].append(Location(**loc))

    # -- static-call pass --------------------------------------------------------------------

    def _static_call(self, sf: SourceFile, m: dict) -> None:
        """``static_call(<prefix>m)(...)``, ``static_call_cond(...)``, wrapper ``kvm_x86_call(m)(...)``."""
        prefix = self.static_prefix or ""
        w = _src(m["w"][0])
        arg = _src(m["a"][0])
        if w in self.wrappers:
            member = arg
        elif prefix and arg.startswith(prefix):
            member = arg[len(prefix):]
        else:
            return
        if member not in self.members:
            return
        inner = m["inner"][0]
        call = m["call"][0]
        self.members[member].call_sites.append(self._call_site(self._loc(sf, inner), member, f"{w}()", inner, call))

    def scan_macro_bodies(self) -> None:
        """Call sites written inside #define bodies (opaque to the parser)."""
        if not self.members:
            return
        prefix = self.static_prefix or ""
        rx_parts = [r"\b(?P<sc>static_call(?:_cond|_mod)?)\s*\(\s*" + re.escape(prefix) + r"(?P<scm>\w+)\s*\)\s*\("]
        if self.wrappers:
            rx_parts.append(
                r"\b(?P<w>" + "|".join(map(re.escape, sorted(self.wrappers))) + r")\s*\(\s*(?P<wm>\w+)\s*\)\s*\("
            )
        tables = set(self.global_tables) | set(self.field_tables) | {n for (_, n) in self.static_tables}
        if tables:
            rx_parts.append(
                r"\b(?P<t>" + "|".join(map(re.escape, sorted(tables))) + r")\s*(?P<op>\.|->)\s*(?P<tm>\w+)\s*\("
            )
        rx = re.compile("|".join(rx_parts))
        for sf, body_node, name, params, body in self.macros:
            params = params or []
            for m in rx.finditer(body):
                if m.group("sc") and prefix:
                    member, idiom = m.group("scm"), f"{m.group('sc')}()"
                elif m.groupdict().get("w"):
                    member, idiom = m.group("wm"), f"{m.group('w')}()"
                elif m.groupdict().get("t"):
                    member = m.group("tm")
                    idiom = "p->m()" if m.group("op") == "->" else "x.m()"
                else:
                    continue
                if member not in self.members or member in params:
                    continue
                off = body_node.start_byte + len(body[: m.start()].encode())
                line = sf.line_of(off)
                col = off - (sf.data.rfind(b"\n", 0, off) + 1) + 1
                self.members[member].call_sites.append(
                    CallSite(file=sf.name, line=line, column=col, function=name, member=member, idiom=idiom,
                             in_macro=True)
                )

    # -- copy pass ---------------------------------------------------------------------------

    def _copy(self, sf: SourceFile, m: dict) -> None:
        """Whole-table stores: ``x = *p``, ``p = &x``, ``*p = x``, ``memcpy(&x, src, n)``."""
        a = m["a"][0]
        if "l" in m:
            left = m["l"][0]
            if left.type == "pointer_expression" and left.children[0].type != "*":
                return
            if not self._is_table(sf, left):
                return
            right = m["r"][0]
            idiom = "p = ..." if self._is_pointer(sf, left) else "x = ..."
            self.copies.append(
                Assignment(**self._loc(sf, a), target=_squash(_text(sf, left)),
                           value=_squash(_text(sf, right)), idiom=idiom)
            )
            return
        dst = _strip(m["dst"][0])
        if dst.type == "pointer_expression" and dst.children[0].type == "&":
            target = dst.child_by_field_name("argument")
            if target is None or not self._is_table(sf, target):
                return
        elif not self._is_table(sf, dst):
            return
        else:
            target = dst
        args = a.child_by_field_name("arguments")
        src = args.named_children[1] if args is not None and len(args.named_children) > 1 else None
        self.copies.append(
            Assignment(**self._loc(sf, a), target=_squash(_text(sf, target)),
                       value=_squash(_text(sf, src)) if src is not None else "",
                       idiom=f"{_call_name(a)}(&x, ...)")
        )

    def _is_pointer(self, sf: SourceFile, n: Node) -> bool:
        if n.type != "identifier":
            return False
        name = _src(n)
        if (sf.name, name) in self.static_tables:
            return self.static_tables[(sf.name, name)]
        return self.global_tables.get(name, False)

    # -- x-macro list ------------------------------------------------------------------------

    def read_xmacro(self) -> XMacroList | None:
        family = {f for f in self.family if not f.startswith("_")}
        if not family:
            guess = self.struct.upper()
            guess = guess[:-1] if guess.endswith("S") else guess
            family = {guess, guess + "_OPTIONAL", guess + "_OPTIONAL_RET0"}
        base = min(family, key=len)
        names = sorted(family, key=len, reverse=True)
        rx = re.compile(
            r"^[ \t]*(" + "|".join(map(re.escape, names)) + r")[ \t]*\([ \t]*(\w+)[ \t]*\)[ \t]*;?[ \t]*$", re.M
        )
        best: list[XMacroEntry] = []
        key = base.encode()
        for raw in self.inputs:
            if key not in raw.data:
                continue
            text = _blank_comments_and_pp(raw.data.decode("utf-8", "replace"))
            entries = []
            for m in rx.finditer(text):
                macro, member = m.group(1), m.group(2)
                if macro.endswith("_OPTIONAL_RET0"):
                    cls = RET0
                elif macro.endswith(("_OPTIONAL", "_NULL")):  # _NULL: 5.12-5.17's name
                    cls = OPTIONAL
                else:
                    cls = MANDATORY
                entries.append(XMacroEntry(member, macro, cls, raw.name, text.count("\n", 0, m.start()) + 1))
            if len(entries) > len(best):
                best = entries
        if not best:
            return None
        return XMacroList(family=base, file=best[0].file, entries=best)

    # -- classification ----------------------------------------------------------------------

    def classify(self) -> None:
        for inst in self.instances.values():
            for name, mem in self.members.items():
                if name in inst.implementations:
                    mem.implementations[inst.name] = inst.implementations[name]
                else:
                    mem.unset_in.append(inst.name)
        for mem in self.members.values():
            guards: dict[tuple[str, str | None], list[NullCheck]] = defaultdict(list)
            for nc in mem.null_checks:
                if not nc.assertion:
                    guards[(nc.file, nc.function)].append(nc)
            predicates = {nc.function: nc for nc in mem.null_checks if nc.predicate and nc.function}
            pred_rx = (
                re.compile(rb"\b(" + b"|".join(re.escape(f.encode()) for f in sorted(predicates)) + rb")\s*\(")
                if predicates else None
            )
            for cs in mem.call_sites:
                if cs.in_macro:
                    continue
                if (cs.file, cs.function) in guards:
                    cs.guarded = True
                elif pred_rx is not None and cs.function_span is not None:
                    body = self.sources[cs.file].data[cs.function_span[0] : cs.function_span[1]]
                    hit = pred_rx.search(body)
                    if hit is not None:
                        cs.guarded = True
                        nc = predicates[hit.group(1).decode()]
                        guards[(cs.file, cs.function)].append(nc)
            called_in = {(cs.file, cs.function) for cs in mem.call_sites if not cs.in_macro}
            ev: list[str] = []
            ev += [f"unset in {i}" for i in mem.unset_in]
            ev += [f"set to NULL at run time in {i}" for i in sorted(set(mem.cleared_in))]
            ev += [f"static_call_cond at {c.where()}" for c in mem.call_sites if c.idiom == "static_call_cond()"]
            guard_tests = []
            for k, lst in guards.items():
                if k in called_in:
                    guard_tests += [nc for nc in lst if nc not in guard_tests]
            ev += [
                f"NULL test guards the call at {nc.where()}"
                + (f" (through {nc.function}())" if nc.predicate else "")
                for nc in guard_tests
            ]
            if not ev:
                mem.classification = MANDATORY
                mem.evidence = [f"asserted by {nc.idiom} at {nc.where()}" for nc in mem.null_checks if nc.assertion]
                continue
            mem.evidence = ev
            mem.classification = OPTIONAL
            if mem.returns_void:
                continue
            r0 = [f"unguarded call at {c.where()}" for c in mem.call_sites
                  if not c.guarded and c.idiom != "static_call_cond()"]
            r0 += [f"NULL falls back to 0 at {nc.where()}" for nc in guard_tests if nc.fallback == "zero"]
            if r0:
                mem.classification = RET0
                mem.evidence += r0

    def compare(self, xm: XMacroList | None) -> list[Mismatch]:
        if xm is None:
            return []
        out: list[Mismatch] = []
        listed = {e.name: e for e in xm.entries}
        for mem in self.members.values():
            e = listed.get(mem.name)
            if e is None:
                out.append(Mismatch(mem.name, "not in x-macro list", mem.classification, None, mem.evidence))
                continue
            mem.xmacro_class = e.classification
            if e.classification != mem.classification:
                out.append(Mismatch(mem.name, "classification", mem.classification, e.classification,
                                    mem.evidence))
        for e in xm.entries:
            if e.name not in self.members:
                out.append(Mismatch(e.name, "not a member", None, e.classification, []))
        return out


def _container_struct(field_decl: Node) -> str:
    """Name of the struct (or union) a field declaration belongs to ("" if anonymous)."""
    p = field_decl.parent
    while p is not None and p.type not in ("struct_specifier", "union_specifier"):
        p = p.parent
    return (_struct_name(p) or "") if p is not None else ""


def _declared_types(decl: Node, out: dict[str, str], functions: bool) -> None:
    """Record name -> struct name ("" if not a struct) for each declarator of ``decl``."""
    t = decl.child_by_field_name("type")
    tname = (_struct_name(t) or "") if t is not None and t.type in ("struct_specifier", "union_specifier") else ""
    for d in decl.children_by_field_name("declarator"):
        nm, _depth, _v, is_fn = _declarator_name(d)
        if nm and (functions or not is_fn):
            out[nm] = tname


def _struct_name(spec: Node) -> str | None:
    n = spec.child_by_field_name("name")
    return _src(n) if n is not None else None


def _value_used(call: Node) -> bool:
    p = call.parent
    while p is not None and p.type == "parenthesized_expression":
        p = p.parent
    return p is not None and p.type not in ("expression_statement", "comma_expression")


def _in_error(node: Node) -> bool:
    return nearest_ancestor(node, "ERROR") is not None


def _null_test(sf: SourceFile, fe: Node, shown: str) -> tuple[str, bool, str | None, bool] | None:
    """If the member access ``fe`` is used as a truth value: ``(idiom, assertion, fallback,
    predicate)`` -- see :class:`kmodsim.ops.model.NullCheck`."""
    negated = False
    tested = False
    child, p = fe, fe.parent
    while p is not None:
        t = p.type
        if t == "parenthesized_expression":
            if p.parent is not None and p.parent.type in _CONDITION_PARENTS:
                kw = p.parent.type.split("_")[0]
                kw = "while" if kw == "do" else kw
                test = f"!{shown}" if negated else shown
                fallback = _fallback(sf, p.parent, negated) if kw == "if" else None
                return f"{kw} ({test})", False, fallback, False
            child, p = p, p.parent
            continue
        if t == "unary_expression" and _field(p, "operator").type == "!":
            negated = not negated
            tested = True
        elif t == "binary_expression":
            op = _field(p, "operator").type
            if op in ("&&", "||"):
                tested = True
            elif op in ("==", "!=") and not tested:
                other = p.child_by_field_name("right" if p.child_by_field_name("left") == child else "left")
                if not _is_nullish(sf, other):
                    return None  # compared with something else (a function): a read
                negated = negated != (op == "==")
                tested = True
            else:
                return None
        elif t == "conditional_expression" and p.child_by_field_name("condition") == child:
            test = f"!{shown}" if negated else shown
            alt = p.child_by_field_name("consequence" if negated else "alternative")
            return f"{test} ? :", False, ("zero" if _is_nullish(sf, alt) else "else"), False
        elif t == "for_statement" and p.child_by_field_name("condition") == child:
            return f"for (;{'!' if negated else ''}{shown};)", False, None, False
        elif t == "argument_list" and p.parent is not None and p.parent.type == "call_expression":
            callee = _call_name(p.parent) or ""
            if callee in ASSERT_MACROS:
                test = f"!{shown}" if negated else shown
                return f"{callee}({test})", True, None, False
            if callee in TRANSPARENT_CALLS or callee.startswith("KVM_BUG"):
                child, p = p.parent, p.parent.parent
                continue
            break
        elif t == "comma_expression":
            break
        else:
            break
        child, p = p, p.parent
    if tested or (p is not None and p.type == "return_statement"):
        predicate = p is not None and p.type == "return_statement" and not negated
        return (f"{shown} == NULL" if negated else f"{shown} != NULL"), False, None, predicate
    return None


def _fallback(sf: SourceFile, ifs: Node, negated: bool) -> str | None:
    """What an ``if`` NULL test does when the member is NULL."""
    if not negated:
        return "else" if ifs.child_by_field_name("alternative") is not None else None
    body = ifs.child_by_field_name("consequence")
    if body is not None and body.type == "compound_statement":
        stmts = [c for c in body.named_children if c.type != "comment"]
        body = stmts[-1] if stmts else None
    if body is None:
        return None
    if body.type == "return_statement":
        vals = [c for c in body.named_children if c.type != "comment"]
        if not vals:
            return "return"
        return "zero" if _is_nullish(sf, vals[0]) else "error"
    if body.type in ("goto_statement", "break_statement", "continue_statement"):
        return "error"
    return None


_COMMENT_OR_PP = re.compile(r"/\*.*?\*/|//[^\n]*|^[ \t]*#(?:\\\n|[^\n])*", re.S | re.M)


def _blank_comments_and_pp(text: str) -> str:
    return _COMMENT_OR_PP.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def run_census(struct: str, inputs: list[RawInput]) -> Census:
    """Run every pass of this module over ``inputs`` for ``struct S``.

    Raises :class:`CensusError` if no input defines ``struct S``.
    """
    az = _Analyzer(struct, inputs)
    az.select_and_parse()
    if az.definition is None:
        raise CensusError(f"struct {struct}: no definition found in the inputs")
    az.resolve_macros()
    for sf in az.sources.values():
        az.scan_uses(sf)
    az.scan_macro_bodies()
    for mem in az.members.values():
        mem.call_sites.sort(key=lambda c: (c.file, c.line, c.column))
        mem.null_checks.sort(key=lambda c: (c.file, c.line, c.column))
        mem.assignments.sort(key=lambda c: (c.file, c.line, c.column))
        mem.reads = sorted(az.reads.get(mem.name, []), key=lambda c: (c.file, c.line, c.column))
    az.classify()
    xm = az.read_xmacro()
    mismatches = az.compare(xm)
    dsf, dnode = az.definition
    definition = Location(file=dsf.name, line=dnode.start_point[0] + 1, column=dnode.start_point[1] + 1,
                          function=None)
    return Census(
        struct=struct,
        definition=definition,
        members=list(az.members.values()),
        data_members=az.data_members,
        instances=list(az.instances.values()),
        copies=sorted(az.copies, key=lambda c: (c.file, c.line, c.column)),
        xmacro=xm,
        mismatches=mismatches,
        parse_errors=sorted(az.parse_errors, key=lambda e: (e.file, e.line, e.column)),
        static_prefix=az.static_prefix or "",
        wrappers=sorted(az.wrappers),
        files_scanned=len(inputs),
        files_parsed=sorted(az.sources),
        sources=az.sources,
        input_errors=az.input_errors,
        unparsed=az.unparsed,
    )
