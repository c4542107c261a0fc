"""Each step of a series, applied, built, checked and measured (``kmodsim series``).

The series is applied in a scratch tree — a ``git clone --shared`` of DIR for a git range (each
step checked out in turn), a copy of DIR's files for patches (each step applied with
``git apply``) — never in DIR itself. The module directories are built in that one tree with
kbuild (:func:`kmodsim.kbuild.make_modules`), from step to step, so kbuild recompiles only the
objects a step changed; the modules each build made (its ``modules.order``) are read once each
(:func:`kmodsim.memory_layout.read_input`: the module model and its layout input), checked
together against the target (:func:`kmodsim.checks.run_checks`, what ``kmodsim check`` runs) and
measured (:func:`kmodsim.memory_layout.layout` with the target's layout, what ``kmodsim
footprint`` shows). Each step is compared with the last step that built: new and fixed findings,
exports added, removed or moved between modules, each module's size delta.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

from ..errors import PathError
from .patches import Patch, PatchError, read_mbox, read_series

if TYPE_CHECKING:
    from ..checks import Finding
    from ..kernel import Kernel
    from ..memory_layout import Layout
    from ..module import Module
    from ..target import Target
    from .reorder import Reorder


class SeriesError(PathError):
    """A series that cannot be run (a bad DIR, range, kernel or --modules); names the input."""


class SeriesRequest(NamedTuple):
    """``kmodsim series``'s inputs: DIR, the target (a headers or build directory: the modules are
    built against it), the series (``revisions`` "BASE..TIP" of DIR, or ``patches``: files and
    directories in order), the module directories (relative to DIR; default: the ones the series
    touches that hold a Kbuild or Makefile), make's ``-j``."""

    src: str
    kernel_path: str
    revisions: str | None = None
    patches: Sequence[str] = ()
    modules: Sequence[str] = ()
    jobs: int | None = None
    progress: bool | None = False  # a progress bar on a terminal (None: when stderr is one)
    struct: str | None = None  # an ops table to take the census of at each step (kmodsim ops)
    census_paths: Sequence[str] = ()  # where (relative to DIR; default: the module directories)
    expect: Sequence[str] = ()  # "calls=down", ...: a metric that moves the other way flags the step
    with_modules: Sequence[str] = ()  # modules of the target the series' modules use, checked with them
    reorder: bool = False  # search an order in which every step is good (kmodsim.series.reorder)


class Applied(NamedTuple):
    """Whether a step applied. ``ok`` None: nothing to apply (the base; a commit, checked out)."""

    ok: bool | None
    errors: list[str]  # git apply's error lines (the failed hunks as "file:line")
    offsets: list[str]  # hunks applied at another line: "file: hunk #N at L (offset K lines)"
    fuzz: bool = False  # did not apply, but does with one line of context (git apply -C1: patch's fuzz)


class Built(NamedTuple):
    """Whether a step built. ``ok`` None: not built (the step did not apply)."""

    ok: bool | None
    errors: list[str]  # the first compiler / modpost error lines, paths relative to DIR
    compiled: list[str]  # the objects kbuild compiled (or tried to), relative to DIR, sorted
    linked: list[str]  # the modules kbuild linked, relative to DIR, sorted
    seconds: float  # wall time of the make runs (not part of a reproducible report)
    cpu_seconds: float = 0.0  # their CPU time, user + system, make and all it ran


class ModuleState(NamedTuple):
    """One module a step built."""

    name: str
    path: str  # relative to DIR
    size: int  # /proc/modules' size after init (kmodsim.memory_layout.layout)
    pages: int
    exports: tuple[str, ...]  # sorted
    size_delta: int | None  # against the last step that built; None: the module is new


class Moved(NamedTuple):
    symbol: str
    source: tuple[str, ...]  # the modules that exported it before
    dest: tuple[str, ...]  # the modules that export it now


class OpsCounts(NamedTuple):
    """The census of an ops table in a step's source (:func:`kmodsim.ops.census.run_census`, what
    ``kmodsim ops --struct NAME`` reports), counted."""

    members: int  # function-pointer members
    calls: int  # calls through the table (indirect: p->m(), x.m(), INDIRECT_CALL_n)
    static_calls: int  # calls already made static (static_call(), static_call_cond() ...)
    null_tests: int  # tests of a member against NULL
    assignments: int  # runtime stores of a member, and whole-table copies

    def minus(self, other: OpsCounts) -> OpsCounts:
        return OpsCounts(*(a - b for a, b in zip(self, other, strict=True)))


class Step(NamedTuple):
    """One row of the report; step 0 is the base the series applies to."""

    number: int  # 0: the base
    name: str
    commit: str | None  # the commit (a git range), else None
    applied: Applied
    built: Built
    findings: list[Finding] | None  # every finding of the step's modules (None: not checked)
    new_findings: list[Finding]  # not found at the last step that built
    fixed_findings: list[Finding]  # found there, gone now
    modules: list[ModuleState]
    removed_modules: list[str]  # built at the last step that built, not now
    exports_added: list[tuple[str, str]]  # (symbol, module)
    exports_removed: list[tuple[str, str]]
    exports_moved: list[Moved]
    ops: OpsCounts | None = None  # with a struct: the census of this step's source (None: not taken)
    ops_delta: OpsCounts | None = None  # against the last step with a census
    wrong_way: list[tuple[str, int]] = []  # (metric, change) of the expected metrics that moved the other way

    @property
    def flags(self) -> list[str]:
        out = []
        if self.applied.ok is False:
            out.append("does-not-apply")
        if self.built.ok is False:
            out.append("does-not-build")
        if self.number and any(f.severity == "error" for f in self.new_findings):
            out.append("new-link-errors")
        if self.wrong_way:
            out.append("wrong-way")
        return out

    @property
    def linked(self) -> bool | None:
        """No new error finding (None: not checked); for the base, no error finding at all (not a
        flag: the series starts there)."""
        if self.findings is None:
            return None
        return not any(f.severity == "error" for f in (self.new_findings if self.number else self.findings))


class SeriesResult(NamedTuple):
    release: str  # the target's
    layout: str  # the footprint layout (kmodsim.memory_layout.Layout.name)
    module_dirs: list[str]  # relative to DIR, "." for DIR itself
    steps: list[Step]  # steps[0]: the base
    notes: list[str] = []  # what the user must know of the answer (an unverified target release)
    struct: str | None = None  # the ops table counted at each step (Step.ops)
    expect: dict[str, str] = {}  # metric -> "down" | "up" (--expect)
    reorder: Reorder | None = None  # with --reorder: the order found, or why none exists

    @property
    def first_bad(self) -> Step | None:
        return next((s for s in self.steps if s.flags), None)

    @property
    def bisectable(self) -> bool:
        return self.first_bad is None


# ---------------------------------------------------------------------------------------------
# git
# ---------------------------------------------------------------------------------------------

def _git(cwd: str, *args: str, stdin: str | None = None, check: bool = True,
         index: str | None = None) -> subprocess.CompletedProcess[str]:
    """git in ``cwd`` (C locale, no system config); ``index``: the index file it uses instead of the repository's."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    if index is not None:
        env["GIT_INDEX_FILE"] = index
    try:
        p = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=env,
                           errors="surrogateescape")
    except OSError as exc:
        raise SeriesError(cwd, f"cannot run git: {exc.strerror}") from None
    if check and p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or [f"git {args[0]} failed"])[-1]
        raise SeriesError(cwd, f"git {args[0]}: {msg.removeprefix('fatal: ')}")
    return p


class _Commits(NamedTuple):
    top: str  # the repository's top directory
    prefix: str  # DIR relative to it ("" or "sub/dir/")
    base: str
    commits: list[tuple[str, str]]  # (sha, subject), oldest first


def _range(src: str, revisions: str) -> _Commits:
    if revisions.count("..") != 1 or "..." in revisions:
        raise SeriesError(revisions, "not a range BASE..TIP")
    base_name, tip_name = revisions.split("..")
    if _git(src, "rev-parse", "--git-dir", check=False).returncode != 0:
        raise SeriesError(src, "not a git work tree (a range BASE..TIP needs one; give --patches otherwise)")
    top = _git(src, "rev-parse", "--show-toplevel").stdout.strip()
    prefix = _git(src, "rev-parse", "--show-prefix").stdout.strip()
    shas = []
    for name in (base_name or "HEAD", tip_name or "HEAD"):
        p = _git(src, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}", check=False)
        if p.returncode != 0:
            raise SeriesError(src, f"{name!r} is not a commit of the repository")
        shas.append(p.stdout.strip())
    base, tip = shas
    log = _git(src, "log", "--reverse", "--topo-order", "--format=%H %P%x00%s", f"{base}..{tip}").stdout
    commits = []
    for line in log.splitlines():
        ids, _, subject = line.partition("\0")
        sha, *parents = ids.split()
        if len(parents) > 1:
            raise SeriesError(src, f"{revisions} holds merge commit {sha[:12]}: a series is linear history")
        commits.append((sha, subject))
    if not commits:
        raise SeriesError(src, f"{revisions} holds no commit")
    return _Commits(top, prefix, base, commits)


def _touched(tree: str, patch: Patch) -> list[str]:
    """The paths a patch touches (both sides of a rename), from ``git apply --numstat -z``."""
    p = _git(tree, "apply", "--numstat", "-z", f"-p{patch.strip}", stdin=patch.text, check=False)
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["cannot be read"])[-1]
        raise PatchError(patch.origin, f"git apply cannot read it: {msg.removeprefix('error: ')}")
    out, fields = [], p.stdout.split("\0")
    i = 0
    while i < len(fields) - 1:
        _, _, path = fields[i].split("\t", 2)
        if path:
            out.append(path)
            i += 1
        else:  # a rename: the old and the new path follow
            out += fields[i + 1:i + 3]
            i += 3
    return out


_HUNK_FAILED = re.compile(r"^error: patch failed: (.+)$")
_CHECKING = re.compile(r"^Checking patch (.+)\.\.\.$")
_OFFSET = re.compile(r"^Hunk #(\d+) succeeded at (\d+) \(offset (-?\d+) lines?\)\.$")


def _apply(tree: str, patch: Patch, index: str | None = None) -> Applied:
    """``git apply -v`` (all or nothing); its error lines; where hunks landed elsewhere; whether
    one line of context would do (``-C1``: what patch's fuzz accepts). With ``index`` (an index
    file), applied to that index alone (``--cached``: the work tree untouched)."""
    cached = ("--cached",) if index is not None else ()
    p = _git(tree, "apply", *cached, "-v", f"-p{patch.strip}", stdin=patch.text, check=False, index=index)
    lines = p.stderr.splitlines()
    offsets, current = [], ""
    for line in lines:
        m = _CHECKING.match(line)
        if m:
            current = m.group(1)
            continue
        m = _OFFSET.match(line)
        if m:
            offsets.append(f"{current}: hunk #{m.group(1)} at {m.group(2)} (offset {m.group(3)} lines)")
    if p.returncode == 0:
        return Applied(True, [], offsets)
    errors = [ln.removeprefix("error: ") for ln in lines
              if ln.startswith("error: ") and ln != "error: while searching for:"]
    fuzz = _git(tree, "apply", *cached, "--check", "-C1", f"-p{patch.strip}", stdin=patch.text,
                check=False, index=index).returncode == 0
    return Applied(False, errors or [(lines or ["git apply failed"])[-1]], offsets, fuzz)


# ---------------------------------------------------------------------------------------------
# The scratch tree and the module directories
# ---------------------------------------------------------------------------------------------

_BUILD_PRODUCTS = ("*.o", "*.ko", "*.mod", "*.mod.c", ".*.cmd", "modules.order", "Module.symvers", ".tmp_versions")


def _copy(src: str, dest: str) -> None:
    """DIR's files, but its .git and kbuild's products (a copy builds cold, like a clone)."""
    top = os.path.abspath(src)
    products = shutil.ignore_patterns(*_BUILD_PRODUCTS)

    def ignore(d: str, names: list[str]) -> set[str]:
        out = set(products(d, names))
        if os.path.abspath(d) == top:
            out.add(".git")
        return out

    try:
        shutil.copytree(src, dest, symlinks=True, ignore=ignore)
    except (OSError, shutil.Error) as exc:
        raise SeriesError(src, f"cannot copy it to a scratch tree: {exc}") from None
    _git(dest, "init", "-q")  # its own repository: git apply works on it, not on an enclosing one


def _is_kernel_top(d: str) -> bool:
    """The top Makefile of a kernel tree (``VERSION =`` and ``PATCHLEVEL =``): not a module directory."""
    try:
        with open(os.path.join(d, "Makefile"), errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return bool(re.search(r"^VERSION = ", head, re.M) and re.search(r"^PATCHLEVEL = ", head, re.M))


def _module_dirs(tree: str, touched: set[str]) -> list[str]:
    """The directories of touched files that hold a Kbuild or Makefile (at the base, or made by the
    series), but a kernel tree's top."""
    made = {os.path.dirname(p) for p in touched if os.path.basename(p) in ("Kbuild", "Makefile")}
    out = set()
    for p in touched:
        d = os.path.dirname(p)
        full = os.path.join(tree, d)
        if d in made or any(os.path.isfile(os.path.join(full, k)) for k in ("Kbuild", "Makefile")):
            if not _is_kernel_top(full):
                out.add(d or ".")
    return sorted(out)


def _given_dirs(src: str, modules: Sequence[str]) -> list[str]:
    out = []
    top = os.path.realpath(src)
    for m in modules:
        full = os.path.realpath(m if os.path.isabs(m) else os.path.join(src, m))
        rel = os.path.relpath(full, top)
        if rel == ".." or rel.startswith("../"):
            raise SeriesError(m, f"not inside {src} (--modules names directories of the tree)")
        if rel not in out:
            out.append(rel)
    return out


# ---------------------------------------------------------------------------------------------
# One step: build, read, check, compare
# ---------------------------------------------------------------------------------------------

class _Context(NamedTuple):
    tree: str
    headers: str
    dirs: list[str]
    kernel: Kernel
    target: Target
    layout: Layout
    jobs: int | None
    struct: str | None = None
    census_paths: tuple[str, ...] = ()
    expect: dict[str, int] = {}
    extra: tuple[Module, ...] = ()  # --with: checked together with each step's modules


class _State(NamedTuple):
    """What the last step that built left: its findings and modules."""

    findings: list[Finding]
    modules: list[ModuleState]
    ops: OpsCounts | None = None  # the last census taken (a step that applied, built or not)


def _build(ctx: _Context) -> tuple[Built, list[str]]:
    """Build every module directory; the built modules (relative to the tree) when all succeed."""
    from ..kbuild import built_modules, compiled, first_errors, linked, make_modules

    ok, errors, objs, lds, seconds, cpu, kos = True, [], [], [], 0.0, 0.0, []
    symvers: list[str] = []  # the directories built before: their exports, for modpost (KBUILD_EXTRA_SYMBOLS)
    for d in ctx.dirs:
        full = os.path.normpath(os.path.join(ctx.tree, d))
        if not os.path.isdir(full):  # made by a later step
            continue
        extra = tuple(p for p in symvers if os.path.isfile(p))
        runs = [make_modules(full, ctx.headers, extra_symbols=extra, jobs=ctx.jobs)]
        symvers.append(os.path.join(full, "Module.symvers"))
        if runs[0].returncode != 0:
            # which jobs a parallel make started before it stopped, and so which errors it printed
            # first, varies from run to run: once more with -j1 -k, every object left is tried in
            # make's order — the same errors, and the same objects tried, every time
            runs.append(make_modules(full, ctx.headers, ("-k",), extra_symbols=extra, jobs=1))
            ok = False
            errors += first_errors(runs[-1].output, ctx.tree)
        for run in runs:
            seconds += run.seconds
            cpu += run.cpu_seconds
            objs += [os.path.normpath(os.path.join(d, o)) for o in compiled(run.output, full)]
            lds += [os.path.normpath(os.path.join(d, k)) for k in linked(run.output, full)]
        if len(runs) == 1:
            kos += [os.path.normpath(os.path.join(d, k)) for k in built_modules(full)]
    return Built(ok, errors[:3], sorted(set(objs)), sorted(set(lds)), seconds, cpu), kos


def _measure(ctx: _Context, kos: list[str]) -> tuple[list[Finding], list[ModuleState], list[str]]:
    """Read the built modules, check them together, measure each; (findings, modules (no size
    delta yet), problems)."""
    from ..checks import run_checks
    from ..elf import ElfError
    from ..memory_layout import layout, read_input
    from ..module import ModuleError

    mods, states, problems = [], [], []
    for rel in kos:
        path = os.path.join(ctx.tree, rel)
        try:
            m, inp = read_input(path)
        except (ModuleError, ElfError) as exc:
            problems.append(f"{rel}: {exc}" if isinstance(exc, ElfError) else str(exc).replace(ctx.tree + "/", ""))
            continue
        fp = layout(inp, ctx.layout, rel, m.name)
        mods.append(m)
        states.append(ModuleState(m.name, rel, fp.size, fp.pages, tuple(sorted(e.name for e in m.exports)), None))
    top = ctx.tree + "/"
    findings = [replace(f, path=f.path.removeprefix(top))
                for f in run_checks(mods + list(ctx.extra), ctx.kernel, target=ctx.target)]
    return findings, states, problems


# what --expect may name: the ops census's counts (with a struct) and the modules' total size
METRICS = ("members", "calls", "static_calls", "null_tests", "assignments", "size")


def parse_expect(items: Sequence[str], struct: str | None) -> dict[str, int]:
    """``--expect calls=down,size=down`` (items, each of comma-separated ``metric=down|up``) as
    metric -> -1 (down) or +1 (up). Raises :class:`SeriesError` for an unknown metric or direction,
    or an ops metric without a struct."""
    out: dict[str, int] = {}
    for item in items:
        for part in filter(None, (p.strip() for p in item.split(","))):
            metric, _, way = part.partition("=")
            if metric not in METRICS:
                raise SeriesError("--expect", f"unknown metric {metric!r} (known: {', '.join(METRICS)})")
            if way not in ("down", "up"):
                raise SeriesError("--expect", f"{part!r}: say {metric}=down or {metric}=up")
            if metric != "size" and struct is None:
                raise SeriesError("--expect", f"{metric} is a count of the ops census: give --struct NAME")
            out[metric] = -1 if way == "down" else 1
    return out


def _wrong_way(expect: dict[str, int], ops_delta: OpsCounts | None, size_delta: int | None) -> list[tuple[str, int]]:
    out = []
    for metric, way in expect.items():
        change = size_delta if metric == "size" else getattr(ops_delta, metric) if ops_delta is not None else None
        if change is not None and change * way < 0:
            out.append((metric, change))
    return out


def _census(ctx: _Context) -> OpsCounts | None:
    """The ops census of the tree as it is now (None: without a struct, or no input defines it)."""
    if ctx.struct is None:
        return None
    from ..ops.census import CensusError, load_inputs, run_census

    paths = [p for p in (os.path.normpath(os.path.join(ctx.tree, d)) for d in ctx.census_paths) if os.path.exists(p)]
    inputs, _errors, _root = load_inputs(paths)
    try:
        c = run_census(ctx.struct, inputs)
    except CensusError:
        return None
    sites = [cs for m in c.members for cs in m.call_sites]
    return OpsCounts(len(c.members), sum(cs.indirect for cs in sites), sum(not cs.indirect for cs in sites),
                     sum(len(m.null_checks) for m in c.members),
                     sum(len(m.assignments) for m in c.members) + len(c.copies))


def _key(f: Finding) -> tuple[str, str, str, str, str]:
    return (f.check, f.severity, f.symbol, f.module, f.message)


def _exports_delta(before: list[ModuleState], after: list[ModuleState]) \
        -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[Moved]]:
    old = {(s, m.name) for m in before for s in m.exports}
    new = {(s, m.name) for m in after for s in m.exports}
    added, removed = sorted(new - old), sorted(old - new)
    gone: dict[str, list[str]] = {}
    for s, mod in removed:
        gone.setdefault(s, []).append(mod)
    came: dict[str, list[str]] = {}
    for s, mod in added:
        came.setdefault(s, []).append(mod)
    moved = [Moved(s, tuple(gone[s]), tuple(came[s])) for s in sorted(gone.keys() & came.keys())]
    both = gone.keys() & came.keys()
    return ([a for a in added if a[0] not in both], [r for r in removed if r[0] not in both], moved)


class _Observation(NamedTuple):
    """What one tree gives, whatever the step before: its census, its build, and when it built its
    findings and modules (``size_delta`` None: set against a step by :func:`_compare`)."""

    ops: OpsCounts | None
    built: Built
    findings: list[Finding] | None  # None: it did not build (or kbuild made a module that cannot be read)
    modules: list[ModuleState]


def _observe(ctx: _Context) -> _Observation:
    """Take the census of the tree as it is, build it, read, check and measure what it built."""
    ops = _census(ctx)
    built, kos = _build(ctx)
    if not built.ok:
        return _Observation(ops, built, None, [])
    findings, modules, problems = _measure(ctx, kos)
    if problems:  # a module kbuild made that cannot be read: the step did not build a usable module
        return _Observation(ops, built._replace(ok=False, errors=problems[:3]), None, [])
    return _Observation(ops, built, findings, modules)


def _state(obs: _Observation) -> _State:
    """The state a tree that built leaves for the step after it."""
    return _State(obs.findings or [], obs.modules, obs.ops)


def _compare(ctx: _Context, index: int, name: str, commit: str | None, applied: Applied,
             obs: _Observation | None, prev: _State | None) -> tuple[Step, _State | None]:
    """The step of ``obs`` (None: the step did not apply) against ``prev``, the last step that
    built; (the step, the state the next step is compared with)."""
    nothing = Step(index, name, commit, applied, Built(None, [], [], [], 0.0), None, [], [], [], [], [], [], [])
    if obs is None:
        return nothing, prev
    ops = obs.ops
    last_ops = prev.ops if prev else None
    ops_delta = ops.minus(last_ops) if ops and last_ops else None
    nothing = nothing._replace(ops=ops, ops_delta=ops_delta, wrong_way=_wrong_way(ctx.expect, ops_delta, None))
    if prev is not None:
        prev = prev._replace(ops=ops or prev.ops)
    if obs.findings is None:
        return nothing._replace(built=obs.built), prev
    findings, built = obs.findings, obs.built
    sizes = {m.name: m.size for m in prev.modules} if prev else {}
    modules = [m._replace(size_delta=m.size - sizes[m.name] if m.name in sizes else None) for m in obs.modules]
    old = prev.findings if prev else []
    if prev is None:  # the base: its findings are where the series starts
        new: list[Finding] = []
        fixed: list[Finding] = []
    else:
        old_keys, new_keys = {_key(f) for f in old}, {_key(f) for f in findings}
        new = [f for f in findings if _key(f) not in old_keys]
        fixed = [f for f in old if _key(f) not in new_keys]
    before = prev.modules if prev else []
    names = {m.name for m in modules}
    removed_modules = sorted(m.name for m in before if m.name not in names)
    added, removed, moved = _exports_delta(before, modules) if prev else ([], [], [])
    size_delta = sum(m.size for m in modules) - sum(m.size for m in before) if prev else None
    step = Step(index, name, commit, applied, built, findings, new, fixed, modules, removed_modules,
                added, removed, moved, nothing.ops, nothing.ops_delta, _wrong_way(ctx.expect, ops_delta, size_delta))
    return step, _State(findings, modules, ops or (prev.ops if prev else None))


def _step(ctx: _Context, index: int, name: str, commit: str | None, applied: Applied,
          prev: _State | None) -> tuple[Step, _State | None]:
    return _compare(ctx, index, name, commit, applied, None if applied.ok is False else _observe(ctx), prev)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------

def _read_with(paths: Sequence[str]) -> tuple[Module, ...]:
    """--with: module files, or directories of them (every *.ko* below, sorted), read once."""
    from ..memory_layout import read_input
    from ..module import ModuleError

    files: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(d, f) for d, _, fs in os.walk(p) for f in fs if ".ko" in f)
        elif os.path.isfile(p):
            files.append(p)
        else:
            raise SeriesError(p, "no such file or directory (--with names module files or directories)")
    out = []
    for f in files:
        try:
            out.append(read_input(f)[0])
        except ModuleError as exc:
            raise SeriesError(f, f"not a module kmodsim can read (--with): {exc}") from None
    return tuple(out)


def run_series(req: SeriesRequest) -> SeriesResult:
    """Apply, build, check and measure every step of the series of ``req`` (see the module's
    docstring). Raises :class:`SeriesError` or :class:`~kmodsim.series.patches.PatchError` (one
    line naming the input) for an input that cannot be run; :class:`~kmodsim.kernel.KernelError` for
    an unreadable target."""
    from ..checks import check_target
    from ..kernel import Kernel
    from ..memory_layout import layout_of
    from ..parallel import Progress

    src, headers = req.src, req.kernel_path
    if not os.path.isdir(src):
        raise SeriesError(src, "not a directory" if os.path.exists(src) else "no such directory")
    if (req.revisions is None) == (not req.patches):
        raise SeriesError(src, "give a range BASE..TIP or --patches, not both" if req.patches
                          else "give a range BASE..TIP or --patches")
    given = _given_dirs(src, req.modules)
    expect = parse_expect(req.expect, req.struct)
    patches: list[Patch] = []
    commits: _Commits | None = None
    if req.revisions is not None:
        commits = _range(src, req.revisions)
        if req.reorder:  # the commits as patches, applied to the base in any order
            text = _git(src, "format-patch", "--stdout", "--no-signature", f"{commits.base}..{commits.commits[-1][0]}").stdout
            patches = read_mbox(req.revisions, text)
    else:
        patches = read_series(req.patches)
    extra = _read_with(req.with_modules)
    if not os.path.isfile(os.path.join(headers, "Makefile")):
        raise SeriesError(headers, "not a kernel headers or build directory (no Makefile): "
                                   "series builds the modules against it")
    kernel = Kernel.load(headers)  # a KernelError names the file at fault
    target = check_target(kernel, [])
    if not target.release:
        raise SeriesError(headers, "no kernel release in it (include/config/kernel.release): "
                                   "the footprint layout depends on it")

    scratch = tempfile.mkdtemp(prefix="kmodsim-series-")
    try:
        repo = os.path.join(scratch, "tree")
        if commits is not None:
            _git(scratch, "clone", "-q", "--shared", "--no-checkout", commits.top, repo)
            _git(repo, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commits.base)
            tree = os.path.normpath(os.path.join(repo, commits.prefix))
            pre = commits.prefix
            listed = _git(repo, "log", "--no-renames", "--name-only", "--format=",
                          f"{commits.base}..{commits.commits[-1][0]}").stdout.split("\n")
            touched = {p.removeprefix(pre) for p in listed if p and p.startswith(pre)}
        else:
            _copy(src, repo)
            tree = repo
            touched = {p for patch in patches for p in _touched(tree, patch)}
        dirs = given or _module_dirs(tree, touched)
        if not dirs:
            raise SeriesError(src, "the series touches no directory holding a Kbuild or Makefile: "
                                   "name the module directories with --modules")
        ctx = _Context(tree, os.path.abspath(headers), dirs, kernel, target, layout_of(target), req.jobs,
                       req.struct, tuple(_given_dirs(src, req.census_paths) or dirs), expect, extra)
        if req.struct is not None and _census(ctx) is None:
            raise SeriesError(f"struct {req.struct}", f"no definition at the base in {', '.join(ctx.census_paths)} "
                                                      f"of {src} (name where the census reads with --census)")
        names = [s for _, s in commits.commits] if commits else [p.name for p in patches]
        steps: list[Step] = []
        expected = {m: "down" if w < 0 else "up" for m, w in expect.items()}
        with Progress(req.progress, len(names) + 1, label="series steps", minimum=1) as advance:
            tick: Callable[[int], None] = advance or (lambda n: None)
            if req.reorder:
                from .reorder import search_order

                steps, found = search_order(ctx, repo, patches, scratch, tick)
                return SeriesResult(target.release, ctx.layout.name, dirs, steps, list(target.warnings),
                                    req.struct, expected, found)
            step, state = _step(ctx, 0, "(base)", commits.base if commits else None, Applied(None, [], []), None)
            steps.append(step)
            tick(1)
            for i, name in enumerate(names, 1):
                if commits is not None:
                    sha = commits.commits[i - 1][0]
                    _git(repo, "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha)
                    applied = Applied(None, [], [])
                else:
                    sha = None
                    applied = _apply(tree, patches[i - 1])
                step, state = _step(ctx, i, name, sha, applied, state)
                steps.append(step)
                tick(1)
        return SeriesResult(target.release, ctx.layout.name, dirs, steps, list(target.warnings), req.struct,
                            expected)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
