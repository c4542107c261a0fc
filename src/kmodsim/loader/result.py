"""The result of a run of a load script — the model's (``kmodsim load``) or the real kernel's
(``kmodsim verify``): typed records with named fields, and their one JSON serialisation.

``Run.to_json()`` is the ``--json`` document, documented in docs/loader.md; the kernel recordings
of the tests (tests/scenarios/recorded/) are kept in it and read back with ``Run.from_json()``.
The text transcript is :func:`kmodsim.render.loader.load_text`'s.
"""

from __future__ import annotations

import errno as E
from typing import Any, NamedTuple

__all__ = ["Call", "ModuleState", "Formed", "StepResult", "Run", "errname"]


def errname(err: int) -> str:
    """``ENOENT`` for 2; ``""`` for 0."""
    return E.errorcode.get(err, str(err)) if err else ""


class Call(NamedTuple):
    """One finit_module()/delete_module() call of a step, or a module modprobe skipped (already
    loaded: kmod's modprobe does not call the kernel for it)."""
    module: str
    errno: int
    skipped: bool = False

    def to_json(self) -> dict[str, Any]:
        if self.skipped:
            return {"module": self.module, "skipped": True, "errno": self.errno}
        return {"module": self.module, "errno": self.errno}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Call:
        return cls(d["module"], d["errno"], bool(d.get("skipped", False)))


class ModuleState(NamedTuple):
    """A line of /proc/modules (kernel/module/procfs.c:m_show()): ``size`` is None where the model
    has no footprint for the module."""
    name: str
    size: int | None
    refcnt: int
    users: list[str]
    state: str
    taints: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "refcnt": self.refcnt, "users": self.users,
                "state": self.state, "taints": self.taints}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModuleState:
        return cls(d["name"], d["size"], d["refcnt"], list(d["users"]), d["state"], d["taints"])


class Formed(NamedTuple):
    """A module that reached do_init_module(), with its core and init sizes in bytes (None: not
    known); ``sizes``, on the kernel's side only, the raw struct module fields the probe read."""
    name: str
    core: int | None
    init: int | None
    sizes: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "core": self.core, "init": self.init}
        if self.sizes is not None:
            d["sizes"] = self.sizes
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Formed:
        sizes = d.get("sizes")
        return cls(d["name"], d.get("core"), d.get("init"), None if sizes is None else dict(sizes))


class StepResult(NamedTuple):
    """One line of the script: its calls (the last one's errno is the step's), the kernel's log
    lines, the init result and log lines the script gave (None / empty when not given),
    /proc/modules and the taint mask after it, and the modules formed in it (None where not
    observed: a kernel run without the probe)."""
    cmd: str
    line: int
    errno: int
    messages: list[str]
    calls: list[Call]
    init: int | None
    init_log: list[str]
    modules: list[ModuleState]
    tainted: int | None
    formed: list[Formed] | None

    @property
    def errname(self) -> str:
        return errname(self.errno)

    def to_json(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "line": self.line, "errno": self.errno, "errname": self.errname,
                "messages": self.messages, "calls": [c.to_json() for c in self.calls], "init": self.init,
                "init_log": self.init_log, "modules": [m.to_json() for m in self.modules],
                "tainted": self.tainted,
                "formed": None if self.formed is None else [f.to_json() for f in self.formed]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StepResult:
        formed = d.get("formed")
        return cls(d["cmd"], d["line"], d["errno"], list(d["messages"]),
                   [Call.from_json(c) for c in d["calls"]], d.get("init"), list(d.get("init_log", [])),
                   [ModuleState.from_json(m) for m in d["modules"]], d["tainted"],
                   None if formed is None else [Formed.from_json(f) for f in formed])


class Run(NamedTuple):
    """A whole run: where it ran (``source``: ``model`` or ``kernel``), the kernel's release and
    vermagic, the loader profile, notes, the steps, and the final taint mask and /proc/modules.
    A kernel run also has the boot time; ``verify --compare`` adds the ``differences`` from the
    model (:func:`kmodsim.loader.run.compare`)."""
    source: str
    kernel: str | None
    vermagic: str | None
    profile: str
    profile_verified: bool
    notes: list[str]
    steps: list[StepResult]
    tainted: int | None
    modules: list[ModuleState]
    boot_seconds: float | None = None
    differences: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "kernel": self.kernel, "vermagic": self.vermagic,
                             "profile": self.profile, "profile_verified": self.profile_verified,
                             "notes": self.notes, "steps": [s.to_json() for s in self.steps],
                             "tainted": self.tainted, "modules": [m.to_json() for m in self.modules]}
        if self.boot_seconds is not None:
            d["boot_seconds"] = self.boot_seconds
        if self.differences is not None:
            d["differences"] = self.differences
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Run:
        return cls(d["source"], d["kernel"], d["vermagic"], d["profile"], d["profile_verified"],
                   list(d["notes"]), [StepResult.from_json(s) for s in d["steps"]], d["tainted"],
                   [ModuleState.from_json(m) for m in d["modules"]], d.get("boot_seconds"),
                   d.get("differences"))
