"""``check``: findings as modpost-style text, as the ``--format json`` document and as SARIF 2.1.0
(OASIS). The JSON document (documented in README.md)::

    {"findings": [{"check", "severity", "symbol", "module", "path", "message", <per-check fields>}],
     "summary": {"modules", "errors", "warnings"}}
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..checks import CHECKS

if TYPE_CHECKING:
    from ..checks import CheckResult, Finding


def finding_json(f: Finding) -> dict[str, Any]:
    return {"check": f.check, "severity": f.severity, "symbol": f.symbol, "module": f.module,
            "path": f.path, "message": f.message, **f.extra}


def check_json(res: CheckResult) -> dict[str, Any]:
    return {"findings": [finding_json(f) for f in res.findings],
            "summary": {"modules": res.modules, "errors": res.errors, "warnings": res.warnings}}


def check_text(res: CheckResult) -> str:
    """modpost's style: ``ERROR: kmodsim: <message>`` / ``WARNING: kmodsim: <message>``, one finding a
    line, ordered by check, symbol and module ("" when there is none)."""
    order = {c: i for i, c in enumerate(CHECKS)}
    fs = sorted(res.findings, key=lambda f: (order.get(f.check, 99), f.symbol, f.module))
    lines = []
    for f in fs:
        tag = "ERROR" if f.severity == "error" else "WARNING"
        lines.append(f"{tag}: kmodsim: {f.message}")
    return "\n".join(lines)


def check_sarif(res: CheckResult) -> dict[str, Any]:
    """SARIF 2.1.0 (OASIS), one result per finding, one rule per check. The run's one invocation
    says whether it succeeded: every input problem (``(path, problem)``, what stderr says) is a
    tool execution notification, and ``executionSuccessful`` is false when there is one."""
    from .. import __version__

    rules = [{"id": c, "name": c, "shortDescription": {"text": d}} for c, d in CHECKS.items()]
    index = {c: i for i, c in enumerate(CHECKS)}
    results = []
    for f in res.findings:
        r: dict[str, Any] = {
            "ruleId": f.check,
            "ruleIndex": index[f.check],
            "level": "error" if f.severity == "error" else "warning",
            "message": {"text": f.message},
            "properties": {k: v for k, v in finding_json(f).items() if k not in ("message", "check", "severity")},
        }
        if f.path:
            r["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": _uri(f.path)}}}]
        results.append(r)
    invocation: dict[str, Any] = {"executionSuccessful": not res.problems}
    if res.problems:
        notes = []
        for path, problem in res.problems:
            n: dict[str, Any] = {"level": "error", "message": {"text": f"{path}: {problem}" if path else problem}}
            if path:
                n["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": _uri(path)}}}]
            notes.append(n)
        invocation["toolExecutionNotifications"] = notes
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "kmodsim", "version": __version__, "rules": rules}},
                  "invocations": [invocation],
                  "results": results}],
    }


def _uri(path: str) -> str:
    from urllib.parse import quote

    return "file://" + quote(os.path.abspath(path)) if os.path.isabs(path) else quote(path)
