"""``footprint``: the size table (what /proc/modules shows, by memory type, in pages) and
``--merge``'s what-if, as text and as the ``--json`` documents::

    {"profile", "modules": [<footprint>], "total": {"size", "pages"}}
    {"profile", "modules": [<footprint>], "merges": [<merge>], "duplicates": [{"symbol", "exporters"}],
     "configuration": {"before": {"size", "pages"}, "after": {...}, "delta": {"bytes", "pages"}}}

with ``<footprint>`` = ``{"name", "path", "size", "by_type", "pages", "init_size", "core_symbols",
"kallsyms_bytes", "percpu"}`` and ``<merge>`` = ``{"members", "footprint", "separate_size",
"separate_pages", "delta": {"bytes", "pages"}, "internal_exports", "unused_exports"}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..memory_layout import PAGE_SIZE

if TYPE_CHECKING:
    from ..memory_layout import Footprint, MergeReport, WhatIf


def _pages(n: int) -> int:
    return (n + PAGE_SIZE - 1) // PAGE_SIZE


def footprint_json(x: Footprint) -> dict[str, Any]:
    return {"name": x.name, "path": x.path, "size": x.size, "by_type": dict(x.by_type),
            "pages": x.pages, "init_size": x.init_size, "core_symbols": x.core_symbols,
            "kallsyms_bytes": x.kallsyms_bytes, "percpu": x.percpu}


def merge_json(g: MergeReport) -> dict[str, Any]:
    return {"members": g.members, "footprint": footprint_json(g.footprint), "separate_size": g.separate,
            "separate_pages": _pages(g.separate),
            "delta": {"bytes": g.delta, "pages": g.footprint.pages - _pages(g.separate)},
            "internal_exports": g.internal_exports, "unused_exports": g.unused_exports}


def footprints_json(profile: str, rows: list[Footprint]) -> dict[str, Any]:
    return {"profile": profile, "modules": [footprint_json(x) for x in rows],
            "total": {"size": sum(x.size for x in rows), "pages": sum(x.pages for x in rows)}}


def footprints_text(rows: list[Footprint]) -> str:
    """The table, then the total line."""
    return table(rows) + "\n" + f"{'total':<24}{sum(x.size for x in rows):>10}{sum(x.pages for x in rows):>7}"


def table(rows: list[Footprint]) -> str:
    kinds = [k for k in ("text", "rodata", "ro_after_init", "data", "other", "kallsyms")
             if any(k in x.by_type for x in rows)]
    lines = [f"{'module':<24}{'size':>10}{'pages':>7}  " + "".join(f"{k:>14}" for k in kinds)]
    for x in rows:
        lines.append(f"{x.name:<24}{x.size:>10}{x.pages:>7}  " + "".join(f"{x.by_type.get(k, 0):>14}" for k in kinds))
    return "\n".join(lines)


def what_if_json(r: WhatIf) -> dict[str, Any]:
    return {"profile": r.profile, "modules": [footprint_json(m) for m in r.modules],
            "merges": [merge_json(g) for g in r.merges],
            "duplicates": [{"symbol": s, "exporters": w} for s, w in r.duplicates.items()],
            "configuration": {"before": {"size": r.before, "pages": _pages(r.before)},
                              "after": {"size": r.after, "pages": _pages(r.after)},
                              "delta": {"bytes": r.after - r.before,
                                        "pages": _pages(r.after) - _pages(r.before)}}}


def what_if_text(r: WhatIf) -> str:
    lines = [table(r.modules)]
    for g in r.merges:
        lines.append("")
        lines.append(f"merged {g.footprint.name}: {g.footprint.size} bytes ({g.footprint.pages} pages) "
                     f"instead of {g.separate} ({_pages(g.separate)} pages): {g.delta:+d} bytes, "
                     f"{g.footprint.pages - _pages(g.separate):+d} pages")
        lines.append(f"  exports that become internal ({len(g.internal_exports)}): "
                     + (", ".join(g.internal_exports[:12]) + (" ..." if len(g.internal_exports) > 12 else "")))
    if r.duplicates:
        lines.append("")
        lines.append(f"exported twice after merging: {len(r.duplicates)} symbols")
        for s, who in list(r.duplicates.items())[:10]:
            lines.append(f"  {s}: {', '.join(who)}")
    lines.append("")
    lines.append(f"configuration: {r.before} -> {r.after} bytes ({r.after - r.before:+d}), "
                 f"{_pages(r.before)} -> {_pages(r.after)} pages")
    return "\n".join(lines)
