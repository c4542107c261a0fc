"""``load`` and ``verify``: a run of a load script (the model's, or the real kernel's under QEMU) as
a dmesg-like transcript with kmod-like result lines, and ``verify --compare``'s difference lines.

The ``--json`` document is :meth:`kmodsim.loader.result.Run.to_json` (documented in docs/loader.md;
the kernel recordings of tests/scenarios/recorded are kept in it)."""

from __future__ import annotations

import errno as E
import os

from ..loader.result import Run

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
            what = s.cmd.split()[1]
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
