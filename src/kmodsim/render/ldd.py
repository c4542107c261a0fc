"""``ldd``: one line an import (``symbol => provider (path)`` plus the checks), and the ``ldd --json``
document (documented in README.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .modules import crc_text

if TYPE_CHECKING:
    from ..link import LddResult, Resolution


def resolution_json(r: Resolution) -> dict[str, Any]:
    p = r.provider
    return {
        "symbol": r.symbol,
        "crc": r.expected_crc,
        "weak": r.weak,
        "provider": None if p is None else p.owner,
        "provider_path": None if p is None else p.path,
        "gpl": None if p is None else p.gpl,
        "namespace": None if p is None else p.namespace,
        "provider_crc": None if p is None else p.crc,
        "crc_check": r.crc,
        "gpl_ok": r.gpl_ok,
        "namespace_ok": r.namespace_ok,
        "other_providers": [o.owner for o in r.others],
    }


def ldd_json(res: LddResult) -> dict[str, Any]:
    m, kernel = res.module, res.kernel
    return {"module": m.name, "path": m.path, "kernel": kernel.source, "vermagic": m.vermagic,
            "kernel_vermagic": kernel.vermagic, "vermagic_ok": res.vermagic_ok,
            "imports": [resolution_json(r) for r in res.resolutions]}


def ldd_text(res: LddResult) -> str:
    """The vermagic verdict when it fails, then one line an import."""
    lines = []
    if res.vermagic_ok is False:
        lines.append(f"{res.module.name}: version magic '{res.module.vermagic}' should be "
                     f"'{res.kernel.vermagic}'")
    lines.append(resolutions_text(res.resolutions))
    return "\n".join(lines)


def resolutions_text(rs: list[Resolution]) -> str:
    """One line an import, ldd-style: ``symbol => provider (path)`` plus the checks."""
    lines = []
    for r in rs:
        p = r.provider
        if p is None:
            lines.append(f"\t{r.symbol} => {'not found (weak)' if r.weak else 'not found'}")
            continue
        where = p.owner if not p.path else f"{p.owner} ({p.path})"
        notes = ["GPL" if p.gpl else "-"]
        if p.namespace:
            notes.append(f"ns {p.namespace}" + ("" if r.namespace_ok else " NOT IMPORTED"))
        if not r.gpl_ok:
            notes.append("GPL-only, module license not GPL-compatible")
        if r.crc == "ok":
            notes.append("crc ok")
        elif r.crc == "mismatch":
            notes.append(f"CRC MISMATCH (module {crc_text(r.expected_crc)}, provider {crc_text(p.crc)})")
        else:
            notes.append(r.crc)
        if r.others:
            notes.append("also exported by " + ", ".join(o.owner for o in r.others))
        lines.append(f"\t{r.symbol} => {where}  [{'; '.join(notes)}]")
    return "\n".join(lines)
