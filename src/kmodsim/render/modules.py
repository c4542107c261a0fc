"""``inspect`` and ``scan``: a module as modinfo-like text and as the ``inspect --json`` object; a
scan as its summary line and as ``scan --json``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: inspect does not import the tree scanner
    from ..module import Module
    from ..tree import ScanResult


def crc_text(c: int | None) -> str:
    return "-" if c is None else f"0x{c:08x}"


def module_text(m: Module) -> str:
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
            lines.append(f"  {typ:<16} {crc_text(e.crc):<10}  {e.namespace or '-':<{nsw}}  {e.name}")
    lines.append("")
    lines.append(f"imports ({len(m.imports)}):")
    for i in m.imports:
        weak = "  (weak)" if i.weak else ""
        lines.append(f"  {crc_text(i.crc):<10}  {i.name}{weak}")
    return "\n".join(lines)


def module_json(m: Module) -> dict[str, Any]:
    """The stable ``inspect --json`` object (documented in README.md): keys are only ever added."""
    return {
        "name": m.name,
        "path": m.path,
        "vermagic": m.vermagic,
        "license": m.license,
        "depends": m.depends,
        "machine": m.machine_name,
        "elf_class": 64 if m.ei_class == 2 else 32,
        "endian": "little" if m.little_endian else "big",
        "compression": m.compression,
        "signed": m.signed,
        "signature": None if m.signature is None else {
            "id_type": m.signature.id_type, "sig_len": m.signature.sig_len},
        "exports": [{"name": e.name, "gpl": e.gpl, "namespace": e.namespace, "crc": e.crc}
                    for e in m.exports],
        "imports": [{"name": i.name, "crc": i.crc} for i in m.imports],
        "modinfo": _modinfo_json(m.modinfo),
        "params": [{"name": p.name, "type": p.type, "description": p.description}
                   for p in m.params],
        "sections": [{"name": s.name, "size": s.size, "align": s.align, "flags": s.flags,
                      "type": s.type} for s in m.sections],
    }


def _modinfo_json(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def scan_text(res: ScanResult) -> str:
    n_exp = sum(s[2] for s in res.summaries)
    n_imp = sum(s[3] for s in res.summaries)
    return f"{len(res.items)} modules, {n_exp} exports, {n_imp} imports, {len(res.errors)} errors"


def scan_json(res: ScanResult) -> dict[str, Any]:
    """``scan --json``: per module its name, path and export/import counts; the input problems; the
    ``.ko.gz`` files passed over."""
    return {
        "modules": [{"name": name, "path": path, "exports": n_exp, "imports": n_imp}
                    for path, name, n_exp, n_imp in res.summaries],
        "errors": [{"path": e.path, "problem": e.problem} for e in res.errors],
        "ignored": res.ignored,
    }


def scan_stats(res: ScanResult) -> str:
    """``scan --stats``: the cache's part (a line for stderr)."""
    return f"scan: {res.cached} modules from the cache, {res.parsed} read"
