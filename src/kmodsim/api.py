"""kmodsim's public Python API: one function a question, keyword arguments, typed results.

Every name here is re-exported by the package (``kmodsim.read_module`` ...) and listed in
``kmodsim.__all__``; docs/api.md documents each with an example the tests run. What is stable:
the names of ``kmodsim.__all__``, their parameters, and the fields of what they return (adding
a field or a keyword parameter with a default is not a break; removing or renaming one is, and
waits for a major version). The modules below the package (``kmodsim.checks``,
``kmodsim.dependencies.graph`` ...) are the implementation: usable, documented, not promised.

Every error a function raises is a :class:`kmodsim.Error` whose ``str()`` names the file at
fault; problems with some of many inputs (a bad module in a tree) are part of the result instead,
and the rest is still answered, as the commands do.

``kernel`` parameters take what ``--kernel`` takes — a headers directory (``/lib/modules/<kver>/
build``), a Module.symvers, a vmlinux or a vmlinuz — or a :class:`Target` already loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .module import DEFAULT_MAX_SIZE
from .target import Target

if TYPE_CHECKING:
    from .abi import AbiDiff, AbiHistory
    from .abi.check import AbiCheck
    from .checks import CheckResult
    from .dependencies.graph import Depmod
    from .errors import Error
    from .link import LddResult
    from .loader.result import Run
    from .memory_layout import Footprint
    from .module import Module
    from .ops.census import Census
    from .series import SeriesResult
    from .tree import ScanResult

__all__ = ["Target", "abi_check", "abi_check_kernels", "abi_diff", "abi_history", "check", "check_series", "depmod",
           "footprint", "ldd", "load", "load_target", "ops_census", "read_module", "scan", "verify"]


def read_module(path: str, *, max_size: int = DEFAULT_MAX_SIZE) -> Module:
    """One module file (``.ko``, ``.ko.xz``, ``.ko.zst``, ``.ko.gz``) as a :class:`kmodsim.module.Module`:
    its exports, imports with the CRCs they expect, ``.modinfo``, parameters, sections, signature.
    ``max_size`` bounds the decompressed size. Raises :class:`kmodsim.module.ModuleError`."""
    from .module import read_module as _read

    return _read(path, max_size)


def load_target(kernel: str | Target) -> Target:
    """The target kernel of ``kernel`` (see the module docstring): its exports, release, vermagic,
    ``.config``, release behaviour (``Target.has``), BTF. ``Target.warnings`` says when the
    release has no verified profile and which one stands in. Raises
    :class:`kmodsim.kernel.KernelError`."""
    return kernel if isinstance(kernel, Target) else Target.load(kernel)


def scan(paths: Iterable[str], *, jobs: int | None = None, use_cache: bool = True,
         config_paths: Iterable[str] | None = None, max_size: int = DEFAULT_MAX_SIZE,
         scheduler: str | None = None) -> ScanResult:
    """Every module of ``paths`` (files, or trees as depmod finds their modules, with depmod.d from
    ``config_paths``, or ``debian:linux-image-KVER`` fetched into the cache), read in parallel and
    cached: ``.modules``, ``.summaries``, and the unreadable inputs in ``.errors`` (the others are
    still read). ``scheduler`` (``tcp://HOST:PORT`` or ``local:N``): each path read as one task on
    a dask.distributed cluster (:func:`kmodsim.tree.scan_groups`; a ``debian:`` path fetched by
    the worker), the same result; raises :class:`kmodsim.Error` when the cluster cannot be used."""
    from .debian import resolve_input
    from .tree import scan as _scan

    return _scan(paths, jobs=jobs, use_cache=use_cache, max_size=max_size, config_paths=config_paths,
                 progress=False, scheduler=scheduler, resolve=resolve_input)


def check(paths: Sequence[str], *, kernel: str | None = None, modules: str | None = None,
          allow: Sequence[str] = (), symbol_lists: Sequence[str] = (), jobs: int | None = None,
          use_cache: bool = True, config_paths: Sequence[str] | None = None,
          max_size: int = DEFAULT_MAX_SIZE, scheduler: str | None = None) -> CheckResult:
    """``kmodsim check``: modpost-class link checks of the modules of ``paths`` against ``kernel``
    (a path), with ``modules`` a tree of further providers, allowlists (TOML) and symbol lists.
    The result's ``findings`` (each with ``check``, ``severity``, ``symbol``, ``module``,
    ``path``, ``message``), ``errors``/``warnings`` counts, input ``problems`` and ``notes``.
    ``paths`` and ``modules`` may name ``debian:linux-image-KVER``; ``scheduler``: each of them
    read as one task on a cluster, as :func:`scan` (a cluster that cannot be used is a problem of
    an ``aborted`` result); the checks run here."""
    from .checks import CheckRequest, check_paths
    from .debian import resolve_input

    return check_paths(CheckRequest(paths, kernel_path=kernel, modules_dir=modules, allow_files=allow,
                                    symbol_lists=symbol_lists, jobs=jobs, use_cache=use_cache,
                                    config_paths=config_paths, max_size=max_size, scheduler=scheduler,
                                    resolve=resolve_input))


def ldd(path: str, *, kernel: str, modules: str | None = None, jobs: int | None = None,
        config_paths: list[str] | None = None, max_size: int = DEFAULT_MAX_SIZE) -> LddResult:
    """``kmodsim ldd``: how the kernel would resolve each import of the module at ``path`` (the
    provider it takes, the others, CRC, GPL and namespace verdicts) and whether the vermagic
    matches. Raises :class:`kmodsim.Error` when the module or the kernel cannot be used."""
    from .link import LddRequest
    from .link import ldd as _ldd

    return _ldd(LddRequest(path, kernel, modules_dir=modules, jobs=jobs, config_paths=config_paths,
                           max_size=max_size))


def depmod(basedir: str | None = None, kver: str | None = None, *, symvers: str | None = None,
           system_map: str | None = None, errsyms: bool = False, config_paths: list[str] | None = None,
           jobs: int | None = None, use_cache: bool = True) -> Depmod:
    """kmod's depmod on ``<basedir>/lib/modules/<kver>`` (``kver``: the running kernel's by
    default): a :class:`kmodsim.dependencies.Depmod` whose ``outputs()`` are modules.dep & co. as kmod
    writes them (:func:`kmodsim.dependencies.outputs`), with the dependency graph (``deps``,
    ``closure()``, ``edge_symbols()``, ``cycles()``). Raises :class:`kmodsim.dependencies.DepmodError`
    when the run cannot start."""
    from .dependencies import run

    return run(basedir, kver, symvers=symvers, system_map=system_map, errsyms=errsyms,
               config_paths=config_paths, jobs=jobs, use_cache=use_cache)


def load(script: str, *, kernel: str | Target, modules: str | None = None, profile: str | None = None,
         config_paths: list[str] | None = None, kmod_version: int | None = None) -> Run:
    """``kmodsim load``: replay the load script at ``script`` (insmod/rmmod/modprobe lines) on the
    model of the kernel's ``load_module()``: per step (``.steps``) the errno, the kernel's log
    lines, taints and /proc/modules with sizes (a :class:`kmodsim.loader.result.Run`;
    :func:`kmodsim.render.loader.run_json` is ``kmodsim load --json``, docs/loader.md). modprobe
    steps follow ``modules`` as the depmod and modprobe of kmod ``kmod_version`` (30, 34; default:
    the machine's) do, soft dependencies included, with ``config_paths`` as their ``-C``. Raises
    :class:`kmodsim.Error` on unusable input."""
    from .loader.run import prepare, replay

    target = load_target(kernel)
    prof, steps = prepare(target, script, modules, profile, config_paths, kmod_version)
    assert target.kernel is not None
    return replay(target.kernel, steps, prof)


def verify(script: str, *, kernel: str | Target, vmlinuz: str, modules: str | None = None,
           profile: str | None = None, config_paths: list[str] | None = None, timeout: float = 120.0,
           compare: bool = True, kmod_version: int | None = None) -> Run:
    """``kmodsim verify``: the same script on the real kernel ``vmlinuz`` under QEMU; the
    kernel's run, with (``compare``) its ``differences`` from the model. Needs
    qemu-system-x86_64, busybox-static and a C compiler (the guest helper). Raises
    :class:`kmodsim.Error`."""
    from .loader.run import prepare
    from .oracle.boot import verify as _verify

    target = load_target(kernel)
    prof, steps = prepare(target, script, modules, profile, config_paths, kmod_version)
    return _verify(target.kernel, prof, steps, vmlinuz, timeout=timeout, compare=compare)


def footprint(path: str, *, kernel: str | Target) -> Footprint:
    """``kmodsim footprint``: the memory the target kernel gives the module at ``path`` — the size
    /proc/modules shows (``.size``, ``.pages``), by memory type, the init layout, the core
    kallsyms copy. Raises :class:`kmodsim.Error` (the module, or a kernel without a release)."""
    from .memory_layout import footprint_layout, module_footprint

    return module_footprint(path, footprint_layout(load_target(kernel)))


def ops_census(struct: str, paths: Iterable[str]) -> Census:
    """``kmodsim ops``: every member of ``struct <struct>`` in the C source under ``paths``, with its
    instances, the calls through it in every idiom, NULL tests, runtime assignments and X-macro
    lists. Raises :class:`kmodsim.ops.CensusError` when no input defines the struct."""
    from .ops.census import load_inputs, run_census

    inputs, _errors, _root = load_inputs(paths)
    return run_census(struct, inputs)


def abi_diff(old: str, new: str, *, symbol_lists: Sequence[str] = (), jobs: int | None = None,
             use_cache: bool = True, config_paths: Sequence[str] | None = None,
             max_size: int = DEFAULT_MAX_SIZE, causes: bool = True, scheduler: str | None = None) -> AbiDiff:
    """``kmodsim abi diff``: the exports of ``old`` and ``new`` compared — each a path ``--kernel``
    takes (a headers directory or Module.symvers: vmlinux's and the modules' exports; a vmlinux or
    vmlinuz: vmlinux's) or a module tree / root file system. The result's ``changes`` (each an
    :class:`kmodsim.abi.AbiChange`: ``symbol``, ``change``, ``old``/``new`` exports, ``compatible``),
    ``counts()``, ``compatible``, ``notes``, and the unreadable modules of a tree in ``problems``.
    ``symbol_lists`` restrict it to the names they list. With ``causes``, each CRC change's
    ``causes`` (:class:`kmodsim.abi.causes.Cause`: ``type``, ``change``, ``path``) from both
    kernels' BTF and their summary in ``causes`` (docs/abi.md). Raises :class:`kmodsim.Error` when
    a kernel or a list cannot be read. ``scheduler`` (``tcp://HOST:PORT`` or ``local:N``): each
    kernel read as one task on a dask.distributed cluster (:mod:`kmodsim.cluster`; ``old`` and
    ``new`` may then be ``debian:linux-image-KVER`` / ``debian:linux-headers-KVER``, fetched by
    the worker), the same result."""
    from .abi import AbiDiffRequest, diff_sides
    from .debian import resolve_input

    return diff_sides(AbiDiffRequest(old, new, symbol_lists, jobs=jobs, use_cache=use_cache,
                                     config_paths=config_paths, max_size=max_size, causes=causes,
                                     scheduler=scheduler, resolve=resolve_input))


def abi_history(kernels: Sequence[str], *, symbol_lists: Sequence[str] = (), jobs: int | None = None,
                use_cache: bool = True, config_paths: Sequence[str] | None = None,
                max_size: int = DEFAULT_MAX_SIZE, causes: bool = True,
                scheduler: str | None = None) -> AbiHistory:
    """``kmodsim abi history``: ``kernels`` (oldest first, each as :func:`abi_diff` takes it) read
    once each, and every consecutive pair compared: ``kernels`` and ``steps`` (each a ``diff`` as
    :func:`abi_diff` returns it). Raises :class:`kmodsim.Error` as :func:`abi_diff` does;
    ``scheduler`` as there."""
    from .abi import AbiHistoryRequest, history
    from .debian import resolve_input

    return history(AbiHistoryRequest(kernels, symbol_lists, jobs=jobs, use_cache=use_cache,
                                     config_paths=config_paths, max_size=max_size, causes=causes,
                                     scheduler=scheduler, resolve=resolve_input))


def abi_check(modules: Sequence[str], *, kernel: str, vmlinuz: str | None = None) -> AbiCheck:
    """``kmodsim abi check``: will each module of ``modules`` (files, or directories searched for
    ``.ko*`` files), built for another kernel, load into ``kernel`` (a path ``--kernel`` takes)?
    Each is tried on the loader model of that kernel as ``modprobe``, ``modprobe --force-vermagic``
    and ``modprobe -f`` would insert it. ``vmlinuz`` is the kernel's image, beside a headers
    directory: signatures are checked against its keys and module BTF against its BTF. The result's
    ``modules`` (each a :class:`kmodsim.abi.check.ModuleVerdict`: ``name``, ``path``, ``vermagic``,
    ``uses``, ``attempts`` by mode — ``load``, ``force_vermagic``, ``force`` — each an ``Attempt``
    with ``errno``, ``errname``, ``messages``, ``taints`` —, and ``verdict``: ``loads``,
    ``force-vermagic``, ``force`` or ``rebuild``; ``btf_refused``: it loads without its BTF, which
    the kernel refused), ``count(verdict)``, ``btf_refused`` (how many), ``all_load``, and the
    unreadable modules in ``problems``. Raises :class:`kmodsim.Error` when the kernel cannot be
    read or a path does not exist."""
    from .abi.check import AbiCheckRequest, check_modules

    return check_modules(AbiCheckRequest(kernel, list(modules), vmlinuz))


def abi_check_kernels(modules: Sequence[str], *, kernels: Sequence[str], vmlinuz: Sequence[str] = (),
                      scheduler: str | None = None) -> list[AbiCheck | Error]:
    """``kmodsim abi check`` with several ``--kernel``: the same modules (read once) tried on each
    kernel of ``kernels`` (as :func:`abi_check`; ``vmlinuz``: none, or each kernel's image in the
    same order; names ``debian:linux-headers-<kver>`` / ``debian:linux-image-<kver>`` are fetched),
    in order: each kernel's :class:`kmodsim.abi.check.AbiCheck`, or the :class:`kmodsim.Error`
    that kept that kernel from being read (the others are still checked). ``scheduler``
    (``tcp://HOST:PORT`` or ``local:N``): each kernel one task on a dask.distributed cluster, the
    same results. Raises :class:`kmodsim.Error` when a module path does not exist, ``ValueError``
    when ``vmlinuz`` does not pair with ``kernels``."""
    from .abi.check import check_kernels
    from .debian import resolve_input

    return check_kernels(list(kernels), list(modules), list(vmlinuz), scheduler, resolve_input)


def check_series(src: str, *, kernel: str, revisions: str | None = None, patches: Sequence[str] = (),
           modules: Sequence[str] = (), struct: str | None = None, census: Sequence[str] = (),
           expect: Sequence[str] = (), with_modules: Sequence[str] = (), reorder: bool = False,
           make: Sequence[str] = (), script: str | None = None, verify: bool = False, vmlinuz: str | None = None,
           jobs: int | None = None, worktrees: int = 1) -> SeriesResult:
    """``kmodsim series``: every step of a patch series — ``revisions`` ("BASE..TIP" of the git tree
    ``src``) or ``patches`` (format-patch files, an mbox, a quilt directory) — applied to a scratch
    copy of ``src``, its module directories built with kbuild against ``kernel`` (a headers or
    build directory), checked and measured; ``struct``: an ops table's census at each step;
    ``expect``: metrics that must not move the other way; ``script``: a load script replayed on
    the loader model with each step's modules (``verify``: on the real kernel too, ``vmlinuz``);
    ``reorder``: an order in which every step is good; ``worktrees``: steps observed in that many
    work trees at once (the same result); ``jobs``: make's ``-j``. The result's ``steps`` (each a
    :class:`kmodsim.series.Step`: ``applied``, ``built``, ``findings``, ``new_findings``, ``modules``,
    exports moved, ``ops``, ``load``, ``flags``), ``first_bad``, ``bisectable`` and ``reorder``
    (docs/series.md). ``src`` is never modified. Raises :class:`kmodsim.Error` for an input that
    cannot be run."""
    from .series import SeriesRequest, run_series

    return run_series(SeriesRequest(src, kernel, revisions, patches, modules, jobs, struct=struct,
                                    census_paths=census, expect=expect, with_modules=with_modules,
                                    reorder=reorder, make_vars=make, script=script, verify=verify,
                                    vmlinuz=vmlinuz, worktrees=worktrees))
