"""``series``: one row a step and its details as text, and the ``--json`` document (docs/series.md)::

    {"release", "layout", "module_dirs": [dir], "struct": name | null, "expect": {metric: "down" | "up"},
     "steps": [{"index", "name", "commit",
                "applies", "apply": {"errors": [line], "offsets": [line], "fuzz"},
                "builds", "build": {"errors": [line], "compiled": [object], "linked": [module], ("seconds", "cpu_seconds")},
                "links", "findings": {"errors", "warnings"} | null,
                "new_findings": [<finding>], "fixed_findings": [<finding>],
                "exports": {"added": [{"symbol", "module"}], "removed": [{"symbol", "module"}],
                            "moved": [{"symbol", "from": [module], "to": [module]}]},
                "modules": [{"name", "path", "size", "pages", "size_delta", "exports": [symbol]}],
                "removed_modules": [name],
                "ops": {"members", "calls", "static_calls", "null_tests", "assignments",
                        "delta": {<the same keys>} | null} | null,
                "wrong_way": [{"metric", "change"}], "flags": [flag]}],
     "verdict": {"bisectable", "first_bad": {"index", "name", "flags"} | null},
     "reorder": null | {"order": [step] | null, "given_good", "steps": [<step>] | null,
                        "needs": [{"step", "after": [step]}],
                        "ruled_out": [{"after": [step], "step", "flags": [flag], "reason": [line], "same_as": [step] | null}],
                        "builds", "given_builds", "orders"}}

with ``<finding>`` as ``check --format json`` writes one (``kmodsim.render.check.finding_json``),
its path relative to DIR. ``applies``/``builds``/``links`` are null where the step was not
applied (the base; a commit checked out), built (it did not apply) or checked (it did not build).
Build times (``"seconds"`` wall, ``"cpu_seconds"`` user + system; text columns) only with ``times``: without, the same inputs give the
same document byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .check import finding_json

if TYPE_CHECKING:
    from ..series import Reorder, RuledOut, SeriesResult, Step


def step_json(s: Step, times: bool = False) -> dict[str, Any]:
    build: dict[str, Any] = {"errors": s.built.errors, "compiled": s.built.compiled, "linked": s.built.linked}
    if times:
        build["seconds"] = round(s.built.seconds, 3)
        build["cpu_seconds"] = round(s.built.cpu_seconds, 3)
    return {
        "index": s.number, "name": s.name, "commit": s.commit,
        "applies": s.applied.ok,
        "apply": {"errors": s.applied.errors, "offsets": s.applied.offsets, "fuzz": s.applied.fuzz},
        "builds": s.built.ok, "build": build,
        "links": s.linked,
        "findings": None if s.findings is None else {
            "errors": sum(f.severity == "error" for f in s.findings),
            "warnings": sum(f.severity != "error" for f in s.findings)},
        "new_findings": [finding_json(f) for f in s.new_findings],
        "fixed_findings": [finding_json(f) for f in s.fixed_findings],
        "exports": {"added": [{"symbol": n, "module": m} for n, m in s.exports_added],
                    "removed": [{"symbol": n, "module": m} for n, m in s.exports_removed],
                    "moved": [{"symbol": m.symbol, "from": list(m.source), "to": list(m.dest)}
                              for m in s.exports_moved]},
        "modules": [{"name": m.name, "path": m.path, "size": m.size, "pages": m.pages,
                     "size_delta": m.size_delta, "exports": list(m.exports)} for m in s.modules],
        "removed_modules": s.removed_modules,
        "ops": None if s.ops is None else {**s.ops._asdict(),
                                           "delta": None if s.ops_delta is None else s.ops_delta._asdict()},
        "wrong_way": [{"metric": m, "change": c} for m, c in s.wrong_way],
        "flags": s.flags,
    }


def series_json(r: SeriesResult, times: bool = False) -> dict[str, Any]:
    bad = r.first_bad
    return {"release": r.release, "layout": r.layout, "module_dirs": r.module_dirs, "struct": r.struct,
            "expect": dict(r.expect),
            "steps": [step_json(s, times) for s in r.steps],
            "verdict": {"bisectable": r.bisectable,
                        "first_bad": None if bad is None else {"index": bad.number, "name": bad.name,
                                                               "flags": bad.flags}},
            "reorder": None if r.reorder is None else reorder_json(r.reorder, times)}


def reorder_json(o: Reorder, times: bool = False) -> dict[str, Any]:
    return {"order": None if o.order is None else list(o.order), "given_good": o.given_good,
            "steps": None if o.steps is None else [step_json(s, times) for s in o.steps],
            "needs": [{"step": n.step, "after": list(n.after)} for n in o.needs],
            "ruled_out": [{"after": list(x.after), "step": x.step, "flags": list(x.flags), "reason": list(x.reason),
                           "same_as": None if x.same_as is None else list(x.same_as)} for x in o.ruled_out],
            "builds": o.builds, "given_builds": o.given_builds, "orders": o.orders}


def _yn(v: bool | None) -> str:
    return "-" if v is None else "ok" if v else "FAIL"


def _total(s: Step) -> int:
    return sum(m.size for m in s.modules)


def series_text(r: SeriesResult, times: bool = False) -> str:
    """The table (a row a step: applies, builds, links, objects compiled, modules linked, exports
    added/removed/moved, the modules' total size and its change, with a struct the calls through
    the table, NULL tests and assignments), each step's details under the table, the verdict."""
    lines = [f"kernel {r.release} (layout {r.layout}); modules built in: {', '.join(r.module_dirs)}", ""]
    lines += _table(r.steps, r.struct, times)
    details = [d for s in r.steps for d in _details(s, r.expect)]
    if details:
        lines += [""] + details
    bad = r.first_bad
    lines.append("")
    if bad is None:
        lines.append("verdict: bisectable: every step applies, builds and adds no link error"
                     + (", and no expected metric moves the wrong way" if r.expect else "")
                     + f" ({len(r.steps) - 1} step{'s' if len(r.steps) != 2 else ''})")
    else:
        lines.append(f"verdict: not bisectable: the first bad step is {bad.number} ({bad.name}): "
                     f"{', '.join(bad.flags)}")
    return "\n".join(lines + reorder_text(r, times))


def _table(steps: list[Step], struct: str | None, times: bool) -> list[str]:
    width = min(48, max(len(s.name) for s in steps))
    head = (f"{'#':>3}  {'step':<{width}}  {'apply':<5}  {'build':<5}  {'link':<5}  {'cc':>3}  {'ld':>3}  "
            f"{'exports +/-/moved':<17}  {'size':>8}  {'delta':>7}" + (f"  {'time':>7}  {'cpu':>7}" if times else "")
            + (f"  {'ops calls/null/set':<18}" if struct else "") + "  flags")
    lines = [head]
    last: Step | None = None
    for s in steps:
        name = s.name if len(s.name) <= width else s.name[:width - 3] + "..."
        checked = s.findings is not None
        exports = (f"+{len(s.exports_added)}/-{len(s.exports_removed)}/~{len(s.exports_moved)}"
                   if checked and s.number else "")
        size = f"{_total(s):>8}" if checked else f"{'':>8}"
        delta = f"{_total(s) - _total(last):>+7d}" if checked and last is not None else f"{'':>7}"
        built = s.built.ok is not None
        t = (f"  {s.built.seconds:>6.2f}s  {s.built.cpu_seconds:>6.2f}s" if times and built
             else (f"  {'':>7}  {'':>7}" if times else ""))
        ops = ""
        if struct:
            ops = "" if s.ops is None else f"{s.ops.calls}/{s.ops.null_tests}/{s.ops.assignments}"
            ops = f"  {ops:<18}"
        lines.append(f"{s.number:>3}  {name:<{width}}  {_yn(s.applied.ok):<5}  {_yn(s.built.ok):<5}  "
                     f"{_yn(s.linked):<5}  {len(s.built.compiled) if built else '':>3}  "
                     f"{len(s.built.linked) if built else '':>3}  {exports:<17}  "
                     f"{size}  {delta}{t}{ops}  {', '.join(s.flags)}".rstrip())
        if checked:
            last = s
    return lines


def _who(steps: tuple[int, ...]) -> str:
    return ", ".join(map(str, steps))


def _ruled(x: RuledOut) -> str:
    where = f"{x.step} first" if not x.after else f"after {_who(x.after)}, {x.step}"
    if x.same_as is not None:
        return f"{where}: the same tree as after {_who(x.same_as)}, from which no order is good"
    return f"{where}: {', '.join(x.flags)}" + (f": {x.reason[0]}" if x.reason else "") + \
        "".join(f"\n         {line}" for line in x.reason[1:])


def reorder_text(r: SeriesResult, times: bool = False) -> list[str]:
    """The --reorder section: the order found (its table) or that none exists, the dependencies
    between patches, the steps ruled out (the proof, when no order exists), the trees built."""
    o = r.reorder
    if o is None:
        return []
    n = len(r.steps) - 1
    spent = (f"trees built: {o.builds} ({o.given_builds} for the given order, {o.builds - o.given_builds} for the "
             f"search); whole orders checked: {o.orders}")
    if o.given_good:
        return ["", f"reorder: the given order is good: nothing to change ({spent})"]
    bad = r.first_bad
    lines = [""]
    if o.order is not None:
        lines.append(f"reorder: an order in which every step is good: {_who(o.order)}"
                     + (f" (the given order's first bad step is {bad.number})" if bad is not None else ""))
    else:
        lines.append(f"reorder: no order of the {n} patch{'es' if n != 1 else ''} in which every step is good")
    for need in o.needs:
        lines.append(f"  {need.step} does not apply to the base" +
                     (f"; it applies after {' or '.join(map(str, need.after))}" if need.after else
                      ", nor after any other one patch"))
    if o.ruled_out:
        lines.append("  ruled out" + (" (together, every order):" if o.order is None else ":"))
        lines += [f"    {_ruled(x)}" for x in o.ruled_out]
    lines.append(f"  {spent}")
    if o.steps is not None:
        lines += ["", *_table(o.steps, r.struct, times)]
    return lines


FEW = 12  # detail lines of one kind shown in the text (the JSON document holds every one)


def _few(lines: list[str], what: str) -> list[str]:
    if len(lines) <= FEW:
        return lines
    return lines[:FEW - 2] + [f"... {len(lines)} {what} in all ({len(lines) - FEW + 2} more in --json)"]


def _details(s: Step, expect: dict[str, str]) -> list[str]:
    out: list[str] = [f"wrong way: {m} {c:+d} (expected {expect.get(m, '?')})" for m, c in s.wrong_way]
    out += [f"git apply: {e}" for e in s.applied.errors]
    if s.applied.fuzz:
        out.append("applies with fuzz only (git apply -C1: one line of context)")
    out += [f"offset: {o}" for o in s.applied.offsets]
    out += [f"build: {e}" for e in s.built.errors]
    out += _few([f"new: {f.check}: {f.message}" for f in s.new_findings], "new findings")
    out += _few([f"fixed: {f.check}: {f.message}" for f in s.fixed_findings], "fixed findings")
    out += _few([f"export moved: {m.symbol}: {', '.join(m.source)} -> {', '.join(m.dest)}" for m in s.exports_moved],
                "exports moved")
    out += _few([f"export added: {n} ({m})" for n, m in s.exports_added], "exports added")
    out += _few([f"export removed: {n} ({m})" for n, m in s.exports_removed], "exports removed")
    if s.number:
        out += [f"module {m.name}: {m.size} bytes ({m.size_delta:+d})" for m in s.modules if m.size_delta]
        out += [f"module {m.name}: new, {m.size} bytes" for m in s.modules if m.size_delta is None]
    out += [f"module {n}: no longer built" for n in s.removed_modules]
    if s.ops is not None and (s.number == 0 or (s.ops_delta is not None and any(s.ops_delta))):
        d = s.ops_delta
        out.append("ops: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" + (f" ({getattr(d, k):+d})" if d is not None and getattr(d, k) else "")
            for k, v in s.ops._asdict().items()))
    return [f"{s.number:>3}  {s.name}"] + [f"       {line}" for line in out] if out else []
