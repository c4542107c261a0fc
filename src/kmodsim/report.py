"""Rendering: human text (modinfo/ldd-like wording) and JSON. No analysis happens here."""

from __future__ import annotations

from .link import Resolution
from .module import Module


def _crc(c: int | None) -> str:
    return "-" if c is None else f"0x{c:08x}"


def render_module_text(m: Module) -> str:
    """modinfo's layout (``key:`` padded to 16 columns), then sections, exports and imports."""
    lines = [f"{'filename:':<16}{m.path}"]
    params = {p.name: p for p in m.params}
    shown_params: set[str] = set()
    for k, v in m.modinfo:
        if k in ("parm", "parmtype"):
            pname = v.partition(":")[0]
            if pname in shown_params:
                continue
            shown_params.add(pname)
            p = params[pname]
            text = p.name + ":" + p.description + (f" ({p.type})" if p.type else "")
            lines.append(f"{'parm:':<16}{text}")
        else:
            lines.append(f"{k + ':':<16}{v}")
    if not any(k == "name" for k, _ in m.modinfo):
        lines.append(f"{'name:':<16}{m.name}")
    cls = "ELF64" if m.ei_class == 2 else "ELF32"
    endian = "little-endian" if m.little_endian else "big-endian"
    comp = f", {m.compression}-compressed ({m.file_size} bytes)" if m.compression else ""
    lines.append(f"{'elf:':<16}{cls} {endian} {m.machine_name}, {len(m.sections)} sections{comp}")
    if m.signature is not None:
        lines.append(f"{'signature:':<16}{m.signature.id_type}, {m.signature.sig_len} bytes")
    else:
        lines.append(f"{'signature:':<16}none")
    lines.append("")
    lines.append(f"exports ({len(m.exports)}):")
    if m.exports:
        nsw = max([len(e.namespace) for e in m.exports] + [9])
        lines.append(f"  {'type':<16} {'crc':<10}  {'namespace':<{nsw}}  symbol")
        for e in m.exports:
            typ = "EXPORT_SYMBOL_GPL" if e.gpl else "EXPORT_SYMBOL"
            lines.append(f"  {typ:<16} {_crc(e.crc):<10}  {e.namespace or '-':<{nsw}}  {e.name}")
    lines.append("")
    lines.append(f"imports ({len(m.imports)}):")
    for i in m.imports:
        weak = "  (weak)" if i.weak else ""
        lines.append(f"  {_crc(i.crc):<10}  {i.name}{weak}")
    return "\n".join(lines)


def resolution_json(r: Resolution) -> dict:
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


def render_ldd_text(rs: list[Resolution]) -> str:
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
            notes.append(f"CRC MISMATCH (module {_crc(r.expected_crc)}, provider {_crc(p.crc)})")
        else:
            notes.append(r.crc)
        if r.others:
            notes.append("also exported by " + ", ".join(o.owner for o in r.others))
        lines.append(f"\t{r.symbol} => {where}  [{'; '.join(notes)}]")
    return "\n".join(lines)
