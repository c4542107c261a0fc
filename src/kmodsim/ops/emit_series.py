"""``kmodsim ops --emit series``: the devirtualization plan as a patch series, one commit per member
or per group of members, each converting its members' calls to the plan's conversion.

Two conversions, chosen per member:

``direct``
    the member has a direct target (``--instance``/``--prefix``, or the one instance there is):
    its calls become calls of that function, as ``--emit patch`` writes them
    (:func:`kmodsim.ops.emit.reach`: a prototype where the calling file does not declare the
    target; the header that defines a ``static inline`` target included; a target defined
    ``static`` in its instance's file and called from another file loses its ``static``). A member the instance's own code changes at run time
    (``vmx_x86_ops.m = NULL`` in its setup) has no target known at build time: left alone.
``static call``
    the others: the first commit adds the X-macro list of every member (a new header beside the
    struct's, ``<family>(m)`` / ``<family>_NULL(m)`` for a member that may be NULL, the 5.12 form),
    declares a static call per member after the table's ``extern`` declaration
    (``DECLARE_STATIC_CALL(<prefix>m, *(((struct S *)0)->m))`` through the list), defines them
    NULL after the table's definition (``DEFINE_STATIC_CALL_NULL``), and updates them all from the
    table (``static_call_update(<prefix>m, table.m)``, in ``<struct>_static_call_update()``) right
    after each whole-table copy into it (``memcpy(&kvm_x86_ops, ops->runtime_ops, ...)`` in
    ``kvm_arch_hardware_setup()``): the table is set once, there. Then each commit makes its
    members' calls static: ``table.m(args)`` -> ``static_call(<prefix>m)(args)``; a void member
    called as ``if (table.m) table.m(args);`` -> ``static_call_cond(<prefix>m)(args);`` (its NULL
    test goes: a NULL static call of a void function does nothing); any other NULL test stays in
    front of its call (the table still holds the member's value). A member whose static call is
    used by a header or by a file of another directory (it may be another module's) gets
    ``EXPORT_STATIC_CALL_GPL`` in the commit that first uses it so; an export too many costs a
    symbol, one too few does not link.

Calls inside macro bodies, in regions that do not parse, or through another expression than the
table are left alone, and the notes (and the commit message) say which and why. Every commit's
files are computed from the census's own bytes; the writer (:func:`write_patches`,
:func:`write_branch`) makes git commits with a fixed author and date, so the series is the same
byte for byte from run to run.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import textwrap
from collections import Counter
from dataclasses import dataclass, field

from tree_sitter import Node

from ..errors import Error
from . import parse
from .census import Census
from .emit import (
    _insertion_point,
    header_call_of,
    include_point,
    include_spec,
    owner_instance,
    reach,
    xmacro_family,
)
from .model import CallSite, Member

GROUPS = ("member", "file")
AUTHOR = ("kmodsim ops", "ops@kmodsim.invalid")
FIXED_DATE = "2000-01-01T00:00:00+0000"


class EmitError(Error):
    """A series that cannot be emitted (no table the static calls can be updated from ...)."""


@dataclass
class Edit:
    file: str
    start: int
    end: int
    text: str
    step: int  # 0-based commit index
    order: int = 0  # among insertions at one offset in one step


@dataclass
class Commit:
    subject: str
    body: str
    members: list[str]


@dataclass
class EmittedSeries:
    struct: str
    commits: list[Commit]
    base: dict[str, bytes]  # name -> the census's bytes of every file a commit touches (new files absent)
    edits: list[Edit] = field(default_factory=list)
    new_files: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # name -> (step, content)
    notes: list[str] = field(default_factory=list)

    def files_at(self, step: int) -> dict[str, bytes]:
        """Every touched file as it is after commit ``step`` (0-based; -1: the base)."""
        out = dict(self.base)
        for name, (s, data) in self.new_files.items():
            if s <= step:
                out[name] = data
        by_file: dict[str, list[Edit]] = {}
        for e in self.edits:
            if e.step <= step:
                by_file.setdefault(e.file, []).append(e)
        for name, edits in by_file.items():
            buf = bytearray(out[name])
            for e in sorted(edits, key=lambda e: (e.start, e.end, e.step, e.order), reverse=True):
                buf[e.start:e.end] = e.text.encode()
            out[name] = bytes(buf)
        return out


# ---------------------------------------------------------------------------------------------


def _node(sf: parse.SourceFile, span: tuple[int, int]) -> Node | None:
    return sf.tree.root_node.descendant_for_byte_range(span[0], span[1])


def _line_start(data: bytes, off: int) -> int:
    return data.rfind(b"\n", 0, off) + 1


def _indent(data: bytes, off: int) -> str:
    start = _line_start(data, off)
    m = re.match(rb"[ \t]*", data[start:off])
    return m.group(0).decode() if m else ""


def _object(sf: parse.SourceFile, cs: CallSite) -> tuple[str, str] | None:
    """(table expression, operator) of a ``x.m()`` / ``p->m()`` site."""
    if cs.span is None or cs.idiom not in ("x.m()", "p->m()"):
        return None
    text = sf.data[cs.span[0]:cs.span[1]].decode("utf-8", "replace")
    m = re.fullmatch(r"\s*(.+?)\s*(\.|->)\s*" + re.escape(cs.member) + r"\s*", text, re.S)
    return (re.sub(r"\s+", "", m.group(1)), m.group(2)) if m else None


def _cond_call(sf: parse.SourceFile, cs: CallSite) -> tuple[int, int, str] | None:
    """``if (T.m) T.m(args);`` (no else; braces or not) -> (start, end, args text) of the if."""
    assert cs.span is not None
    callee = _node(sf, cs.span)
    if callee is None:
        return None
    call = callee.parent
    while call is not None and call.type == "parenthesized_expression":
        call = call.parent
    if call is None or call.type != "call_expression":
        return None
    stmt = call.parent
    if stmt is None or stmt.type != "expression_statement":
        return None
    holder = stmt.parent
    if holder is not None and holder.type == "compound_statement":
        if [c for c in holder.named_children if c.type != "comment"] != [stmt] or \
                any(c.type == "comment" for c in holder.named_children):
            return None
        holder = holder.parent
    if holder is None or holder.type != "if_statement" or holder.child_by_field_name("alternative") is not None:
        return None
    cond = holder.child_by_field_name("condition")
    if cond is None:
        return None
    ctext = re.sub(r"\s+", "", sf.text(cond))
    if ctext.startswith("(") and ctext.endswith(")"):
        ctext = ctext[1:-1]
    if ctext != re.sub(r"\s+", "", sf.data[cs.span[0]:cs.span[1]].decode("utf-8", "replace")):
        return None
    args = call.child_by_field_name("arguments")
    if args is None:
        return None
    return holder.start_byte, holder.end_byte, sf.text(args)


def _table(census: Census, sites: list[CallSite]) -> tuple[str, str] | None:
    """The table most calls go through (its expression, operator), if it is a plain name."""
    count: Counter[tuple[str, str]] = Counter()
    for cs in sites:
        obj = _object(census.sources[cs.file], cs)
        if obj is not None and re.fullmatch(r"\w+", obj[0]):
            count[obj] += 1
    if not count:
        return None
    return sorted(count.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def _find(census: Census, suffix: str, rx: re.Pattern[bytes]) -> tuple[str, re.Match[bytes]] | None:
    for name in sorted(census.sources):
        if name.endswith(suffix):
            m = rx.search(census.sources[name].data)
            if m:
                return name, m
    return None


def _statement_at(sf: parse.SourceFile, line: int, column: int) -> tuple[int, int]:
    """(start, end after ';') of the expression statement at 1-based line/column."""
    off = 0
    for _ in range(line - 1):
        off = sf.data.index(b"\n", off) + 1
    off += column - 1
    n = sf.tree.root_node.descendant_for_byte_range(off, off)
    while n is not None and n.type != "expression_statement":
        n = n.parent
    if n is None:
        raise EmitError(sf.name, f"line {line}: the whole-table copy is not a statement")
    return n.start_byte, n.end_byte


# ---------------------------------------------------------------------------------------------


def emit_series(census: Census, direct: dict[str, str], group: str = "member",
                members: list[str] | None = None) -> EmittedSeries:
    """The series (see the module docstring). ``direct``: member -> target function (the members
    with a known implementation; when given, the members without one are left alone: the series is
    one of direct calls, no static call is added); ``group``: one commit per ``member`` or per ``file`` (the file
    holding most of a member's calls); ``members``: only these (in the census's order)."""
    if group not in GROUPS:
        raise EmitError("--group", f"unknown grouping {group!r} (known: {', '.join(GROUPS)})")
    known = {m.name for m in census.members}
    for name in members or ():
        if name not in known:
            raise EmitError("--members", f"{name!r} is not a member of struct {census.struct}")
    notes: list[str] = []
    owner = owner_instance(census, direct) if direct else None

    # -- what each member's commit does -----------------------------------------------------------
    plans: dict[str, list[tuple[CallSite, str]]] = {}  # member -> [(site, "direct"|"static"|"cond")]
    all_indirect = [cs for m in census.members for cs in m.call_sites if cs.indirect]
    table = _table(census, all_indirect)
    for mem in census.members:
        if members and mem.name not in members:
            continue
        target = direct.get(mem.name)
        if target is not None and owner is not None:
            stores = [a for a in mem.assignments if a.target.split(".")[0].split("->")[0] == owner.name]
            if stores:
                notes.append(f"{mem.name}: set at run time ({stores[0].where()}, {stores[0].target} = "
                             f"{stores[0].value}): no target known at build time, left alone")
                continue
        why_not = header_call_of(census, mem, target) if target is not None else None
        if why_not is not None:
            notes.append(why_not)
            continue
        if target is None and direct:
            if any(cs.indirect for cs in mem.call_sites):
                notes.append(f"{mem.name}: no direct target"
                             + (f" ({owner.name} leaves it unset)" if owner is not None else "") + ": left alone")
            continue
        chosen = []
        for cs in mem.call_sites:
            where = f"{cs.where()}: {mem.name}"
            if cs.in_macro or cs.span is None or cs.in_parse_error:
                why = f"in the body of macro {cs.function}" if cs.in_macro else "in a region that did not parse"
                if target is not None or cs.indirect:
                    notes.append(f"{where}: {why}, left alone")
                continue
            if target is not None:
                chosen.append((cs, "direct"))
                continue
            if not cs.indirect:
                continue  # already a static call
            obj = _object(census.sources[cs.file], cs)
            if table is None or obj != table:
                tn = table[0] if table else "(none)"
                notes.append(f"{where}: called through {obj[0]}, not the table {tn}: left alone" if obj else
                             f"{where}: an {cs.idiom} site, not a call through the table {tn}: left alone")
                continue
            sf = census.sources[cs.file]
            if mem.returns_void and cs.guarded and _cond_call(sf, cs) is not None:
                chosen.append((cs, "cond"))
            else:
                if cs.guarded:
                    notes.append(f"{where}: NULL test kept in {cs.function}(): "
                                 + ("its call's value is used" if not mem.returns_void else "not a plain 'if (x.m) x.m(...);'"))
                elif mem.optional and not mem.returns_void:
                    notes.append(f"{where}: may be NULL ({mem.effective}) and called unguarded: a NULL static "
                                 "call returns no value (__static_call_return0 where the kernel has it)")
                chosen.append((cs, "static"))
        if chosen:
            plans[mem.name] = chosen

    if not plans:
        raise EmitError(f"struct {census.struct}", "no call to convert")
    needs_static = any(kind != "direct" for sites in plans.values() for _, kind in sites)

    # -- groups -> commits ------------------------------------------------------------------------
    order = [m.name for m in census.members if m.name in plans]
    if group == "member":
        groups = [(m, [m]) for m in order]
    else:
        home: dict[str, list[str]] = {}
        for m in order:
            files = Counter(cs.file for cs, _ in plans[m])
            f = sorted(files.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
            home.setdefault(f, []).append(m)
        groups = [(f, home[f]) for f in sorted(home)]

    touched: set[str] = set()
    edits: list[Edit] = []
    new_files: dict[str, tuple[int, bytes]] = {}
    commits: list[Commit] = []
    step = 0
    prefix = census.static_prefix or re.sub(r"ops$", "", census.struct)
    fam = xmacro_family(census)
    upd = f"{census.struct}_static_call_update"
    export_at: tuple[str, int] | None = None

    if needs_static:
        if table is None:
            raise EmitError(f"struct {census.struct}", "no table the calls go through by name: "
                                                       "nothing to update static calls from")
        tname, op = table
        struct_rx = rb"struct\s+" + re.escape(census.struct.encode()) + rb"\s+"
        decl = _find(census, ".h", re.compile(rb"^extern\s+" + struct_rx + rb"\*?\s*" + re.escape(tname.encode())
                                              + rb"\s*;[^\n]*\n", re.M))
        defn = _find(census, ".c", re.compile(rb"^" + struct_rx + rb"\*?\s*" + re.escape(tname.encode())
                                              + rb"\b[^;{=]*;[^\n]*\n", re.M))
        if decl is None or defn is None:
            raise EmitError(f"struct {census.struct}", f"table {tname}: no 'extern struct {census.struct} {tname};' "
                                                       "in a header or no definition in a .c file of the inputs")
        copies = [c for c in census.copies if c.target in (tname, f"*{tname}")
                  and c.value.strip() not in ("NULL", "0", "(void *)0")]  # the table set, not cleared
        if not copies:
            raise EmitError(f"struct {census.struct}", f"table {tname}: no whole-table copy into it "
                                                       "(the place its static calls are updated)")
        assert census.definition is not None
        header = os.path.join(os.path.dirname(census.definition.file), census.struct.replace("_", "-") + ".h")
        if header in census.sources:
            raise EmitError(header, "exists already: the X-macro list would overwrite it")
        lines = [
            "/* SPDX-License-Identifier: GPL-2.0 */",
            f"#if !defined({fam}) || !defined({fam}_NULL)",
            "BUILD_BUG_ON(1)",
            "#endif",
            "",
            "/*",
            f" * One static call per member of struct {census.struct}: {fam}() for the members every",
            f" * implementation sets, {fam}_NULL() for those that may be NULL (written by",
            " * kmodsim ops --emit series from the census of the source).",
            " */",
        ]
        lines += [f"{fam}{'_NULL' if m.optional else ''}({m.name})" for m in census.members]
        lines += ["", f"#undef {fam}", f"#undef {fam}_NULL", ""]
        new_files[header] = (0, "\n".join(lines).encode())
        macro = (f"(((struct {census.struct} *)0)->func)")
        dname, dm = decl
        ddata = census.sources[dname].data
        block = (f"\n#define {fam}(func) \\\n\tDECLARE_STATIC_CALL({prefix}##func, *{macro});\n"
                 f"#define {fam}_NULL {fam}\n#include {include_spec(header, dname)}\n\n"
                 f"static inline void {upd}(void)\n{{\n"
                 f"#define {fam}(func) \\\n\tstatic_call_update({prefix}##func, {tname}{op}func);\n"
                 f"#define {fam}_NULL {fam}\n#include {include_spec(header, dname)}\n}}\n")
        edits.append(Edit(dname, dm.end(), dm.end(), block, 0))
        if not re.search(rb"^#include <linux/static_call\.h>", ddata, re.M):
            incs = list(re.finditer(rb"^#include <linux/[^>]+>[^\n]*\n", ddata, re.M))
            at = incs[-1].end() if incs else 0
            edits.append(Edit(dname, at, at, "#include <linux/static_call.h>\n", 0))
        cname, cm = defn
        block = (f"\n#define {fam}(func) \\\n\tDEFINE_STATIC_CALL_NULL({prefix}##func, *{macro});\n"
                 f"#define {fam}_NULL {fam}\n#include {include_spec(header, cname)}\n")
        edits.append(Edit(cname, cm.end(), cm.end(), block, 0))
        export_at = (cname, cm.end())
        for c in copies:
            sf = census.sources[c.file]
            start, end = _statement_at(sf, c.line, c.column)
            edits.append(Edit(c.file, end, end, f"\n{_indent(sf.data, start)}{upd}();", 0))
        touched |= {header, dname, cname, *(c.file for c in copies)}
        stores = [a for m in census.members for a in m.assignments if a.target.startswith(tname + op)]
        prose = [
            f"Add {header}, the X-macro list of the {len(census.members)} members of struct {census.struct}",
            f"({sum(m.optional for m in census.members)} may be NULL: {fam}_NULL), a static call {prefix}<member> "
            f"for each, declared in {dname}, defined in {cname}, and {upd}(), which points",
            f"them at what {tname} holds, called after {tname} is copied in "
            + ", ".join(f"{c.function}()" for c in copies) + ".",
            "No call changes yet.",
        ]
        body = textwrap.wrap(" ".join(prose), 72, break_on_hyphens=False)
        if stores:
            body += ["", f"Stores into {tname} after that (the static calls keep the value copied):"]
            body += [f"  {a.where()}: {a.target} = {a.value} in {a.function}()" for a in stores]
        commits.append(Commit(f"{census.struct}: a static call for each member", "\n".join(body), []))
        step = 1

    exported: set[str] = set()
    for label, names in groups:
        cut: list[str] = []
        protos: dict[str, dict[str, tuple[int, Member]]] = {}
        counts: Counter[str] = Counter()
        for name in names:
            member = census.member(name)
            assert member is not None
            for cs, kind in plans[name]:
                assert cs.span is not None
                sf = census.sources[cs.file]
                touched.add(cs.file)
                counts[kind] += 1
                if kind == "direct":
                    tgt = direct[name]
                    edits.append(Edit(cs.file, cs.span[0], cs.span[1], tgt + cs.replacement_suffix, step))
                    first = protos.setdefault(cs.file, {}).get(tgt)
                    if first is None or cs.span[0] < first[0]:
                        protos[cs.file][tgt] = (cs.span[0], member)
                elif kind == "cond":
                    found = _cond_call(sf, cs)
                    assert found is not None
                    start, end, args = found
                    edits.append(Edit(cs.file, start, end, f"static_call_cond({prefix}{name}){args};", step))
                else:
                    edits.append(Edit(cs.file, cs.span[0], cs.span[1], f"static_call({prefix}{name})", step))
                if kind != "direct" and name not in exported and export_at is not None and (
                        cs.file.endswith(".h") or os.path.dirname(cs.file) != os.path.dirname(export_at[0])):
                    exported.add(name)
                    cut.append(name)
        # what the calling files need: prototypes, includes, targets made global
        for file, needed in sorted(protos.items()):
            sf = census.sources[file]
            r = reach(census, file, needed, owner)
            if r.prototypes:
                at = _insertion_point(sf, min(u for u, _ in needed.values()))
                edits.append(Edit(file, at, at, "".join(ln + "\n" for ln in r.prototypes) + "\n", step))
            for spec in r.includes:
                line = f"#include {spec}\n"
                at = include_point(sf.data)
                if all((x.file, x.start, x.text) != (file, at, line) for x in edits):
                    edits.append(Edit(file, at, at, line, step, order=-1))
            for ofile, start, end in r.unstatic:
                if all((x.file, x.start) != (ofile, start) for x in edits):
                    edits.append(Edit(ofile, start, end, "", step))
                    touched.add(ofile)
        if cut and export_at is not None:
            edits.append(Edit(export_at[0], export_at[1], export_at[1],
                              "".join(f"EXPORT_STATIC_CALL_GPL({prefix}{n});\n" for n in cut), step))
        what = []
        if counts["direct"]:
            what.append(f"{counts['direct']} direct")
        if counts["static"]:
            what.append(f"{counts['static']} static_call()")
        if counts["cond"]:
            what.append(f"{counts['cond']} static_call_cond() (their NULL test gone)")
        if group == "member":
            kinds = {k for _, k in plans[label]}
            subject = (f"{census.struct}: call {direct[label]}() directly for {label}" if kinds == {"direct"}
                       else f"{census.struct}: {label} through a static call")
        else:
            subject = f"{census.struct}: static calls in {label}" if not counts["direct"] else \
                f"{census.struct}: direct calls in {label}"
        text = f"Calls of {', '.join(names)}: " + ", ".join(what) + "."
        if cut:
            text += f" Exported (used by a header or another directory): {', '.join(prefix + n for n in cut)}."
        body = textwrap.wrap(text, 72, break_on_hyphens=False)
        sitel = [f"  {cs.where()} {cs.function or '(file scope)'}" + ("()" if cs.function else "")
                 for n in names for cs, _ in plans[n]]
        body += ["", *sitel]
        commits.append(Commit(subject, "\n".join(body), list(names)))
        step += 1

    base = {n: census.sources[n].data for n in sorted(touched) if n in census.sources}
    return EmittedSeries(census.struct, commits, base, edits, new_files, sorted(set(notes), key=_note_key))


def _note_key(note: str) -> tuple:
    m = re.match(r"(.+?):(\d+): ", note)
    return (m.group(1), int(m.group(2)), note) if m else ("", 0, note)


# ---------------------------------------------------------------------------------------------
# Writing the commits: a branch of a git tree, or git format-patch files
# ---------------------------------------------------------------------------------------------


def _git(cwd: str, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> str:
    full = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        p = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, env=full)
    except OSError as exc:
        raise EmitError(cwd, f"cannot run git: {exc.strerror}") from None
    if p.returncode != 0:
        msg = (p.stderr.decode(errors="replace").strip().splitlines() or [f"git {args[0]} failed"])[-1]
        raise EmitError(cwd, f"git {args[0]}: {msg.removeprefix('fatal: ')}")
    return p.stdout.decode(errors="surrogateescape")


def _commit_all(repo: str, series: EmittedSeries, prefix: str, parent: str, date: str,
                env: dict[str, str]) -> list[str]:
    """Commit each step on top of ``parent`` through a private index; the commit ids, in order."""
    ident = {"GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1], "GIT_COMMITTER_NAME": AUTHOR[0],
             "GIT_COMMITTER_EMAIL": AUTHOR[1], "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date, **env}
    shas = []
    _git(repo, "read-tree", parent, env=ident)
    for i, c in enumerate(series.commits):
        for name, data in sorted(series.files_at(i).items()):
            if i and series.files_at(i - 1).get(name) == data:
                continue
            blob = _git(repo, "hash-object", "-w", "--stdin", env=ident, stdin=data).strip()
            _git(repo, "update-index", "--add", "--cacheinfo", f"100644,{blob},{prefix}{name}", env=ident)
        tree = _git(repo, "write-tree", env=ident).strip()
        msg = f"{c.subject}\n\n{c.body}\n\nWritten by kmodsim ops --emit series.\n"
        parent = _git(repo, "commit-tree", tree, "-p", parent, env=ident, stdin=msg.encode()).strip()
        shas.append(parent)
    return shas


def write_branch(series: EmittedSeries, root: str, branch: str) -> list[str]:
    """The commits on a new branch ``branch`` of the git repository holding ``root`` (the
    directory census names are relative to), on top of its HEAD; the work tree and HEAD are not
    touched. Dated as HEAD is, so a second run makes the same commits."""
    top = _git(root, "rev-parse", "--show-toplevel").strip()
    prefix = _git(root, "rev-parse", "--show-prefix").strip()
    if subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=root,
                      capture_output=True).returncode == 0:
        raise EmitError(branch, "a branch of that name exists already")
    head = _git(root, "rev-parse", "HEAD").strip()
    date = _git(root, "log", "-1", "--format=%cI", head).strip()
    for name, data in series.base.items():  # the series is computed from the work tree: it must be HEAD's
        shown = _git(top, "cat-file", "-p", f"{head}:{prefix}{name}") if name else ""
        if shown.encode("utf-8", "surrogateescape") != data:
            raise EmitError(os.path.join(root, name), "differs from HEAD: commit or stash it first")
    with tempfile.TemporaryDirectory(prefix="kmodsim-emit-") as tmp:
        shas = _commit_all(top, series, prefix, head, date, {"GIT_INDEX_FILE": os.path.join(tmp, "index")})
    _git(top, "update-ref", f"refs/heads/{branch}", shas[-1])
    return shas


def write_patches(series: EmittedSeries, outdir: str) -> list[str]:
    """``git format-patch`` files of the series in ``outdir`` (made if needed), paths relative to
    the census root (apply with ``git am`` or ``patch -p1`` there); the file names written."""
    with tempfile.TemporaryDirectory(prefix="kmodsim-emit-") as tmp:
        _git(tmp, "init", "-q")
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        ident = {"GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1], "GIT_COMMITTER_NAME": AUTHOR[0],
                 "GIT_COMMITTER_EMAIL": AUTHOR[1], "GIT_AUTHOR_DATE": FIXED_DATE, "GIT_COMMITTER_DATE": FIXED_DATE,
                 **env}
        for name, data in sorted(series.base.items()):
            blob = _git(tmp, "hash-object", "-w", "--stdin", env=ident, stdin=data).strip()
            _git(tmp, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=ident)
        tree = _git(tmp, "write-tree", env=ident).strip()
        base = _git(tmp, "commit-tree", tree, env=ident, stdin=b"base\n").strip()
        shas = _commit_all(tmp, series, "", base, FIXED_DATE, env)
        os.makedirs(outdir, exist_ok=True)
        out = _git(tmp, "format-patch", "--no-signature", "--zero-commit", "-o", os.path.abspath(outdir),
                   f"{base}..{shas[-1]}", env=ident)
    return [os.path.basename(p) for p in out.split("\n") if p]
