"""``load`` and ``verify``: a run of a load script (the model's, or the real kernel's under QEMU) as
a dmesg-like transcript with kmod-like result lines, and ``verify --compare``'s difference lines.

The ``--json`` document is :func:`run_json`'s (documented in docs/loader.md); the kernel recordings
of tests/scenarios/recorded are kept in it and read back by :func:`run_from_json`: the schema is
here, in both directions, and nowhere else."""

from __future__ import annotations

import errno as E
import os
from typing import Any

from ..loader.result import Call, Formed, ModuleState, Run, StepResult

# kmod's insmod/modprobe (tools/insmod.c mod_strerror) for the usual loader errors
KMOD_STRERROR = {E.ENOEXEC: "Invalid module format", E.ENOENT: "Unknown symbol in module",
                 E.ESRCH: "Unknown symbol in module", E.EINVAL: "Invalid parameters"}


def load_text(run: Run) -> str:
    """The transcript: a header and notes, per step the command, the kernel's lines and kmod's
    error line, then /proc/modules and the taint mask."""
    lines = [f"# {run.source}: kernel {run.kernel} (profile {run.profile}"
             f"{', verified' if run.profile_verified else ', unverified'})"]
    lines += [f"# note: {n}" for n in run.notes]
    for s in run.steps:
        lines.append(f"$ {s.cmd}")
        lines += [f"[kernel] {m}" for m in s.messages]
        err = s.errno
        tool = s.cmd.split()[0]
        if err:
            what = next((w for w in s.cmd.split()[1:] if not w.startswith("-")), "")  # after the options
            if tool == "rmmod":
                lines.append(f"rmmod: ERROR: could not remove module {what}: {os.strerror(err)}")
            else:
                msg = KMOD_STRERROR.get(err, os.strerror(err))
                lines.append(f"{tool}: ERROR: could not insert module {what}: {msg}")
    lines.append("# /proc/modules")
    for m in run.modules:
        users = ",".join(m.users) + "," if m.users else "-"
        size = m.size if m.size is not None else "?"
        taints = f" ({m.taints})" if m.taints else ""
        lines.append(f"{m.name} {size} {m.refcnt} {users} {m.state}{taints}")
    lines.append(f"# tainted: {run.tainted}")
    return "\n".join(lines) + "\n"


def compare_text(diffs: list[str], steps: int) -> str:
    """``verify --compare``: one ``DIFF:`` line a difference, then the count."""
    return "".join(f"DIFF: {d}\n" for d in diffs) + f"# compare: {len(diffs)} difference(s) over {steps} step(s)\n"


# -- the JSON document, both ways ------------------------------------------------------------------

def _call_json(c: Call) -> dict[str, Any]:
    if c.skipped:
        return {"module": c.module, "skipped": True, "errno": c.errno}
    if c.ignored:
        return {"module": c.module, "errno": c.errno, "ignored": True}
    return {"module": c.module, "errno": c.errno}


def _module_json(m: ModuleState) -> dict[str, Any]:
    return {"name": m.name, "size": m.size, "refcnt": m.refcnt, "users": m.users, "state": m.state,
            "taints": m.taints}


def _formed_json(f: Formed) -> dict[str, Any]:
    d: dict[str, Any] = {"name": f.name, "core": f.core, "init": f.init}
    if f.sizes is not None:
        d["sizes"] = f.sizes
    return d


def _step_json(s: StepResult) -> dict[str, Any]:
    return {"cmd": s.cmd, "line": s.line, "errno": s.errno, "errname": s.errname, "messages": s.messages,
            "calls": [_call_json(c) for c in s.calls], "init": s.init, "init_log": s.init_log,
            "modules": [_module_json(m) for m in s.modules], "tainted": s.tainted,
            "formed": None if s.formed is None else [_formed_json(f) for f in s.formed]}


def run_json(run: Run) -> dict[str, Any]:
    """``load --json`` / ``verify --json``: the run; a kernel run adds ``boot_seconds``,
    ``verify --compare`` ``differences``."""
    d: dict[str, Any] = {"source": run.source, "kernel": run.kernel, "vermagic": run.vermagic,
                         "profile": run.profile, "profile_verified": run.profile_verified, "notes": run.notes,
                         "steps": [_step_json(s) for s in run.steps], "tainted": run.tainted,
                         "modules": [_module_json(m) for m in run.modules]}
    if run.boot_seconds is not None:
        d["boot_seconds"] = run.boot_seconds
    if run.differences is not None:
        d["differences"] = run.differences
    return d


def _module_of(d: dict[str, Any]) -> ModuleState:
    return ModuleState(d["name"], d["size"], d["refcnt"], list(d["users"]), d["state"], d["taints"])


def _step_of(d: dict[str, Any]) -> StepResult:
    formed = d.get("formed")
    return StepResult(d["cmd"], d["line"], d["errno"], list(d["messages"]),
                      [Call(c["module"], c["errno"], bool(c.get("skipped", False)), bool(c.get("ignored", False)))
                       for c in d["calls"]],
                      d.get("init"), list(d.get("init_log", [])), [_module_of(m) for m in d["modules"]],
                      d["tainted"],
                      None if formed is None else
                      [Formed(f["name"], f.get("core"), f.get("init"),
                              None if f.get("sizes") is None else dict(f["sizes"])) for f in formed])


def run_from_json(doc: dict[str, Any]) -> Run:
    """A run's JSON document (a recording) as the run; fields older recordings lack (``init_log``,
    ``formed``: they predate them) read as not observed."""
    return Run(doc["source"], doc["kernel"], doc["vermagic"], doc["profile"], doc["profile_verified"],
               list(doc["notes"]), [_step_of(s) for s in doc["steps"]], doc["tainted"],
               [_module_of(m) for m in doc["modules"]], doc.get("boot_seconds"), doc.get("differences"))
