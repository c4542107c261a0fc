"""``kmodsim abi check``: will modules built for another kernel load into this one?

Each module is loaded into a fresh :class:`kmodsim.loader.model.KernelModel` of the new kernel
three times — as ``insmod``/``modprobe`` would, with ``modprobe --force-vermagic``
(MODULE_INIT_IGNORE_VERMAGIC) and with ``modprobe -f`` (both MODULE_INIT_IGNORE_* flags) — and
the loader model's own errno and kernel lines are the verdict: the same model ``kmodsim load``
replays, so ``abi check`` and ``load`` of the same module agree by construction. The modules a
module's imports come from (owners in the new kernel's Module.symvers, the :data:`kmodsim.symbols.LOADER`
pick of the one symbol index) are taken as loaded before it, as modprobe would insert them.
"""

from __future__ import annotations

import errno as E
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import PathError
from ..kernel import Kernel
from ..loader.image import ModuleImage, load_image
from ..loader.model import KernelModel
from ..loader.script import MODULE_INIT_IGNORE_MODVERSIONS, MODULE_INIT_IGNORE_VERMAGIC
from ..module import ModuleError
from ..symbols import LOADER, SymbolIndex

# the ways a module is tried, in order: (key, finit_module() flags, the command a user types)
MODES = (("load", 0, "modprobe"),
         ("force_vermagic", MODULE_INIT_IGNORE_VERMAGIC, "modprobe --force-vermagic"),
         ("force", MODULE_INIT_IGNORE_VERMAGIC | MODULE_INIT_IGNORE_MODVERSIONS, "modprobe -f"))

# verdicts, from best to worst
VERDICTS = ("loads", "force-vermagic", "force", "rebuild")

_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
# the lines btf_module_notify() logs when a module's BTF fails (v6.1; v6.3+ with the mismatch allowed)
_BTF_REFUSED = ("failed to validate module [", "Kernel module BTF mismatch detected")


class AbiCheckError(PathError):
    """A module or the kernel of ``abi check`` cannot be read."""


class Attempt(NamedTuple):
    """One load of a module in the model: the errno (0: loaded) and the kernel's lines."""
    errno: int
    messages: list[str]
    taints: str  # the module's taint letters once loaded ("" when refused)

    @property
    def errname(self) -> str:
        return E.errorcode.get(self.errno, str(self.errno)) if self.errno else ""


class ModuleVerdict(NamedTuple):
    path: str
    name: str
    vermagic: str | None
    uses: list[str]  # the new kernel's modules its imports come from (taken as loaded first)
    attempts: dict[str, Attempt]  # by mode key (MODES)
    verdict: str  # VERDICTS
    # loaded (with its verdict's command) but its BTF refused by the new kernel's btf_parse_module():
    # no BTF for it in that kernel (BPF programs, bpftrace cannot see its types)
    btf_refused: bool = False


@dataclass
class AbiCheckRequest:
    kernel: str  # anything --kernel takes
    modules: list[str]  # module files or directories (searched for .ko files)
    vmlinuz: str | None = None  # the new kernel's image: the keys module signatures are checked against


@dataclass
class AbiCheck:
    kernel: str
    release: str
    vermagic: str | None
    modules: list[ModuleVerdict] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, problem): unreadable modules

    def count(self, verdict: str) -> int:
        return sum(m.verdict == verdict for m in self.modules)

    @property
    def btf_refused(self) -> int:
        """Modules that load (as their verdict says) without their BTF: the kernel refused it."""
        return sum(m.btf_refused for m in self.modules)

    @property
    def all_load(self) -> bool:
        return not self.problems and all(m.verdict == "loads" for m in self.modules)


def module_files(paths: list[str]) -> list[str]:
    """The module files named, a directory standing for every module under it (sorted by path)."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if f.endswith(_SUFFIXES)]
            out += sorted(found)
        elif os.path.exists(p):
            out.append(p)
        else:
            raise AbiCheckError(p, "No such file or directory")
    return out


def _attempt(kernel: Kernel, index: SymbolIndex, image: ModuleImage, flags: int) -> tuple[Attempt, list[str]]:
    model = KernelModel(kernel)
    uses = []
    for name, _weak in image.imports:
        if name in kernel.exports:
            continue
        p = LOADER.pick(index.providers(name), True)
        if p is not None and p.owner != "vmlinux" and p.owner not in uses:
            uses.append(p.owner)
    for owner in uses:
        exports = {n: (q.gpl, q.namespace, q.crc) for n, ps in index.by_name.items() for q in ps
                   if q.owner == owner}
        model.assume_loaded(owner, exports)
    call = model.load_module(image, "", 0, (), flags)
    loaded = model.find_module(image.name)
    taints = loaded.taint_letters() if loaded is not None and not call.errno else ""
    return Attempt(call.errno, list(call.messages), taints), uses


def check_modules(request: AbiCheckRequest) -> AbiCheck:
    """Every module of ``request`` tried on the new kernel (see the module docstring). Raises
    :class:`kmodsim.Error` when the kernel cannot be read; unreadable modules are ``problems``."""
    kernel = Kernel.load(request.kernel)
    if kernel.vermagic is None:
        raise AbiCheckError(request.kernel, "the kernel's vermagic is unknown (give a headers directory or a vmlinuz)")
    if request.vmlinuz:
        kernel.image_keys(request.vmlinuz)
    index = SymbolIndex.build(kernel, symvers_modules=True)
    res = AbiCheck(request.kernel, kernel.release, kernel.vermagic)
    for path in module_files(request.modules):
        try:
            image = load_image(path)
        except ModuleError as exc:
            res.problems.append((path, exc.problem))
            continue
        attempts: dict[str, Attempt] = {}
        uses: list[str] = []
        for key, flags, _cmd in MODES:
            attempts[key], uses = _attempt(kernel, index, image, flags)
        verdict = next((v for v, (k, _f, _c) in zip(VERDICTS, MODES, strict=False) if attempts[k].errno == 0),
                       "rebuild")
        used = attempts[MODES[VERDICTS.index(verdict)][0]] if verdict != "rebuild" else None
        refused = used is not None and any(line.startswith(_BTF_REFUSED) for line in used.messages)
        res.modules.append(ModuleVerdict(path, image.name, image.vermagic, uses, attempts, verdict, refused))
    return res
