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
import glob
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

from ..errors import Error, PathError
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


def read_modules(paths: list[str]) -> tuple[list[ModuleImage], list[tuple[str, str]]]:
    """The modules named (:func:`module_files`), each read once: the images, and the unreadable
    ones (path, problem) in the order met. Raises :class:`AbiCheckError` for a path that does not
    exist."""
    images, problems = [], []
    for path in module_files(paths):
        try:
            images.append(load_image(path))
        except ModuleError as exc:
            problems.append((path, exc.problem))
    return images, problems


def check_modules(request: AbiCheckRequest) -> AbiCheck:
    """Every module of ``request`` tried on the new kernel (see the module docstring). Raises
    :class:`kmodsim.Error` when the kernel cannot be read; unreadable modules are ``problems``."""
    images, problems = read_modules(request.modules)
    return check_images(request.kernel, images, problems, request.vmlinuz)


def check_images(kernel_path: str, images: list[ModuleImage], problems: Sequence[tuple[str, str]] = (),
                 vmlinuz: str | None = None, resolve: Callable[[str], str] | None = None) -> AbiCheck:
    """The modules already read (``images``; ``problems``: the unreadable ones, reported with the
    result) tried on the kernel of ``kernel_path`` (with its image ``vmlinuz``). ``resolve`` turns
    either name into a path first (:func:`kmodsim.debian.resolve_input`: a cluster task fetches
    its own kernel); a ``vmlinuz`` that resolves to a root file system stands for the one
    ``boot/vmlinuz-*`` in it. Raises :class:`kmodsim.Error` when the kernel cannot be read."""
    path = resolve(kernel_path) if resolve else kernel_path
    kernel = Kernel.load(path)
    if kernel.vermagic is None:
        raise AbiCheckError(kernel_path, "the kernel's vermagic is unknown (give a headers directory or a vmlinuz)")
    if vmlinuz:
        kernel.image_keys(_image_in(vmlinuz, resolve(vmlinuz) if resolve else vmlinuz))
    index = SymbolIndex.build(kernel, symvers_modules=True)
    res = AbiCheck(kernel_path, kernel.release, kernel.vermagic, problems=list(problems))
    for image in images:
        attempts: dict[str, Attempt] = {}
        uses: list[str] = []
        for key, flags, _cmd in MODES:
            attempts[key], uses = _attempt(kernel, index, image, flags)
        verdict = next((v for v, (k, _f, _c) in zip(VERDICTS, MODES, strict=False) if attempts[k].errno == 0),
                       "rebuild")
        used = attempts[MODES[VERDICTS.index(verdict)][0]] if verdict != "rebuild" else None
        refused = used is not None and any(line.startswith(_BTF_REFUSED) for line in used.messages)
        res.modules.append(ModuleVerdict(image.path, image.name, image.vermagic, uses, attempts, verdict, refused))
    return res


def _image_in(name: str, path: str) -> str:
    """``path`` itself, or for a root file system (an unpacked ``linux-image`` package) its one
    ``boot/vmlinuz-*``."""
    if not os.path.isdir(path):
        return path
    found = sorted(glob.glob(os.path.join(path, "boot", "vmlinuz-*")))
    if len(found) != 1:
        raise AbiCheckError(name, f"expected one boot/vmlinuz-* in it, found {len(found)}")
    return found[0]


def check_kernels(kernels: Sequence[str], modules: list[str], vmlinuz: Sequence[str] = (),
                  scheduler: str | None = None, resolve: Callable[[str], str] | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> list[AbiCheck | Error]:
    """The same modules tried on each kernel of ``kernels`` (``vmlinuz``: none, or each kernel's
    image, in the same order), in order: each kernel's :class:`AbiCheck`, or the
    :class:`kmodsim.Error` that kept it from being read (the others are still checked). The
    modules are read once, here; each kernel (fetch through ``resolve``, read, index, every
    module tried) is one task of :func:`kmodsim.cluster.map_tasks`: here, or on ``scheduler``'s
    cluster. Raises :class:`AbiCheckError` for a module path that does not exist, and
    ``ValueError`` when ``vmlinuz`` does not pair with ``kernels``."""
    from ..cluster import map_tasks

    if vmlinuz and len(vmlinuz) != len(kernels):
        raise ValueError(f"{len(vmlinuz)} --vmlinuz for {len(kernels)} --kernel: give none, or one per kernel")
    images, problems = read_modules(modules)
    task = partial(_check_one, images=images, problems=problems, resolve=resolve)
    images_of: list[str | None] = list(vmlinuz) if vmlinuz else [None] * len(kernels)
    items = list(zip(kernels, images_of, strict=True))
    return map_tasks(task, items, scheduler, None if progress is None else
                     (lambda i, n, item: progress(i, n, item[0])), label=lambda item: item[0])


def _check_one(item: tuple[str, str | None], *, images: list[ModuleImage], problems: list[tuple[str, str]],
               resolve: Callable[[str], str] | None) -> AbiCheck | Error:
    try:
        return check_images(item[0], images, problems, item[1], resolve)
    except Error as exc:
        return exc
