"""One side of an ABI comparison: every export a kernel, or a kernel with its module tree, provides.

A side is read from anything ``--kernel`` takes (:meth:`kmodsim.kernel.Kernel.load`):

* a headers/build directory or a Module.symvers: vmlinux's rows *and* the module rows (the
  exports of every module of that build, the ones Debian's ABI check compares too);
* a vmlinux or a vmlinuz: vmlinux's own exports only;

or from a module tree (``/lib/modules/<kver>``) or a root file system holding one
(``lib/modules/<kver>``): the modules as depmod finds them (:func:`kmodsim.tree.scan`, the one
scan and its cache), and vmlinux's exports from the kernel beside them — the image
``<root>/boot/vmlinuz-<kver>`` (``vmlinux-<kver>`` where the distribution ships an ELF), else
the tree's ``build/Module.symvers`` (the headers package's link; its module rows are not used:
the tree's modules are).

Every exporter of every name goes into the one symbol index (:class:`kmodsim.symbols.SymbolIndex`,
vmlinux first, then the modules in depmod's order); the export a name stands for is the one
:data:`kmodsim.symbols.LOADER` picks — the exporter the kernel's ``find_symbol()`` finds first.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import PathError
from ..kernel import Kernel
from ..module import DEFAULT_MAX_SIZE
from ..symbols import LOADER, SymbolIndex


class AbiError(PathError):
    """A side of a comparison cannot be read; ``str()`` names the file and the problem."""


class AbiExport(NamedTuple):
    """One exported name as a module built against it sees it."""

    crc: int | None  # None: the kernel has no CRC for it (no CONFIG_MODVERSIONS)
    owner: str  # "vmlinux" or the exporting module's name
    gpl: bool  # EXPORT_SYMBOL_GPL
    namespace: str  # "" when none


class AbiSide(NamedTuple):
    """What one kernel (with or without its modules) exports."""

    path: str  # as given
    release: str  # "" when unknown (a bare Module.symvers)
    kind: str  # "kernel" (what --kernel takes) or "tree" (a module tree or root file system)
    exports: dict[str, AbiExport]  # by name
    modules: bool  # module exports are known (Module.symvers module rows, or the tree's modules)
    kernel_source: str  # the file vmlinux's exports were read from
    problems: list[tuple[str, str]]  # (path, problem): modules of a tree that could not be read
    ignored: list[str]  # .ko.gz files of a tree, which depmod passes over
    shared: int  # names with more than one exporter (the first the loader finds owns each)
    image: str = ""  # the vmlinux or vmlinuz vmlinux's exports were read from ("": a Module.symvers)
    module_files: dict[str, str] = {}  # a tree's exporting modules: owner -> the file the loader takes


def is_tree(path: str) -> bool:
    """A directory that is not a headers/build directory (which holds a Module.symvers)."""
    return os.path.isdir(path) and not os.path.isfile(os.path.join(path, "Module.symvers"))


def _exports(index: SymbolIndex) -> tuple[dict[str, AbiExport], int, dict[str, str]]:
    """One export a name (the one the loader finds first), the names with several exporters, and
    the file of each exporting module (owner -> path; the first of a name)."""
    out: dict[str, AbiExport] = {}
    files: dict[str, str] = {}
    shared = 0
    for name, providers in index.by_name.items():
        p = LOADER.pick(providers)
        assert p is not None
        out[name] = AbiExport(p.crc, p.owner, p.gpl, p.namespace)
        if p.owner != "vmlinux" and p.path:
            files.setdefault(p.owner, p.path)
        shared += len(providers) > 1
    return out, shared, dict(sorted(files.items()))


def _image(kernel: Kernel) -> str:
    """The kernel image a :class:`Kernel` was read from: a vmlinux or vmlinuz ("" for headers or
    a Module.symvers, which have no machine), as :meth:`kmodsim.target.Target.of` tells them apart."""
    return kernel.source if kernel.machine is not None and not os.path.isdir(kernel.source) else ""


def tree_kernel(modroot: str) -> Kernel:
    """vmlinux beside the module tree ``modroot`` (``.../lib/modules/<kver>``): the image in the root
    file system's ``boot/``, else the tree's ``build/Module.symvers`` (vmlinux's rows only)."""
    kver = os.path.basename(os.path.normpath(modroot))
    parent = os.path.dirname(os.path.normpath(modroot))
    looked = []
    if os.path.basename(parent) == "modules" and os.path.basename(os.path.dirname(parent)) == "lib":
        root = os.path.dirname(os.path.dirname(parent))
        for name in (f"vmlinuz-{kver}", f"vmlinux-{kver}"):
            image = os.path.join(root, "boot", name)
            looked.append(image)
            if os.path.isfile(image) and os.access(image, os.R_OK):
                return Kernel.load(image)
    build = os.path.join(modroot, "build")
    looked.append(os.path.join(build, "Module.symvers"))
    if os.path.isfile(looked[-1]):
        k = Kernel.from_headers(build)
        k.module_rows = []  # the tree's own modules stand for them
        return k
    raise AbiError(modroot, f"no kernel beside the modules (looked for {', '.join(looked)}): "
                            f"vmlinux's exports are unknown")


def load_side(path: str, *, jobs: int | None = None, use_cache: bool = True,
              config_paths: Iterable[str] | None = None, max_size: int = DEFAULT_MAX_SIZE) -> AbiSide:
    """The exports of ``path`` (see the module docstring). Raises :class:`AbiError` or
    :class:`kmodsim.kernel.KernelError` when the kernel cannot be read; unreadable modules of a
    tree are the side's ``problems`` (the others still count)."""
    if not is_tree(path):
        kernel = Kernel.load(path)
        exports, shared, _files = _exports(SymbolIndex.build(kernel, symvers_modules=True))
        return AbiSide(path, kernel.release, "kernel", exports, bool(kernel.module_rows), kernel.source, [], [],
                       shared, _image(kernel))

    from ..tree import module_root, scan

    try:
        modroot = module_root(path)
    except ValueError as exc:  # "<path>/lib/modules: holds several kernel versions (...)"
        where, _, problem = str(exc).partition(": ")
        raise AbiError(where, problem) from None
    kernel = tree_kernel(modroot)  # first: a tree without its kernel is not worth a scan
    res = scan([modroot], jobs=jobs, use_cache=use_cache, config_paths=config_paths, max_size=max_size)
    problems = [(e.path, e.problem) for e in res.errors]
    exports, shared, files = _exports(SymbolIndex.build(kernel, res.modules))
    release = kernel.release or os.path.basename(os.path.normpath(modroot))
    return AbiSide(path, release, "tree", exports, True, kernel.source, problems, list(res.ignored), shared,
                   _image(kernel), files)
