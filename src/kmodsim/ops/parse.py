"""Tree-sitter plumbing: load kernel C files, neutralise kernel macros, parse, report errors.

Kernel C is parsed *unpreprocessed*.  Two families of macros derail a plain C grammar, so before
parsing the source is *masked* -- rewritten byte-for-byte with the same length, so that every
offset, line and column in the masked text is also valid in the original text:

* **attribute macros** (``__init``, ``__read_mostly``, ``__user``, ``noinstr``, ``__must_check``,
  ``__aligned(8)``, ``__printf(1, 2)``, ``__acquires(x)`` ...) sit where C expects a declarator
  or a type; they are replaced by spaces (with their argument list when they take one);
* **type arguments** (``min_t(unsigned int, a, b)``, ``container_of(p, struct T, m)``) are
  turned into a plain identifier argument;
* **iterator macros** (``list_for_each_entry(pos, head, member) { ... }``, ``kvm_for_each_vcpu``,
  ``for_each_set_bit`` and anything named ``*for_each*`` used in statement position) look like a
  call followed by a statement; the macro name is replaced by ``while`` padded with spaces, so the
  argument list parses as a comma expression and the body as the loop body.

Masking only ever touches identifiers outside comments, string and character literals and
preprocessor lines.  Whatever still does not parse is reported by :func:`collect_errors`: each
``ERROR`` or ``MISSING`` node, with its line and the function (or file scope) that contains it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import tree_sitter_c
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

from ..errors import PathError

C_SUFFIXES = (".c", ".h")

# Attribute-like macros expanded to nothing (or to __attribute__) by the kernel's headers.
ATTRIBUTE_MACROS = frozenset(
    """
    __init __exit __initdata __initconst __exitdata __init_or_module __initdata_or_module
    __meminit __meminitdata __init_memblock __ref __refdata __refconst __read_mostly
    __ro_after_init __user __kernel __iomem __percpu __rcu __force __bitwise __safe __private
    __must_check __always_inline __noinline noinline __cold __hot __weak __pure __maybe_unused
    __always_unused __used __visible asmlinkage noinstr __noreturn __packed __cacheline_aligned
    __cacheline_aligned_in_smp ____cacheline_aligned ____cacheline_aligned_in_smp
    __page_aligned_data __page_aligned_bss __latent_entropy __noclone __nocfi __no_kcsan
    __no_sanitize_address __no_stack_protector notrace __flatten __randomize_layout
    __no_randomize_layout __designated_init __nonstring __kprobes __irq_entry __sched __cpuidle
    __attribute_const__ __malloc __noendbr __naked __nostackprotector __fastpath_inline
    __always_unused __ksym __bpf_kfunc __lockfunc __init_refok __head __nosavedata __indirect_thunk
    """.split()
)

# Attribute-like macros that take an argument list, which is masked along with the name.
ATTRIBUTE_MACROS_WITH_ARGS = frozenset(
    """
    __aligned __section __printf __scanf __acquires __releases __must_hold __cond_acquires
    __cond_releases __counted_by __alloc_size __assume_aligned __free __cleanup __diag_ignore
    __no_sanitize_or_inline __attribute_used_by __symbol_aligned __guarded_by __pt_guarded_by
    """.split()
)

_ITERATOR_NAME = re.compile(rb"(?:^|_)for_each(?:_|$)")
_INTERESTING = b"|".join(
    [n.encode() for n in sorted(ATTRIBUTE_MACROS | ATTRIBUTE_MACROS_WITH_ARGS, key=lambda n: (-len(n), n))]
)
# The tokens masking cares about: comments, literals and preprocessor lines (skipped as a whole,
# so nothing inside them is masked) and the identifiers that may need masking.
_TOKEN = re.compile(
    rb"""
    (?P<comment>/\*.*?(?:\*/|\Z)|//[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?)
  | (?P<pp>^[ \t]*\#(?:\\\r?\n|[^\n])*)
  | \b(?P<ident>"""
    + _INTERESTING
    + rb"""|struct|union|case|min_t|max_t|clamp_t|\w*for_each\w*)\b
    """,
    re.S | re.M | re.X,
)
_STATEMENT_START = frozenset(b";{}):")


@lru_cache(maxsize=1)
def language() -> Language:
    """The tree-sitter C language object (loaded once)."""
    return Language(tree_sitter_c.language())


@lru_cache(maxsize=1)
def parser() -> Parser:
    return Parser(language())


@lru_cache(maxsize=64)
def query(source: str) -> Query:
    """A compiled tree-sitter query, cached by its source text."""
    return Query(language(), source)


def captures(q: Query, node: Node) -> dict[str, list[Node]]:
    return QueryCursor(q).captures(node)


def _balanced_end(data: bytes, start: int) -> int:
    """Index just past the parenthesis group opening at ``data[start] == '('``, or -1."""
    depth = 0
    i = start
    n = len(data)
    while i < n:
        c = data[i]
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return i + 1
        elif c == 0x0A and depth > 8:  # pathological nesting: give up, let the parser report it
            return -1
        i += 1
    return -1


def _skip_space(data: bytes, i: int) -> int:
    n = len(data)
    while i < n and data[i] in b" \t\r\n":
        i += 1
    return i


def _statement_position(data: bytearray, i: int) -> bool:
    """True if a statement may start at ``i``: after ``; { } ) :``, after ``else`` or at the start."""
    i -= 1
    while i >= 0 and data[i] in b" \t\r\n":
        i -= 1
    if i < 0 or data[i] in _STATEMENT_START:
        return True
    return data[max(0, i - 3) : i + 1] == b"else" and (i < 4 or not _is_ident_byte(data[i - 4]))


def _is_ident_byte(c: int) -> bool:
    return c == 0x5F or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def mask_source(data: bytes) -> bytes:
    """Return ``data`` with kernel attribute and iterator macros neutralised (same length).

    See the module docstring for what is recognised.  Besides the macros, two GNU extensions
    the grammar lacks are neutralised: case ranges (``case 1 ... 3:`` becomes ``case 1 | 3:``) and
    named variadic macro parameters (``#define X(args...)``); and in a macro argument list a
    ``struct T`` type argument (``container_of(p, struct T, m)``) loses its ``struct`` keyword.
    The result is only for the parser: text reported to the user comes from the original bytes.
    """
    out = bytearray(data)
    scan = bytearray(data)  # comments blanked: what backward looks see
    n = len(data)
    for m in _TOKEN.finditer(data):
        kind = m.lastgroup
        start, end = m.span()
        if kind == "comment":
            scan[start:end] = _NOT_NEWLINE.sub(b" ", data[start:end])
            continue
        if kind == "pp":
            if _VARIADIC.search(data, start, end):
                out[start:end] = _VARIADIC.sub(lambda v: v.group(1) + b"   ", data[start:end])
            continue
        if kind != "ident":
            continue
        name = m.group("ident")
        if name in _ATTR_BYTES:
            out[start:end] = b" " * (end - start)
        elif name in _ATTR_ARGS_BYTES:
            j = _skip_space(data, end)
            stop = _balanced_end(data, j) if j < n and data[j] == 0x28 else end
            if stop < 0:
                stop = end
            out[start:stop] = _NOT_NEWLINE.sub(b" ", data[start:stop])
        elif name == b"struct" or name == b"union":
            # a type passed as a macro argument: "(x, struct T, m)" -> "(x,        T, m)"
            prev = _prev_byte(scan, start)
            if prev == 0x2C or (prev == 0x28 and not _after_builtin(scan, start)):
                j = _skip_space(data, end)
                t = _IDENT.match(data, j)
                if t is not None:
                    k = _skip_space(data, t.end())
                    if k < n and data[k] in b",)":
                        out[start:end] = b" " * (end - start)
        elif name in (b"min_t", b"max_t", b"clamp_t"):
            # a multi-word type as first argument: "min_t(unsigned int, a, b)" -> "min_t(_           , a, b)"
            j = _skip_space(data, end)
            if j < n and data[j] == 0x28:
                comma = data.find(b",", j, min(n, j + 80))
                arg = data[j + 1 : comma] if comma > 0 else b""
                if b"(" not in arg and len(arg.split()) > 1:
                    out[j + 1 : comma] = b"_" + _NOT_NEWLINE.sub(b" ", arg[1:])
        elif name == b"case":
            colon = data.find(b":", end, min(n, end + 200))
            dots = data.find(b"...", end, colon) if colon > 0 else -1
            if dots > 0:
                out[dots : dots + 3] = b" | "
        elif len(name) >= 8 and _ITERATOR_NAME.search(name):
            j = _skip_space(data, end)
            if j >= n or data[j] != 0x28:
                continue
            stop = _balanced_end(data, j)
            if stop < 0:
                continue
            nxt = _skip_space(data, stop)
            if nxt < n and data[nxt] in b";),=":
                continue  # used as an expression or a declaration, not as a loop header
            if not _statement_position(scan, start):
                continue
            out[start:end] = b"while" + b" " * (end - start - 5)
    return bytes(out)


_VARIADIC = re.compile(rb"(\w)\.\.\.(?=\s*\))")
_IDENT = re.compile(rb"[A-Za-z_]\w*")
_NOT_NEWLINE = re.compile(rb"[^\r\n]")


def _after_builtin(data: bytearray, i: int) -> bool:
    """True if the parenthesis before ``i`` opens ``offsetof(``, which the grammar knows."""
    j = data.rfind(b"(", 0, i)
    return data[max(0, j - 8) : j].rstrip().endswith(b"offsetof")


def _prev_byte(data: bytearray, i: int) -> int:
    i -= 1
    while i >= 0 and data[i] in b" \t\r\n":
        i -= 1
    return data[i] if i >= 0 else -1


_ATTR_BYTES = frozenset(n.encode() for n in ATTRIBUTE_MACROS)
_ATTR_ARGS_BYTES = frozenset(n.encode() for n in ATTRIBUTE_MACROS_WITH_ARGS)


class InputError(PathError):
    """A PATH argument that cannot be used: missing, unreadable, or not C source."""


@dataclass(frozen=True)
class ParseError:
    """One region tree-sitter could not parse (an ``ERROR`` node or a ``MISSING`` token)."""

    file: str
    line: int
    column: int
    function: str | None  # enclosing function definition, None at file scope
    kind: str  # "error" (text that does not parse) or "missing" (a token the parser had to assume)
    text: str  # the offending source text, shortened; for "missing", the assumed token

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "function": self.function,
            "kind": self.kind,
            "text": self.text,
        }


class FunctionDeclaration(NamedTuple):
    """A declaration or definition of a function in a file (not a parameter, field or local)."""

    offset: int  # start of the declaration or definition
    static: bool
    definition: bool


@dataclass
class SourceFile:
    """A parsed C file: original bytes, masked bytes and the tree of the masked bytes."""

    path: Path
    name: str  # as reported: relative to the common root of the inputs
    data: bytes
    tree: Tree
    errors: list[ParseError] = field(default_factory=list)
    _line_starts: list[int] | None = None
    _functions: dict[str, list[FunctionDeclaration]] | None = None

    def functions(self) -> dict[str, list[FunctionDeclaration]]:
        """Every function this file declares or defines, by name (one pass over the tree, kept)."""
        if self._functions is None:
            out: dict[str, list[FunctionDeclaration]] = {}
            q = query("(function_declarator declarator: (identifier) @n) @fd")
            for fd in captures(q, self.tree.root_node).get("fd", []):
                holder = fd.parent
                while holder is not None and holder.type not in ("declaration", "function_definition"):
                    if holder.type in ("parameter_declaration", "field_declaration", "compound_statement"):
                        holder = None
                        break
                    holder = holder.parent
                name = fd.child_by_field_name("declarator")
                if holder is None or name is None:
                    continue
                static = any(c.type == "storage_class_specifier" and c.text == b"static" for c in holder.children)
                out.setdefault(self.data[name.start_byte:name.end_byte].decode("utf-8", "replace"), []).append(
                    FunctionDeclaration(holder.start_byte, static, holder.type == "function_definition"))
            self._functions = out
        return self._functions

    def text(self, node: Node) -> str:
        """Original (unmasked) source text of ``node``."""
        return self.data[node.start_byte : node.end_byte].decode("utf-8", "replace")

    def line_of(self, offset: int) -> int:
        """1-based line number of a byte offset."""
        if self._line_starts is None:
            starts = [0]
            find = self.data.find
            i = find(b"\n")
            while i >= 0:
                starts.append(i + 1)
                i = find(b"\n", i + 1)
            self._line_starts = starts
        import bisect

        return bisect.bisect_right(self._line_starts, offset)


def function_name(defn: Node) -> str | None:
    """Name of the function a ``function_definition`` node defines."""
    d = defn.child_by_field_name("declarator")
    while d is not None:
        if d.type == "function_declarator":
            inner = d.child_by_field_name("declarator")
            while inner is not None and inner.type in ("parenthesized_declarator", "pointer_declarator"):
                inner = inner.child_by_field_name("declarator") or (
                    inner.named_children[0] if inner.named_children else None
                )
            if inner is not None and inner.type == "identifier" and inner.text is not None:
                return inner.text.decode()
            return None
        d = d.child_by_field_name("declarator")
    return None


def nearest_ancestor(node: Node, node_type: str) -> Node | None:
    """The closest ancestor of ``node`` of the given tree-sitter type, if any."""
    p = node.parent
    while p is not None:
        if p.type == node_type:
            return p
        p = p.parent
    return None


def enclosing_function(node: Node) -> Node | None:
    return nearest_ancestor(node, "function_definition")


def collect_errors(sf: SourceFile, limit: int = 5000) -> list[ParseError]:
    """Every ``ERROR`` and ``MISSING`` node of ``sf``'s tree (descending only where errors are)."""
    found: list[ParseError] = []
    root = sf.tree.root_node
    if not root.has_error:
        return found
    stack = [root]
    while stack and len(found) < limit:
        n = stack.pop()
        if n.is_missing or n.type == "ERROR":
            fn = enclosing_function(n)
            text = sf.text(n).strip().replace("\n", " ")
            found.append(
                ParseError(
                    file=sf.name,
                    line=n.start_point[0] + 1,
                    column=n.start_point[1] + 1,
                    function=function_name(fn) if fn is not None else None,
                    kind="missing" if n.is_missing else "error",
                    text=(n.type if n.is_missing else text[:60]),
                )
            )
            if n.type == "ERROR":
                continue
        # push children in reverse so errors come out in source order
        stack.extend(c for c in reversed(n.children) if c.has_error or c.is_missing)
    found.sort(key=lambda e: (e.line, e.column))
    return found


def iter_c_files(paths: Iterable[str]) -> Iterator[tuple[str, Path | None, InputError | None]]:
    """Expand PATH arguments: directories recursively to their ``*.c``/``*.h`` files (sorted).

    Yields ``(argument, path, None)`` for each file to read and ``(argument, None, error)`` for an
    argument that does not exist or cannot be listed.
    """
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            try:
                found: list[Path] = []
                for dirpath, dirnames, filenames in os.walk(p, onerror=_raise):
                    dirnames.sort()
                    found.extend(Path(dirpath) / f for f in filenames if f.endswith(C_SUFFIXES))
            except OSError as exc:
                yield arg, None, InputError(arg, f"cannot list directory: {exc.strerror or exc}")
                continue
            if not found:
                yield arg, None, InputError(arg, "no C source files (*.c, *.h) in this directory")
            for f in sorted(found):
                yield arg, f, None
        elif p.exists():
            yield arg, p, None
        else:
            yield arg, None, InputError(arg, "no such file or directory")


def _raise(exc: OSError) -> None:
    raise exc


def common_root(paths: Iterable[str]) -> Path:
    """Directory the reported file names are relative to: the deepest common directory of the
    PATH arguments (a file argument contributes its parent directory)."""
    dirs = []
    for arg in paths:
        p = Path(arg).resolve()
        dirs.append(p if p.is_dir() else p.parent)
    if not dirs:
        return Path.cwd()
    return Path(os.path.commonpath([str(d) for d in dirs]))


def read_source(path: Path, name: str, explicit: bool) -> SourceFile:
    """Read and parse one file.  Raises :class:`InputError` if it is unreadable or not C.

    A file named explicitly on the command line with a suffix other than ``.c``/``.h`` is accepted
    only if it looks like text and mostly parses as C.
    """
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputError(name, "is a directory") from None
    except OSError as exc:
        raise InputError(name, f"cannot read: {exc.strerror or exc}") from None
    head = data[:8192]
    if head.startswith(b"\x7fELF"):
        raise InputError(name, "not C source (an ELF object; use --binary)")
    if b"\x00" in head:
        raise InputError(name, "not C source (binary data)")
    masked = mask_source(data)
    tree = parser().parse(masked)
    if tree.root_node.has_error:
        retry = _blank_inner_conditionals(masked, tree)
        if retry is not None:
            tree2 = parser().parse(retry)
            if _count_errors(tree2.root_node) < _count_errors(tree.root_node):
                tree = tree2
    sf = SourceFile(path=path, name=name, data=data, tree=tree)
    if explicit and not str(path).endswith(C_SUFFIXES):
        if data.strip() and not _looks_like_c(tree.root_node, data):
            raise InputError(name, "not C source (does not parse as C)")
    sf.errors = collect_errors(sf)
    return sf


_CONDITIONAL_LINE = re.compile(rb"^[ \t]*#[ \t]*(?:if|ifdef|ifndef|elif|else|endif)\b(?:\\\r?\n|[^\n])*", re.M)
_NO_DIRECTIVES = ("initializer_list", "argument_list", "enumerator_list", "parameter_list")


def _blank_inner_conditionals(masked: bytes, tree: Tree) -> bytes | None:
    """Blank ``#if``/``#else``/``#endif`` lines where the grammar does not accept directives --
    inside initializer, argument, enumerator and parameter lists, and inside any region that failed
    to parse -- so that both branches parse as plain code.  Returns the new buffer, or None if
    there is nothing to blank.  The caller keeps the result only if it has fewer errors."""
    spans = []
    stack = [tree.root_node]
    while stack:
        n = stack.pop()
        if n.type == "ERROR":
            p = n.parent
            if masked[n.start_byte : n.start_byte + 1] == b"#" and p is not None and p.type in _NO_DIRECTIVES:
                spans.append((p.start_byte, p.end_byte))
            elif _CONDITIONAL_LINE.search(masked, n.start_byte, n.end_byte):
                spans.append((n.start_byte, n.end_byte))
            continue
        stack.extend(c for c in n.children if c.has_error)
    if not spans:
        return None
    out = bytearray(masked)
    for start, end in spans:
        for m in _CONDITIONAL_LINE.finditer(masked, start, end):
            out[m.start() : m.end()] = _NOT_NEWLINE.sub(b" ", m.group(0))
    return bytes(out)


def _count_errors(root: Node) -> int:
    count = 0
    stack = [root]
    while stack:
        n = stack.pop()
        if n.type == "ERROR" or n.is_missing:
            count += 1
        stack.extend(c for c in n.children if c.has_error or c.is_missing)
    return count


def _looks_like_c(root: Node, data: bytes) -> bool:
    """Heuristic for files without a C suffix: kernel C, even macro-heavy, has well under one
    parse error per two lines; prose, Python or shell has more."""
    if root.type == "ERROR":
        return False
    lines = data.count(b"\n") + 1
    return _count_errors(root) <= lines / 2
