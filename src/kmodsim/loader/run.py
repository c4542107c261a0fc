"""Replaying a script on the model (``kmodsim load``) into a :class:`kmodsim.loader.result.Run`,
and the step-by-step comparison with the real kernel's run (``kmodsim verify --compare``). The
text transcript is :mod:`kmodsim.render.loader`'s."""

from __future__ import annotations

import errno as E
import os

from ..errors import Error
from ..kernel import Kernel
from ..target import Target
from .image import load_image
from .model import KernelModel
from .profiles import PROFILES, Profile, profile_of
from .result import Call, Formed, ModuleState, Run, StepResult, errname
from .script import Step, modprobe_of, read_script, resolve

SIZES_NOTE = "module sizes come from the footprint model (kmodsim.memory_layout, profile {fp})"


def modprobe_tree(root: str, config_paths: list[str] | None = None, jobs: int | None = None,
                  use_cache: bool = True, kmod=None):
    """depmod's model of the tree ``root`` (a lib/modules/<kver> directory or a root holding one):
    the modules depmod takes (:mod:`kmodsim.discovery`, with depmod.d from ``config_paths``) and
    the dependencies it writes into modules.dep (:func:`kmodsim.dependencies.compute`), which modprobe
    steps follow (``kmod``: the :class:`kmodsim.dependencies.KmodVersion` whose depmod; None: the
    machine's). Raises ValueError (several kernel versions) or :class:`kmodsim.dependencies.DepmodError`."""
    from ..dependencies import compute, load_records, plan
    from ..tree import module_root

    dirname = module_root(root)
    dirname = dirname.rstrip("/") or "/"
    pl = plan(kver=os.path.basename(dirname), dirname=dirname, config_paths=config_paths, stat=use_cache, kmod=kmod)
    return compute(pl, load_records(pl, jobs, use_cache))


class LoadInputError(Error):
    """An input of a run that cannot be used (a kernel without a vermagic, an unknown profile, a
    tree of several kernel versions); ``str()`` names it."""


def prepare(target: Target, script: str, modules_dir: str | None = None, profile_name: str | None = None,
            config_paths: list[str] | None = None, kmod_version: int | None = None) -> tuple[Profile, list[Step]]:
    """The profile and the resolved steps of a run of ``script`` on ``target``: the named profile
    (``6.1``, ``6.12``), else the target's (:func:`kmodsim.loader.profiles.profile_of`; an
    unverified release is one of ``target.warnings``); modprobe steps resolved against the depmod
    model of ``modules_dir``. Raises :class:`kmodsim.Error` (:class:`LoadInputError`,
    :class:`kmodsim.loader.script.ScriptError`, :class:`kmodsim.dependencies.DepmodError`).
    ``config_paths`` (``-C``) are read as depmod.d by depmod and as modprobe.d by modprobe, as
    ``depmod -C`` and ``modprobe -C`` read them, by the depmod and modprobe of kmod ``kmod_version``
    (30, 34; None: the machine's, :func:`kmodsim.dependencies.kmod_version`)."""
    from ..dependencies import kmod_version as behaviours

    kernel = target.kernel
    if kernel is None or kernel.vermagic is None:
        raise LoadInputError(f"{kernel.source if kernel else target.release}: the kernel's vermagic is unknown "
                             f"(give a headers directory or a vmlinuz)")
    if profile_name is not None and profile_name not in PROFILES:
        raise LoadInputError(f"--profile {profile_name}: unknown (known: {', '.join(PROFILES)})")
    profile = PROFILES[profile_name] if profile_name else profile_of(target)
    steps = read_script(script)
    tree = None
    try:
        if modules_dir:  # which kmod matters only to modprobe steps
            kmod = behaviours(kmod_version)
            tree = modprobe_of(modprobe_tree(modules_dir, config_paths, kmod=kmod), config_paths, kmod)
    except ValueError as exc:
        raise LoadInputError(str(exc)) from None
    resolve(steps, script, tree)
    return profile, steps


def step_result(step: Step, calls: list[Call], messages: list[str], modules: list[ModuleState],
                tainted: int | None, formed: list[Formed] | None = None) -> StepResult:
    """One step of a run. ``formed``: the modules that reached do_init_module() in the step, with
    their core and init sizes in bytes (None where not observed: a kernel run without the probe).
    The step's errno is its last call's, unless that call's error was ignored (a softdep's)."""
    err = calls[-1].errno if calls and not calls[-1].ignored else 0
    return StepResult(step.cmd, step.line, err, messages, calls, step.init if step.init_given else None,
                      list(step.init_log), modules, tainted, formed)


def replay(kernel: Kernel, steps: list[Step], profile: Profile | None = None,
           model: KernelModel | None = None) -> Run:
    """Run resolved steps on a fresh model."""
    model = model or KernelModel(kernel, profile)
    out = []
    for step in steps:
        calls: list[Call] = []
        messages: list[str] = []
        model.formed = []
        if step.op == "rmmod":
            c = model.delete_module(step.plan[0][0])
            calls.append(Call(c.module, c.errno))
            messages += c.messages
        elif step.op == "insmod":
            c = model.load_module(load_image(step.plan[0][1]), step.args, step.init, step.init_log, step.flags)
            calls.append(Call(c.module, c.errno))
            messages += c.messages
        else:
            calls, messages = modprobe_step(model, step)
        out.append(step_result(step, calls, messages, model.proc_modules(), model.tainted, model.formed))
    weak = [f"line {s.line}: modprobe {s.target}: weak dependencies {' '.join(s.weakdeps)} not loaded (modprobe "
            f"never inserts a weakdep; kmod 33+ lists them for initramfs tools)" for s in steps if s.weakdeps]
    return run_of("model", kernel, model.profile, out, model.proc_modules(), model.tainted, weak + forced_notes(steps))


def forced_notes(steps: list[Step]) -> list[str]:
    """What a forced step of a compressed module does differently with kmod itself: libkmod's
    kmod_module_insert_module() passes the force flags to finit_module() for a plain file (kmod 30:
    kmod_file_get_direct()) or, from kmod 31, a file in the compression the kernel decompresses
    (do_finit_module(), MODULE_INIT_COMPRESSED_FILE); otherwise it strips a copy
    (kmod_elf_strip_section("__versions"), kmod_elf_strip_vermagic(); kmod 34: kmod_elf_strip())
    and calls init_module() without flags, so the kernel checks the signature of bytes that changed.
    The model and ``verify`` take finit_module()'s path."""
    from ..module import compression_of

    def compressed(path: str) -> bool:
        try:
            with open(path, "rb") as f:
                return bool(compression_of(f.read(8)))
        except OSError:
            return False

    out = []
    for s in steps:
        packed = [name for name, path in s.plan if path and compressed(path)] if s.flags and s.op != "rmmod" else []
        if packed:
            out.append(f"line {s.line}: {s.cmd}: {', '.join(packed)} compressed: taken as finit_module() with "
                       f"the force flags (kmod 31+ when the kernel decompresses that format); kmod 30 strips "
                       f"a copy and calls init_module() instead, which is not modelled")
    return out


def modprobe_step(model: KernelModel, step: Step) -> tuple[list[Call], list[str]]:
    """A modprobe step on the model, as libkmod's kmod_module_probe_insert_module() inserts its
    probe list: the requested module already in the kernel -> nothing done (one skipped call);
    each module of the list already loaded, or builtin -> passed over (a skipped call); a module
    without a file (a modprobe.d alias to a module the tree lacks) -> kmod_module_insert_module()'s
    -ENOENT, no system call; the error of a module that is not required (a softdep) -> ignored
    (``ignored`` on its call), a required one's ends the step. Options, the script's init= result
    and its ``#>`` lines go to the requested module."""
    calls: list[Call] = []
    messages: list[str] = []
    if model.find_module(step.module) is not None:
        return [Call(step.module, 0, skipped=True)], messages
    for i, (name, path) in enumerate(step.plan):
        if step.plan_builtin[i] or model.find_module(name) is not None:  # module_is_inkernel()
            calls.append(Call(name, 0, skipped=True))
            continue
        requested = step.plan_requested[i]
        if not path:
            call = Call(name, E.ENOENT)
        else:
            c = model.load_module(load_image(path), step.plan_args[i], step.init if requested else 0,
                                  step.init_log if requested else (), step.flags)
            call = Call(c.module, c.errno)
            messages += c.messages
        if call.errno and not step.plan_required[i]:
            calls.append(call._replace(ignored=True))
            continue
        calls.append(call)
        if call.errno:
            break
    return calls, messages


def run_of(source: str, kernel: Kernel, profile: Profile, steps: list[StepResult], modules: list[ModuleState],
           tainted: int | None, notes: list[str] | None = None, boot_seconds: float | None = None) -> Run:
    """A run on ``source`` (``model``, ``kernel``) with its notes: the model's say where the
    sizes, and the init results and log lines the script gave, come from."""
    notes = list(notes or [])
    if source == "model":
        notes.append(SIZES_NOTE.format(fp=profile.footprint))
        given = [s.line for s in steps if s.init is not None]
        if given:
            notes.append("init results taken from the script (# init=...) on line(s) "
                         + ", ".join(map(str, given)))
        logged = [s.line for s in steps if s.init_log]
        if logged:
            notes.append("init log lines taken from the script (#> ...) on line(s) " + ", ".join(map(str, logged)))
        if not profile.verified:
            notes.append(f"profile {profile.series} is not verified on the real kernel")
    return Run(source, kernel.release, kernel.vermagic, profile.series, profile.verified, notes, steps, tainted,
               modules, boot_seconds)


MODULE_KEYS = ("name", "refcnt", "users", "state", "taints")


def compare(model: Run, real: Run) -> list[str]:
    """Every difference, step by step: errno, each message line, the module state after the step
    (name, refcnt, users, state, taints; size where the model has one), the modules that reached
    do_init_module() with their core and init sizes (where the kernel run observed them: the
    oracle's kprobe) and the taint mask."""
    diffs: list[str] = []
    ms, rs = model.steps, real.steps
    if len(ms) != len(rs):
        diffs.append(f"step count: model {len(ms)}, kernel {len(rs)}")
    for m, r in zip(ms, rs, strict=False):
        where = f"line {m.line} ({m.cmd})"
        if m.errno != r.errno:
            diffs.append(f"{where}: errno: model {m.errname or 0}, kernel {r.errname or 0}")
        if [c.module for c in m.calls] != [c.module for c in r.calls] or \
                [c.errno for c in m.calls] != [c.errno for c in r.calls]:
            diffs.append(f"{where}: calls: model {_calls(m.calls)}, kernel {_calls(r.calls)}")
        for i in range(max(len(m.messages), len(r.messages))):
            a = m.messages[i] if i < len(m.messages) else None
            b = r.messages[i] if i < len(r.messages) else None
            if a != b:
                diffs.append(f"{where}: message {i + 1}: model {a!r}, kernel {b!r}")
        diffs += _module_diffs(where, m.modules, r.modules)
        diffs += _formed_diffs(where, m.formed, r.formed)
        if m.tainted != r.tainted:
            diffs.append(f"{where}: tainted: model {m.tainted}, kernel {r.tainted}")
    return diffs


def _calls(calls: list[Call]) -> str:
    """``kms_b ENOENT, kms_a skipped``: the calls of a step, for a difference line."""
    return ", ".join(f"{c.module} {'skipped' if c.skipped else errname(c.errno) or 0}" for c in calls) or "none"


def _formed_diffs(where: str, mf: list[Formed] | None, rf: list[Formed] | None) -> list[str]:
    if mf is None or rf is None:  # not observed (a kernel run without the probe)
        return []
    if [x.name for x in mf] != [x.name for x in rf]:
        return [f"{where}: formed: model {[x.name for x in mf]}, kernel {[x.name for x in rf]}"]
    out = []
    for a, b in zip(mf, rf, strict=True):
        for k in ("core", "init"):
            if getattr(a, k) is not None and getattr(a, k) != getattr(b, k):
                out.append(f"{where}: formed {a.name} {k} size: model {getattr(a, k)}, kernel {getattr(b, k)}")
    return out


def _module_diffs(where: str, mm: list[ModuleState], rm: list[ModuleState]) -> list[str]:
    out = []
    if [x.name for x in mm] != [x.name for x in rm]:
        out.append(f"{where}: modules: model {[x.name for x in mm]}, kernel {[x.name for x in rm]}")
        return out
    for a, b in zip(mm, rm, strict=True):
        for k in MODULE_KEYS + (("size",) if a.size is not None else ()):
            if getattr(a, k) != getattr(b, k):
                out.append(f"{where}: module {a.name} {k}: model {getattr(a, k)!r}, kernel {getattr(b, k)!r}")
    return out
