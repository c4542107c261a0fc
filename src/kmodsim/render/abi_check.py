"""``kmodsim abi check``: text and JSON (docs/abi.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..abi.check import MODES, VERDICTS, AbiCheck


def check_text(res: AbiCheck) -> str:
    head = "all load" if res.all_load else "SOME DO NOT LOAD"
    lines = [f"modules on {res.release or res.kernel}: {head}",
             f"{len(res.modules)} modules: " + ", ".join(f"{res.count(v)} {v}" for v in VERDICTS)
             + (f"; {res.btf_refused} load without their BTF (the kernel refused it)" if res.btf_refused else "")]
    width = max((len(m.name) for m in res.modules), default=0)
    for m in res.modules:
        first = m.attempts["load"]
        why = first.messages[0] if first.messages else (first.errname or "")
        lines.append(f"  {m.name:<{width}}  {m.verdict:<14}  {why}".rstrip())
        # a refused module: every line of its refusal; a loaded one: what the kernel still says
        # against it (its BTF refused: no BTF for it in the kernel), without the verifier's lines
        rest = first.messages[1:] if m.verdict != "loads" else \
            [x for x in first.messages[1:] if not x.startswith("BPF: ")]
        for line in rest:
            lines.append(f"  {'':<{width}}  {'':<14}  {line}")
    for path, problem in res.problems:
        lines.append(f"  unreadable: {path}: {problem}")
    return "\n".join(lines) + "\n"


def check_json(res: AbiCheck) -> dict[str, Any]:
    return {
        "kernel": res.release or None,
        "vermagic": res.vermagic,
        "modules": [{
            "path": m.path, "name": m.name, "vermagic": m.vermagic, "uses": m.uses, "verdict": m.verdict,
            "btf_refused": m.btf_refused,
            **{key: {"command": cmd, "errno": a.errno, "errname": a.errname, "messages": a.messages,
                     "taints": a.taints}
               for (key, _flags, cmd), a in ((mode, m.attempts[mode[0]]) for mode in MODES)},
        } for m in res.modules],
        "problems": [{"path": p, "problem": q} for p, q in res.problems],
        "summary": {**{v: res.count(v) for v in VERDICTS}, "modules": len(res.modules),
                    "btf_refused": res.btf_refused, "all_load": res.all_load},
    }


def kernels_text(results: Sequence[AbiCheck | Exception], names: list[str]) -> str:
    """The same modules on several kernels: a table of verdicts per kernel (in the order given),
    then each kernel's :func:`check_text`. A kernel that could not be read is a row that says so
    (its error is on stderr)."""
    ok = [r for r in results if isinstance(r, AbiCheck)]
    n = len(ok[0].modules) if ok else 0
    rows: list[tuple[str, ...]] = [("kernel", *VERDICTS, "")]
    for name, r in zip(names, results, strict=True):
        if isinstance(r, AbiCheck):
            rows.append((r.release or name, *(str(r.count(v)) for v in VERDICTS),
                         "all load" if r.all_load else "SOME DO NOT LOAD"))
        else:
            rows.append((name, *("-" for _ in VERDICTS), "unreadable"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    head = [f"{n} modules on {len(results)} kernels: "
            + ("all load on every kernel" if len(ok) == len(results) and all(r.all_load for r in ok)
               else "SOME DO NOT LOAD")]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:-1], widths[1:-1], strict=True)]
        head.append(("  " + "  ".join(cells) + "  " + row[-1]).rstrip())
    return "\n".join(head) + "\n" + "".join("\n" + check_text(r) for r in ok)


def kernels_json(results: Sequence[AbiCheck | Exception], names: list[str]) -> dict[str, Any]:
    """``{"kernels": [each kernel's check_json document, or {"kernel": NAME, "error": LINE}],
    "summary": {"kernels", "unreadable", "all_load"}}``."""
    docs = [check_json(r) if isinstance(r, AbiCheck) else {"kernel": name, "error": str(r)}
            for name, r in zip(names, results, strict=True)]
    ok = [r for r in results if isinstance(r, AbiCheck)]
    return {"kernels": docs,
            "summary": {"kernels": len(results), "unreadable": len(results) - len(ok),
                        "all_load": len(ok) == len(results) and all(r.all_load for r in ok)}}
