"""Rendering: the stable JSON document (schema ``kmodsim.ops/1``, see docs/ops.md) and human text."""

from __future__ import annotations

from collections import Counter

from .census import Census
from .model import Member
from .parse import InputError
from .plan import MemberPlan

SCHEMA = "kmodsim.ops/1"

_LOC = {
    "file": {"type": "string"},
    "line": {"type": "integer", "minimum": 1},
    "column": {"type": "integer", "minimum": 1},
    "function": {"type": ["string", "null"]},
}


def _obj(props: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": props, "required": required or list(props),
            "additionalProperties": False}


_STR_LIST = {"type": "array", "items": {"type": "string"}}
_CLASS = {"enum": ["mandatory", "optional", "ret0"]}

#: JSON Schema (draft 2020-12) of ``kmodsim ops --struct NAME --json`` (documented in docs/ops.md).
JSON_SCHEMA: dict = _obj(
    {
        "schema": {"const": SCHEMA},
        "struct": {"type": "string"},
        "definition": {"type": ["object", "null"]},
        "static_call_prefix": {"type": "string"},
        "static_call_wrappers": _STR_LIST,
        "files_scanned": {"type": "integer"},
        "files_parsed": _STR_LIST,
        "members": {
            "type": "array",
            "items": _obj({
                "name": {"type": "string"},
                "optional": {"type": "boolean"},
                "ret0": {"type": "boolean"},
                "class": _CLASS,
                "derived_class": _CLASS,
                "xmacro_class": {"enum": ["mandatory", "optional", "ret0", None]},
                "evidence": _STR_LIST,
                "return_type": {"type": "string"},
                "prototype": {"type": "string"},
                "declared_at": _obj({"file": {"type": "string"}, "line": {"type": "integer"}}),
                "call_sites": {"type": "array", "items": _obj({
                    **_LOC, "idiom": {"type": "string"}, "in_macro": {"type": "boolean"},
                    "guarded": {"type": "boolean"}, "value_used": {"type": "boolean"}})},
                "null_checks": {"type": "array", "items": _obj({
                    **_LOC, "idiom": {"type": "string"}, "assertion": {"type": "boolean"},
                    "fallback": {"enum": ["zero", "error", "return", "else", None]},
                    "predicate": {"type": "boolean"}})},
                "assignments": {"type": "array", "items": _obj({
                    **_LOC, "idiom": {"type": "string"}, "target": {"type": "string"},
                    "value": {"type": "string"}})},
                "reads": {"type": "array", "items": _obj(dict(_LOC))},
                "implementations": {"type": "object", "additionalProperties": {"type": "string"}},
                "unset_in": _STR_LIST,
            }),
        },
        "data_members": _STR_LIST,
        "instances": {"type": "array", "items": _obj({
            "name": {"type": "string"}, "file": {"type": "string"}, "line": {"type": "integer"},
            "implementations": {"type": "object", "additionalProperties": {"type": "string"}},
            "explicit_null": _STR_LIST})},
        "copies": {"type": "array", "items": _obj({
            **_LOC, "idiom": {"type": "string"}, "target": {"type": "string"}, "value": {"type": "string"}})},
        "xmacro": {"oneOf": [{"type": "null"}, _obj({
            "family": {"type": "string"}, "file": {"type": "string"},
            "entries": {"type": "array", "items": _obj({
                "name": {"type": "string"}, "macro": {"type": "string"}, "class": _CLASS,
                "line": {"type": "integer"}})}})]},
        "mismatches": {"type": "array", "items": _obj({
            "member": {"type": "string"},
            "problem": {"enum": ["classification", "not in x-macro list", "not a member"]},
            "derived": {"enum": ["mandatory", "optional", "ret0", None]},
            "xmacro": {"enum": ["mandatory", "optional", "ret0", None]},
            "evidence": _STR_LIST})},
        "parse_errors": {"type": "array", "items": _obj({
            **_LOC, "kind": {"enum": ["error", "missing"]}, "text": {"type": "string"}})},
        "input_errors": {"type": "array", "items": _obj({"path": {"type": "string"},
                                                         "problem": {"type": "string"}})},
        "plan": {"type": "array", "items": _obj({
            "member": {"type": "string"}, "class": _CLASS,
            "conversion": {"enum": ["direct", "keep", "static_call", "static_call_cond", "static_call_ret0",
                                    "early_return"]},
            "removes": {"type": "integer", "minimum": 0},
            "sites": {"type": "array", "items": _obj({
                "file": {"type": "string"}, "line": {"type": "integer"},
                "function": {"type": ["string", "null"]}, "idiom": {"type": "string"},
                "conversion": {"type": "string"}, "target": {"type": ["string", "null"]}})}})},
    },
    required=["schema", "struct", "definition", "static_call_prefix", "static_call_wrappers", "files_scanned",
              "files_parsed", "members", "data_members", "instances", "copies", "xmacro", "mismatches",
              "parse_errors", "input_errors"],
)


def member_json(m: Member) -> dict:
    return {
        "name": m.name,
        "optional": m.optional,
        "ret0": m.ret0,
        "class": m.effective,
        "derived_class": m.classification,
        "xmacro_class": m.xmacro_class,
        "evidence": list(m.evidence),
        "return_type": m.return_type,
        "prototype": m.prototype.replace("@@NAME@@", "{}"),
        "declared_at": {"file": m.file, "line": m.line},
        "call_sites": [c.to_json() for c in m.call_sites],
        "null_checks": [n.to_json() for n in m.null_checks],
        "assignments": [a.to_json() for a in m.assignments],
        "reads": [{"file": r.file, "line": r.line, "column": r.column, "function": r.function} for r in m.reads],
        "implementations": dict(m.implementations),
        "unset_in": list(m.unset_in),
    }


def input_errors_json(errors: list[InputError]) -> list[dict]:
    return [{"path": e.path, "problem": e.problem} for e in errors]


def census_json(c: Census, plan: list[MemberPlan] | None = None) -> dict:
    doc = {
        "schema": SCHEMA,
        "struct": c.struct,
        "definition": {"file": c.definition.file, "line": c.definition.line} if c.definition else None,
        "static_call_prefix": c.static_prefix,
        "static_call_wrappers": list(c.wrappers),
        "files_scanned": c.files_scanned,
        "files_parsed": list(c.files_parsed),
        "members": [member_json(m) for m in c.members],
        "data_members": list(c.data_members),
        "instances": [i.to_json() for i in c.instances],
        "copies": [a.to_json() for a in c.copies],
        "xmacro": c.xmacro.to_json() if c.xmacro is not None else None,
        "mismatches": [m.to_json() for m in c.mismatches],
        "parse_errors": [e.to_json() for e in c.parse_errors],
        "input_errors": input_errors_json(c.input_errors),
    }
    if plan is not None:
        doc["plan"] = [p.to_json() for p in plan]
    return doc


def census_text(c: Census) -> str:
    out: list[str] = []
    w = out.append
    d = c.definition
    w(f"struct {c.struct}: defined at {d.file}:{d.line}" if d else f"struct {c.struct}")
    w(f"  {len(c.members)} function-pointer members, {len(c.data_members)} data members"
      + (f" ({', '.join(c.data_members)})" if c.data_members else ""))
    w(f"  files: {c.files_scanned} scanned, {len(c.files_parsed)} parsed"
      + (f"; static-call prefix {c.static_prefix!r}" if c.static_prefix else "")
      + (f"; wrappers {', '.join(c.wrappers)}" if c.wrappers else ""))
    for inst in c.instances:
        w(f"  instance {inst.name} ({inst.file}:{inst.line}): {len(inst.implementations)} members set")
    idioms = Counter(cs.idiom for m in c.members for cs in m.call_sites)
    total = sum(idioms.values())
    w(f"  call sites: {total}" + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(idioms.items())) + ")" if total else ""))
    w(f"  NULL tests: {sum(len(m.null_checks) for m in c.members)}; runtime assignments: "
      f"{sum(len(m.assignments) for m in c.members)}; whole-table copies: {len(c.copies)}")
    for cp in c.copies:
        w(f"    {cp.file}:{cp.line} {cp.function or '<file scope>'}: {cp.target} <- {cp.value} ({cp.idiom})")
    if c.xmacro is not None:
        w(f"  x-macro list: {c.xmacro.file} ({c.xmacro.family}, {len(c.xmacro.entries)} entries)")
    else:
        w("  x-macro list: none found")
    w("")
    w(f"  {'member':<34} {'class':<10} {'x-macro':<10} {'calls':>5} {'null':>5} {'set':>4}  implementations")
    for m in c.members:
        impl = ", ".join(f"{k}={v}" for k, v in m.implementations.items()) or "-"
        w(f"  {m.name:<34} {m.classification:<10} {m.xmacro_class or '-':<10} {len(m.call_sites):>5} "
          f"{len(m.null_checks):>5} {len(m.assignments):>4}  {impl}")
    if c.mismatches:
        w("")
        w(f"  {len(c.mismatches)} mismatch(es) with the x-macro list:")
        for mm in c.mismatches:
            if mm.problem == "classification":
                why = "; ".join(mm.evidence) or "no NULL test, no static_call_cond, every instance sets it"
                w(f"    {mm.member}: code says {mm.derived}, list says {mm.xmacro} ({why})")
            else:
                w(f"    {mm.member}: {mm.problem}")
    w("")
    w(parse_errors_text(c))
    return "\n".join(out) + "\n"


def parse_errors_text(c: Census, limit: int = 20) -> str:
    if not c.parse_errors:
        return f"  parse errors: none in {len(c.files_parsed)} parsed files"
    files = Counter(e.file for e in c.parse_errors)
    funcs = {(e.file, e.function) for e in c.parse_errors if e.function}
    lines = [
        f"  parse errors: {len(c.parse_errors)} in {len(files)} files ({len(funcs)} functions);"
        " what parsed around them was still read (--json lists all)"
    ]
    for e in c.parse_errors[:limit]:
        where = f"in {e.function}()" if e.function else "at file scope"
        lines.append(f"    {e.file}:{e.line}:{e.column} {where}: {e.kind} {e.text!r}")
    if len(c.parse_errors) > limit:
        lines.append(f"    ... {len(c.parse_errors) - limit} more")
    return "\n".join(lines)


def plan_text(c: Census, plan: list[MemberPlan]) -> str:
    out = [f"devirtualization plan for struct {c.struct} (ranked by indirect calls removed)"]
    total = sum(p.removes for p in plan)
    out.append(f"  {total} indirect call(s) removable across {len(plan)} called member(s)")
    out.append(f"  {'#':>3} {'member':<34} {'class':<10} {'conversion':<17} {'removes':>7} {'sites':>5}")
    for i, p in enumerate(plan, 1):
        out.append(f"  {i:>3} {p.member:<34} {p.classification:<10} {p.conversion:<17} {p.removes:>7} {len(p.sites):>5}")
        for s in p.sites:
            tgt = f" -> {s.target}()" if s.target else ""
            out.append(f"        {s.site.file}:{s.site.line} {s.site.idiom:<20} {s.conversion}{tgt}")
    return "\n".join(out) + "\n"
