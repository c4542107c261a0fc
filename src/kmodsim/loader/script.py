"""Load scripts: one command a line.

    insmod [-f] PATH [param=value ...]   # PATH relative to the current directory
    rmmod NAME
    modprobe [OPTION...] NAME [param=value ...]   # the module and its dependencies from --modules TREE
    # a comment

The options force a load as kmod's tools do (tools/modprobe.c, tools/insmod.c of kmod 30 and 34):
``modprobe --force-vermagic`` (KMOD_PROBE_FORCE_VERMAGIC), ``modprobe --force-modversion``
(KMOD_PROBE_FORCE_MODVERSION), ``modprobe -f``/``--force`` and ``insmod -f``/``--force`` (both).
libkmod's ``kmod_module_insert_module()`` turns them into the finit_module() flags
MODULE_INIT_IGNORE_VERMAGIC and MODULE_INIT_IGNORE_MODVERSIONS (include/uapi/linux/module.h), for
every module modprobe inserts for the step. Options go before the module.

The parameters are passed to the kernel as written (the rest of the line, spaces collapsed), as
``insmod`` does. A module's own init result depends on its code and hardware, not on the loader:
a step may state it in its comment, ``insmod x.ko  # init=-19`` (or ``init=-ENODEV``); without it
the init is taken to succeed (return 0). The lines the init itself logs are given the same way, one
``#> <line>`` comment line each, right after the step. Positive init results (the kernel warns and dumps a stack)
are refused.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field

from ..errors import Error

# include/uapi/linux/module.h: flags for sys_finit_module
MODULE_INIT_IGNORE_MODVERSIONS = 1
MODULE_INIT_IGNORE_VERMAGIC = 2

# the options of kmod's modprobe and insmod that force a load -> finit_module() flags
# (tools/modprobe.c: -f sets both, --force-vermagic / --force-modversion one each; tools/insmod.c: -f both)
FORCE_OPTIONS = {
    "modprobe": {"-f": MODULE_INIT_IGNORE_VERMAGIC | MODULE_INIT_IGNORE_MODVERSIONS,
                 "--force": MODULE_INIT_IGNORE_VERMAGIC | MODULE_INIT_IGNORE_MODVERSIONS,
                 "--force-vermagic": MODULE_INIT_IGNORE_VERMAGIC,
                 "--force-modversion": MODULE_INIT_IGNORE_MODVERSIONS},
    "insmod": {"-f": MODULE_INIT_IGNORE_VERMAGIC | MODULE_INIT_IGNORE_MODVERSIONS,
               "--force": MODULE_INIT_IGNORE_VERMAGIC | MODULE_INIT_IGNORE_MODVERSIONS},
}


class ScriptError(Error):
    """``str()`` is ``<file>:<line>: <problem>``."""


@dataclass
class Step:
    line: int
    cmd: str  # the command as written (without comment)
    op: str  # insmod, rmmod, modprobe
    target: str  # path (insmod), name (rmmod, modprobe)
    args: str = ""
    init: int = 0  # the module's init result (the target's, for modprobe)
    init_given: bool = False
    init_log: list[str] = field(default_factory=list)  # the init's own kernel lines ("#> " lines)
    # finit_module() flags from the step's force options (MODULE_INIT_IGNORE_*); 0: none
    flags: int = 0
    # filled by resolve(): [(module name, path)] to load in order (deps first), or [(name, "")] for rmmod
    # (modprobe: kmod's probe list, see kmodsim.loader.modprobe; path "" for a module not in the tree)
    plan: list[tuple[str, str]] = field(default_factory=list)
    # modprobe only, one item per plan entry: the options it is inserted with, whether its error
    # stops modprobe (the module and its modules.dep dependencies; not softdeps), whether it is the
    # requested module, whether it is builtin; and the weak dependencies modprobe does not load (kmod 33+)
    plan_args: list[str] = field(default_factory=list)
    plan_required: list[bool] = field(default_factory=list)
    plan_requested: list[bool] = field(default_factory=list)
    plan_builtin: list[bool] = field(default_factory=list)  # in modules.builtin: passed over
    weakdeps: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        """The module an rmmod or modprobe step names, as the kernel and kmod compare names
        (``-`` is ``_``)."""
        return self.target.replace("-", "_")


_INIT = re.compile(r"\binit=(-?\d+|-?E[A-Z0-9]+)\b")


def _init_value(text: str) -> int:
    neg = text.startswith("-")
    t = text.lstrip("-")
    if t.isdigit():
        v = int(t)
    else:
        named = getattr(errno, t, None)
        if not isinstance(named, int):
            raise ValueError(f"unknown errno name {t}")
        v = named
    return -v if neg else v


def parse_script(text: str, path: str = "<script>") -> list[Step]:
    steps: list[Step] = []
    log_ok = False  # a "#> line" may follow an insmod/modprobe step or another "#>" line
    for no, raw in enumerate(text.splitlines(), 1):
        where = f"{path}:{no}"
        lm = re.match(r"\s*#>\s?(.*)$", raw)
        if lm:
            if not log_ok:
                raise ScriptError(f"{where}: a '#>' line (the init's own kernel line) must follow an insmod "
                                  f"or modprobe line")
            steps[-1].init_log.append(lm.group(1).rstrip())
            continue
        log_ok = False
        body, comment = raw, ""
        m = re.search(r"(^|\s)#", raw)
        if m:
            body, comment = raw[:m.start()], raw[m.end():]
        words = body.split()
        if not words:
            if _INIT.search(comment):
                raise ScriptError(f"{where}: init= belongs on an insmod or modprobe line")
            continue
        op = words[0]
        if op not in ("insmod", "rmmod", "modprobe"):
            raise ScriptError(f"{where}: unknown command {op!r} (expected insmod, rmmod or modprobe)")
        flags, k = 0, 1
        while k < len(words) and words[k].startswith("-"):
            known = FORCE_OPTIONS.get(op, {})
            if words[k] not in known:
                expected = f" (known: {', '.join(known)})" if known else ""
                raise ScriptError(f"{where}: {op}: unknown option {words[k]!r}{expected}")
            flags |= known[words[k]]
            k += 1
        if len(words) <= k:
            raise ScriptError(f"{where}: {op} needs a {'path' if op == 'insmod' else 'module name'}")
        if op == "rmmod" and len(words) > 2:
            raise ScriptError(f"{where}: rmmod takes one module name")
        step = Step(no, " ".join(words), op, words[k], " ".join(words[k + 1:]), flags=flags)
        im = _INIT.search(comment)
        if im:
            if op == "rmmod":
                raise ScriptError(f"{where}: init= applies to insmod and modprobe only")
            try:
                step.init = _init_value(im.group(1))
            except ValueError as exc:
                raise ScriptError(f"{where}: {exc}") from None
            if step.init > 0:
                raise ScriptError(f"{where}: init={step.init}: a positive init result makes the kernel "
                                  f"warn and dump a stack, which is not modelled; use 0 or -errno")
            step.init_given = True
        steps.append(step)
        log_ok = op != "rmmod"
    return steps


def read_script(path: str) -> list[Step]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ScriptError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ScriptError(f"{path}: not a UTF-8 text file") from None
    return parse_script(text, path)


def resolve(steps: list[Step], path: str, tree=None, base: str = ".") -> None:
    """Fill every step's plan: module files read, modprobe's probe lists found (``tree``: a
    :class:`kmodsim.loader.modprobe.Modprobe`, or depmod's model of the --modules tree, a
    :class:`kmodsim.dependencies.Depmod` — see :func:`kmodsim.loader.run.modprobe_tree` — read with
    the kmod version's default modprobe.d directories). Raises ScriptError naming the line."""
    from ..module import ModuleError
    from .image import load_image
    from .modprobe import Modprobe

    if tree is not None and not isinstance(tree, Modprobe):
        tree = modprobe_of(tree)

    for s in steps:
        where = f"{path}:{s.line}"
        if s.op == "rmmod":
            s.plan = [(s.module, "")]
        elif s.op == "insmod":
            p = os.path.join(base, s.target)
            try:
                img = load_image(p)
            except ModuleError as exc:
                raise ScriptError(f"{where}: {s.target}: {exc.problem}") from None
            s.plan = [(img.name, p)]
        else:
            if tree is None:
                raise ScriptError(f"{where}: modprobe needs --modules TREE")
            entries = probe_list(tree, s.module, s.args, where)
            s.plan = [(e.name, e.path) for e in entries]
            s.plan_args = [e.args for e in entries]
            s.plan_required = [e.required for e in entries]
            s.plan_requested = [e.requested for e in entries]
            s.plan_builtin = [e.builtin for e in entries]
            s.weakdeps = tree.weakdeps(s.module)


def modprobe_of(dm, config_paths: list[str] | None = None, kmod=None):
    """kmod's modprobe over depmod's model ``dm`` with the modprobe.d files ``config_paths`` (None:
    the defaults of ``kmod``, a :class:`kmodsim.dependencies.KmodVersion`; None: the machine's)."""
    from ..dependencies import kmod_version
    from .modprobe import Modprobe, load_config

    kmod = kmod or kmod_version()
    return Modprobe(dm, load_config(dm, config_paths, kmod))


def probe_list(mp, name: str, args: str, where: str):
    """What kmod's modprobe inserts for module ``name`` (``mp``: a
    :class:`kmodsim.loader.modprobe.Modprobe`), as :class:`kmodsim.loader.modprobe.Entry` items:
    kmod_module_probe_insert_module()'s list — modules.dep's dependencies deepest first
    (kmod_module_parse_depline() prepends each module of the line, which depmod sorted users before
    what they use), each with its soft dependencies around it, then the module with its own (see
    :mod:`kmodsim.loader.modprobe`). ``args``: the command line's options, the module's own."""
    from .modprobe import ProbeError

    dm = mp.dm
    i = dm.index_of(name)
    if (i is None or dm.mods[i].name != name) and name not in mp.builtin()[0]:
        raise ScriptError(f"{where}: module {name} not found in --modules")
    if dm.dep_sort is None:  # depmod writes no modules.dep at all for a tree with a cycle
        cyc = [dm.mods[k].name for k in (dm.cycles(1) or [[i if i is not None else 0]])[0]]
        raise ScriptError(f"{where}: dependency loop: {' -> '.join(cyc + cyc[:1])} (depmod writes no "
                          f"modules.dep for this tree)")
    bad = dict(dm.errors)
    try:
        entries = mp.probe_list(name, args)
    except ProbeError as exc:
        raise ScriptError(f"{where}: {exc}") from None
    for e in entries:
        if e.path in bad:
            raise ScriptError(f"{where}: {e.path}: {bad[e.path]}")
    return entries
