"""``abi diff`` and ``abi history``: the text for people (counts first, then each kind of change as
a group, names sorted) and the JSON documents (docs/abi.md documents both schemas)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .modules import crc_text

if TYPE_CHECKING:
    from ..abi import AbiChange, AbiDiff, AbiExport, AbiHistory, AbiSide
    from ..abi.causes import Cause, CauseSummary


def _kinds() -> tuple[str, ...]:
    from ..abi import CHANGE_KINDS

    return CHANGE_KINDS


def export_json(e: AbiExport | None) -> dict[str, Any] | None:
    return None if e is None else {"crc": e.crc, "owner": e.owner, "gpl": e.gpl, "namespace": e.namespace}


def cause_json(c: Cause) -> dict[str, Any]:
    return {"type": c.type, "change": c.change, "path": list(c.path)}


def change_json(c: AbiChange) -> dict[str, Any]:
    return {"symbol": c.symbol, "change": c.change, "old": export_json(c.old), "new": export_json(c.new),
            "causes": [cause_json(x) for x in c.causes]}


def causes_json(s: CauseSummary | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"crc_changes": s.crc_changes, "explained": s.explained, "unexplained": dict(s.unexplained),
            "type_changes": [{"type": t.type, "change": t.change, "symbols": t.symbols, "example": list(t.example)}
                             for t in s.type_changes]}


def summary_json(d: AbiDiff) -> dict[str, Any]:
    return {
        "old_exports": d.compared[0],
        "new_exports": d.compared[1],
        **d.counts(),
        "symbols_changed": d.symbols_changed,
        "incompatible": d.incompatible,
        "compatible": d.compatible,
        "symbol_lists": list(d.symbol_lists),
        "in_scope": None if d.scope is None else len(d.scope),
        "causes": causes_json(d.causes),
    }


def _release(side: AbiSide) -> str | None:
    return side.release or None


def diff_json(d: AbiDiff) -> dict[str, Any]:
    """``abi diff --json``: ``{"old", "new", "changes", "summary"}``."""
    return {"old": _release(d.old), "new": _release(d.new), "changes": [change_json(c) for c in d.changes],
            "summary": summary_json(d)}


def _name(side: AbiSide) -> str:
    return side.release or side.path


def _counts_line(d: AbiDiff) -> str:
    counts = d.counts()
    return ", ".join(f"{counts[k]} {k}" for k in _kinds())


def _detail(c: AbiChange) -> str:
    o, n = c.old, c.new
    if c.change == "added":
        assert n is not None
        return n.owner
    if c.change == "removed":
        assert o is not None
        return o.owner
    assert o is not None and n is not None
    if c.change == "crc":
        why = ", ".join(dict.fromkeys(x.type for x in c.causes if x.type is not None))
        return f"{crc_text(o.crc)} -> {crc_text(n.crc)}  {n.owner}" + (f"  ({why})" if why else "")
    if c.change == "license":
        word = {False: "EXPORT_SYMBOL", True: "EXPORT_SYMBOL_GPL"}
        return f"{word[o.gpl]} -> {word[n.gpl]}  {n.owner}"
    if c.change == "namespace":
        return f"{o.namespace or '-'} -> {n.namespace or '-'}  {n.owner}"
    return f"{o.owner} -> {n.owner}"


def diff_text(d: AbiDiff) -> str:
    """The verdict and the counts first, then one group a kind of change (the incompatible kinds
    first), one line a name, names sorted; a compatible line of an otherwise incompatible kind
    (a GPL-only export opened, a namespace dropped) says so."""
    n = d.incompatible
    verdict = "compatible" if d.compatible else f"INCOMPATIBLE ({n} incompatible change{'' if n == 1 else 's'})"
    lines = [f"{_name(d.old)} -> {_name(d.new)}: {verdict}",
             f"exports compared: {d.compared[0]} -> {d.compared[1]}"
             + (f" (in scope: the {len(d.scope)} names of {', '.join(d.symbol_lists)})" if d.scope is not None
                else ""),
             f"{len(d.changes)} changes in {d.symbols_changed} symbols: {_counts_line(d)}"]
    lines += _causes_lines(d.causes)
    groups: dict[str, list[AbiChange]] = {}
    for c in d.changes:
        groups.setdefault(c.change, []).append(c)
    for kind in _kinds():
        group = groups.get(kind)
        if not group:
            continue
        width = min(max(len(c.symbol) for c in group), 48)
        lines.append("")
        lines.append(f"{kind} ({len(group)}):")
        for c in group:
            mark = "  (compatible)" if c.compatible and kind not in ("added", "owner") else ""
            lines.append(f"  {c.symbol:<{width}}  {_detail(c)}{mark}")
    return "\n".join(lines)


def _causes_lines(s: CauseSummary | None) -> list[str]:
    """The causes of the CRC changes, grouped: one line a changed definition (most symbols first)
    with the way from the first export it explains, then what stays unexplained."""
    if s is None or not s.crc_changes:
        return []
    n = len(s.type_changes)
    head = (f"{s.crc_changes} CRC changes: {s.explained} explained by {n} type change{'' if n == 1 else 's'}"
            f", {s.unexplained_total} unexplained")
    out = ["", head + (":" if n or s.unexplained else "")]
    width = len(str(s.type_changes[0].symbols)) if n else 1
    for t in s.type_changes:
        out.append(f"  {t.symbols:>{width}}  {t.type}: {t.change}")
        out.append(f"  {'':>{width}}    e.g. {' -> '.join(t.example)}")
    for reason, k in s.unexplained.items():
        out.append(f"  {k:>{width}}  {reason}")
    return out


def causes_cell(s: CauseSummary | None, top: int = 3) -> str:
    """``abi history``'s causes column: the top type changes of a step, and the unexplained."""
    if s is None or not s.crc_changes:
        return ""
    parts = [f"{t.type} ({t.symbols})" for t in s.type_changes[:top]]
    if len(s.type_changes) > top:
        parts.append(f"+{len(s.type_changes) - top} more")
    if s.unexplained_total:
        parts.append(f"{s.unexplained_total} unexplained")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# abi history
# ---------------------------------------------------------------------------------------------

def history_json(h: AbiHistory) -> dict[str, Any]:
    """``abi history --json``: the kernels in order and one summary a step (the changes themselves:
    ``abi diff`` of the step)."""
    return {
        "kernels": [{"path": k.path, "release": _release(k), "exports": len(k.exports)} for k in h.kernels],
        "steps": [{"old": _release(s.diff.old), "new": _release(s.diff.new), "summary": summary_json(s.diff)}
                  for s in h.steps],
        "symbol_lists": list(h.symbol_lists),
        "compatible": h.compatible,
    }


def history_text(h: AbiHistory) -> str:
    """One row a step: the releases, the exports of the new kernel, the count of each kind of
    change, the verdict."""
    kinds = _kinds()
    causes = any(s.diff.causes is not None for s in h.steps)
    head = ["step", "exports", *kinds, "verdict", *(["causes"] if causes else [])]
    rows = [[f"{_name(s.diff.old)} -> {_name(s.diff.new)}", str(s.diff.compared[1]),
             *(str(s.diff.counts()[k]) for k in kinds),
             "compatible" if s.diff.compatible else "INCOMPATIBLE",
             *([causes_cell(s.diff.causes)] if causes else [])] for s in h.steps]
    last = len(kinds) + 2  # the verdict
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = []
    for r in [head, *rows]:
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:last], widths[1:last], strict=True)]
        cells += [c.ljust(w) for c, w in zip(r[last:], widths[last:], strict=True)]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)
