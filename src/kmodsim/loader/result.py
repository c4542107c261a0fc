"""The result of a run of a load script — the model's (``kmodsim load``) or the real kernel's
(``kmodsim verify``): typed records with named fields.

Their JSON document (``--json``, docs/loader.md; the shape the kernel recordings of
tests/scenarios/recorded/ are kept in) is :mod:`kmodsim.render.loader`'s, both ways, as is the
text transcript.
"""

from __future__ import annotations

import errno as E
from typing import NamedTuple

__all__ = ["Call", "ModuleState", "Formed", "StepResult", "Run", "errname"]


def errname(err: int) -> str:
    """``ENOENT`` for 2; ``""`` for 0."""
    return E.errorcode.get(err, str(err)) if err else ""


class Call(NamedTuple):
    """One finit_module()/delete_module() call of a step, or a module modprobe skipped (already
    loaded or builtin: kmod's modprobe does not call the kernel for it); ``ignored``: an error
    modprobe goes past (a soft dependency's: not required)."""
    module: str
    errno: int
    skipped: bool = False
    ignored: bool = False



class ModuleState(NamedTuple):
    """A line of /proc/modules (kernel/module/procfs.c:m_show()): ``size`` is None where the model
    has no footprint for the module."""
    name: str
    size: int | None
    refcnt: int
    users: list[str]
    state: str
    taints: str



class Formed(NamedTuple):
    """A module that reached do_init_module(), with its core and init sizes in bytes (None: not
    known); ``sizes``, on the kernel's side only, the raw struct module fields the probe read."""
    name: str
    core: int | None
    init: int | None
    sizes: dict[str, int] | None = None



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
