"""modpost-class link checks across any set of modules (``kmodsim check``).

modpost sees one build (and, for external modules, only duplicates of vmlinux); depmod silently lets
the last exporter win; the kernel refuses a second exporter only at load time. These checks run on
the binaries, before anything is loaded:

========================  ========  =====================================================================
check                     severity  mirrors
========================  ========  =====================================================================
``duplicate-export``      error     load time: kernel/module/main.c ``verify_exported_symbols()``;
                                    build time: scripts/mod/modpost.c ``sym_add_exported()``
``unresolved``            error     modpost ``check_exports()`` ("undefined!"); kernel ``resolve_symbol()``
``gpl-only``              error     modpost ``check_exports()``; kernel ``find_exported_symbol_in_section()``
``namespace``             error     modpost ``check_exports()``; kernel ``verify_namespace_is_imported()``
``namespace-unused``      warning   modpost ``check_imports()`` ... "imports namespace ..., but doesn't use it"
``crc``                   error     kernel/module/version.c ``check_version()``
``vermagic``              error     kernel/module/version.c ``same_magic()`` via ``check_modinfo()``
``symbol-list``           error     Android GKI/kABI symbol lists
``allowlist``             warning   an allowlist entry that matched nothing
========================  ========  =====================================================================

The module set is taken in load order (the order given, trees in depmod order): for a name exported
twice the kernel keeps the first loaded exporter, so that one is named as the owner.

:func:`check_paths` is a whole run (``kmodsim check``): a :class:`CheckRequest` in, a
:class:`CheckResult` out, through the findings cache of :mod:`kmodsim.findings_cache`. The result's
text, JSON and SARIF forms are :mod:`kmodsim.render.check`'s.
"""

from __future__ import annotations

import fnmatch
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import ne
from typing import Any, NamedTuple

from .errors import Error
from .kernel import Kernel, KernelError, check_version, license_is_gpl_compatible, same_magic
from .module import DEFAULT_MAX_SIZE, Module
from .symbols import LOADER, MODULE_NS_PREFIX, SymbolIndex, namespace_problem
from .target import Target

CHECKS = {
    "duplicate-export": "A symbol is exported by two modules of the set, or by a module and vmlinux",
    "unresolved": "An import that nothing exports",
    "gpl-only": "A GPL-only export used by a module whose license is not GPL-compatible",
    "namespace": "A namespaced symbol used without MODULE_IMPORT_NS, or (6.16+) a module: namespace that excludes the user",
    "namespace-unused": "MODULE_IMPORT_NS of a namespace the module uses no symbol from",
    "crc": "An import's __versions CRC differs from the exporter's CRC, or __versions lacks it",
    "vermagic": "The module's vermagic does not match the kernel's",
    "symbol-list": "An import from vmlinux outside the given symbol list(s)",
    "allowlist": "An allowlist entry that matched no finding",
}


class CheckError(Error):
    """A bad allowlist or symbol list; the message names the file."""


@dataclass(slots=True)
class Finding:
    """One finding; ``extra`` holds the per-check fields (JSON values, in the order the check
    gives them). Its JSON and SARIF forms are :mod:`kmodsim.render.check`'s."""

    check: str
    severity: str  # "error" | "warning"
    symbol: str
    module: str
    path: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Allowlist
# ---------------------------------------------------------------------------------------------

def _norm(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class AllowEntry:
    kind: str  # "exclusive" | "allow"
    source: str  # "file:index" for messages
    reason: str
    modules: list[str]
    check: str = ""
    symbol: str = "*"
    used: int = 0

    def matches(self, f: Finding) -> bool:
        if self.kind != "allow":
            return False
        if self.check and self.check != f.check:
            return False
        if not fnmatch.fnmatchcase(f.symbol, self.symbol):
            return False
        return not self.modules or any(fnmatch.fnmatchcase(_norm(f.module), _norm(m)) for m in self.modules)


def load_allowlist(path: str) -> list[AllowEntry]:
    """``[[exclusive]] modules = [...] reason = "..."`` and
    ``[[allow]] check = "..." symbol = "<glob>" modules = [...] reason = "..."``."""
    import tomllib  # here, not at the top: ~10 ms of imports (datetime...) a run without --allow saves

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise CheckError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CheckError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(data) - {"exclusive", "allow"}
    if unknown:
        raise CheckError(f"{path}: unknown table(s) {', '.join(sorted(unknown))} (expected [[exclusive]], [[allow]])")
    out = []
    for i, e in enumerate(data.get("exclusive", []), 1):
        mods = e.get("modules")
        if not isinstance(mods, list) or len(mods) < 2 or not all(isinstance(m, str) for m in mods):
            raise CheckError(f"{path}: [[exclusive]] #{i}: 'modules' must list at least two module names")
        out.append(AllowEntry("exclusive", f"{path}: [[exclusive]] #{i}", str(e.get("reason", "")),
                              [_norm(m) for m in mods]))
    for i, e in enumerate(data.get("allow", []), 1):
        chk = e.get("check", "")
        if chk and chk not in CHECKS:
            raise CheckError(f"{path}: [[allow]] #{i}: unknown check {chk!r} (one of {', '.join(CHECKS)})")
        mods = e.get("modules", [])
        if not isinstance(mods, list) or not all(isinstance(m, str) for m in mods):
            raise CheckError(f"{path}: [[allow]] #{i}: 'modules' must be a list of names or globs")
        out.append(AllowEntry("allow", f"{path}: [[allow]] #{i}", str(e.get("reason", "")), mods, chk,
                              str(e.get("symbol", "*"))))
    return out


def load_symbol_list(path: str) -> set[str]:
    """Android ``[abi_symbol_list]`` files (section headers, indented names, ``#`` comments) or
    plain one-symbol-per-line lists."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise CheckError(f"{path}: {exc.strerror or exc}") from None
    out = set()
    for no, line in enumerate(lines, 1):
        s = line.split("#", 1)[0].strip()
        if not s or (s.startswith("[") and s.endswith("]")):
            continue
        if len(s.split()) != 1:
            raise CheckError(f"{path}:{no}: expected one symbol name, got {s!r}")
        out.add(s)
    return out


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------

def _ko(m: Module) -> str:
    base: str = os.path.basename(m.path)
    return base[: base.index(".ko") + 3] if ".ko" in base else base


def check_target(kernel: Kernel | None, modules: Sequence[Module]) -> Target:
    """The target whose release decides version-dependent rules: the kernel's, else the release
    word of the first module's vermagic (a check without ``--kernel``)."""
    return Target.of(kernel, modules[0].vermagic if modules else None)


def run_checks(modules: list[Module], kernel: Kernel | None = None, providers: Iterable[Module] = (),
               allow: list[AllowEntry] | None = None, symbol_lists: list[tuple[str, set[str]]] | None = None,
               target: Target | None = None) -> list[Finding]:
    """All checks over ``modules`` (in load order). ``providers``: further modules (a --modules
    tree) that may satisfy imports but are not themselves checked. ``target``: see
    :func:`check_target` (the default)."""
    allow = allow or []
    findings: list[Finding] = []
    checked = {m.path for m in modules}
    extra = [p for p in providers if p.path not in checked]

    # every exporter of every name in load order: vmlinux, then the checked set; the extra
    # providers apart (they satisfy an import only when nothing in the first index does)
    index = SymbolIndex.build(kernel, modules)
    extra_index = SymbolIndex.build(None, extra)

    findings += _duplicates(index, allow)
    sym_lists = symbol_lists or []
    # the target's release decides version-dependent rules (kmodsim.target.BEHAVIOUR)
    module_ns = (target or check_target(kernel, modules)).has("module_namespaces")
    clean = None if sym_lists else _Clean(index, modules)

    for m in modules:
        findings += _module_checks(m, kernel, index, extra_index, sym_lists, module_ns, clean)

    # [[allow]] entries drop matching findings; unused entries are reported so lists cannot rot
    kept = []
    for f in findings:
        hit = next((a for a in allow if a.matches(f)), None)
        if hit is not None:
            hit.used += 1
        else:
            kept.append(f)
    for a in allow:
        if a.used == 0:
            what = ", ".join(a.modules) if a.kind == "exclusive" else f"check={a.check or '*'} symbol={a.symbol}"
            kept.append(Finding("allowlist", "warning", "", "", a.source.split(": ")[0],
                                f"{a.source} ({what}) matches nothing" + (f" [{a.reason}]" if a.reason else ""),
                                {"entry": a.source}))
    return kept


def _duplicates(index: SymbolIndex, allow: list[AllowEntry]) -> list[Finding]:
    """A name with two exporters: the owner is the first in load order (:data:`LOADER`), the one the
    kernel keeps; each later one is what ``verify_exported_symbols()`` refuses."""
    groups = [set(a.modules) for a in allow if a.kind == "exclusive"]
    group_entries = [a for a in allow if a.kind == "exclusive"]
    out = []
    for name, exps in index.duplicates().items():
        first = LOADER.pick(exps)
        assert first is not None
        owner = first.owner
        names = [p.owner for p in exps]
        for i, p in enumerate(exps[1:], 1):
            who = p.owner
            others = [o for j, o in enumerate(names) if j != i]
            # silenced only when every other exporter is in an exclusive group with this one
            silencing = [a for a, g in zip(group_entries, groups, strict=True)
                         if _norm(who) in g and all(_norm(o) in g for o in others)]
            if silencing:
                for a in silencing:
                    a.used += 1
                continue
            prev = owner  # the message names the load-time owner
            out.append(Finding(
                "duplicate-export", "error", name, who, p.path,
                f"{who}: '{name}' exported twice. Previous export was in {prev}{'' if prev == 'vmlinux' else '.ko'}",
                {"exporters": names, "owner": owner,
                 "kernel_message": f"{who}: exports duplicate symbol {name} (owned by "
                                   f"{'kernel' if owner == 'vmlinux' else owner})"}))
    return out


class _Clean:
    """The names whose resolution can produce no finding for most users: exactly one exporter in
    the index, no namespace, a CRC. An import whose expected CRC equals that exporter's (``crc``,
    or ``crc_nongpl`` for a module that may not use GPL-only exports) resolves cleanly, so the
    per-import checks run only on the rest — compared at C speed, with the same findings."""

    __slots__ = ("crc", "crc_nongpl", "shared_names")

    def __init__(self, index: SymbolIndex, modules: list[Module]) -> None:
        ok = [ps[0] for ps in index.by_name.values()
              if len(ps) == 1 and not ps[0].namespace and ps[0].crc is not None]
        names = [n for n, ps in index.by_name.items()
                 if len(ps) == 1 and not ps[0].namespace and ps[0].crc is not None]
        self.crc = dict(zip(names, [p.crc for p in ok], strict=True))
        self.crc_nongpl = {n: p.crc for n, p in zip(names, ok, strict=True) if not p.gpl}
        # names two modules of the set go by: the skip-self rule compares names, not files
        count = Counter(m.name for m in modules)
        self.shared_names = {n for n, k in count.items() if k > 1}

    def suspects(self, m: Module, names: list[str], gpl_ok: bool, has_versions: bool) -> list[int]:
        """Indices of the imports that need the per-import checks, in import order (a superset
        is harmless: those checks are exact)."""
        if m.name in self.shared_names:
            return list(range(len(names)))
        table = self.crc if gpl_ok else self.crc_nongpl
        if has_versions:
            # the CRC an import expects is its __versions entry's: a name is clean when each of its
            # (name, CRC) entries is (clean name, its exporter's CRC); an import without an entry
            # expects none, so it is not (no per-import CRC column is built for a clean module)
            vnames, vcrcs = m.version_columns()
            # most modules: every __versions entry is clean and every import has one — two C-level
            # comparisons say so without the per-name sets below
            got = list(map(table.get, vnames))
            if got == vcrcs and set(vnames).issuperset(names):
                bad: set[str] = set()
            else:
                bad = set(compress(vnames, map(ne, got, vcrcs)))
                bad.update(set(names).difference(vnames))
        else:  # no __versions: no CRC finding can arise, any CRC of the exporter will do
            bad = set(names).difference(table)
        out = list(compress(range(len(names)), map(bad.__contains__, names))) if bad else []
        if m.exports_any:
            own = set(m.export_names)
            if not own.isdisjoint(names):  # a module's import of its own export: skip-self rule
                out = sorted(set(out).union(i for i, n in enumerate(names) if n in own))
        return out


def _module_checks(m: Module, kernel: Kernel | None, index: SymbolIndex, extra_index: SymbolIndex,
                   sym_lists: list[tuple[str, set[str]]],
                   module_ns: bool, clean: _Clean | None) -> list[Finding]:
    out: list[Finding] = []
    gpl_ok = license_is_gpl_compatible(m.license)
    imported_ns = m.import_ns
    used_ns: set[str] = set()
    has_versions = m.has_versions
    names = m.import_names  # split once: for the clean test and, where needed, the columns
    todo: Sequence[int] = range(len(names)) if clean is None else clean.suspects(m, names, gpl_ok, has_versions)
    if todo:  # columns: no Import object per symbol on this hot path
        names, weak, crcs = m.import_columns(names)
        ko = _ko(m)
    by_name, extra_by_name = index.by_name, extra_index.by_name
    for i in todo:
        name = names[i]
        cands = by_name.get(name)
        if cands and cands[0].owner == m.name:
            cands = cands[1:]
        if not cands:
            cands = [x for x in extra_by_name.get(name, ()) if x.owner != m.name]
        if not cands:
            if weak[i] or kernel is None:
                continue
            out.append(Finding("unresolved", "error", name, m.name, m.path, f'"{name}" [{ko}] undefined!', {}))
            continue
        e = LOADER.pick(cands)
        assert e is not None
        owner = e.owner
        ns = e.namespace
        if ns:
            used_ns.add(ns)
            # modpost's view: a module: namespace cannot be imported, only listed
            problem = namespace_problem(ns, m.name, imported_ns, module_ns, import_counts=False)
            if problem == "module-only":
                allowed = [_norm(x) for x in ns[len(MODULE_NS_PREFIX):].split(",")]
                out.append(Finding("namespace", "error", name, m.name, m.path,
                                   f"module {m.name} uses symbol {name} from namespace {ns}, "
                                   f"which only {', '.join(allowed)} may use", {"namespace": ns,
                                                                                   "provider": owner}))
            elif problem:
                out.append(Finding("namespace", "error", name, m.name, m.path,
                                   f"module {m.name} uses symbol {name} from namespace {ns}, "
                                   f"but does not import it.", {"namespace": ns, "provider": owner}))
        if e.gpl and not gpl_ok:
            out.append(Finding("gpl-only", "error", name, m.name, m.path,
                               f"GPL-incompatible module {ko} uses GPL-only symbol '{name}'",
                               {"license": m.license, "provider": owner}))
        # check_version() can only disagree where both sides have a CRC and they differ
        if crcs[i] >= 0 and e.crc is not None and crcs[i] != e.crc \
                and check_version(dict(m.versions), name, e.crc) == "mismatch":
            out.append(Finding("crc", "error", name, m.name, m.path,
                               f"{m.name}: disagrees about version of symbol {name}",
                               {"expected_crc": crcs[i], "provider_crc": e.crc, "provider": owner}))
        # ... and refuses an import its __versions does not list when the exporter has a CRC (Debian's
        # bugfix/all/module-disable-matching-missing-version-crc.patch; mainline warns once)
        elif crcs[i] < 0 and e.crc is not None and has_versions:
            out.append(Finding("crc", "error", name, m.name, m.path,
                               f"{m.name}: no symbol version for {name}",
                               {"expected_crc": None, "provider_crc": e.crc, "provider": owner}))
        if owner == "vmlinux":
            for lname, lst in sym_lists:
                if name not in lst:
                    out.append(Finding("symbol-list", "error", name, m.name, m.path,
                                       f"{m.name}: uses {name} from vmlinux, which is not in {lname}",
                                       {"symbol_list": lname}))
    for ns in dict.fromkeys(imported_ns):  # modinfo order, as modpost's check_imports() reports
        if ns in used_ns or module_ns and ns.startswith(MODULE_NS_PREFIX):
            continue
        out.append(Finding("namespace-unused", "warning", "", m.name, m.path,
                           f"module {m.name} imports namespace {ns}, but doesn't use it.", {"namespace": ns}))
    if kernel is not None and kernel.vermagic is not None and not same_magic(m.vermagic, kernel.vermagic,
                                                                              has_versions):
        out.append(Finding("vermagic", "error", "", m.name, m.path,
                           f"{m.name}: version magic '{m.vermagic}' should be '{kernel.vermagic}'",
                           {"vermagic": m.vermagic, "kernel_vermagic": kernel.vermagic}))
    return out


# ---------------------------------------------------------------------------------------------
# A check run: request in, result out
# ---------------------------------------------------------------------------------------------

class CheckRequest(NamedTuple):
    """``kmodsim check``'s inputs: the modules to check (files or trees), the target kernel, a tree
    of further providers, allowlists and symbol lists, and how to read."""

    paths: Sequence[str]
    kernel_path: str | None = None
    modules_dir: str | None = None
    allow_files: Sequence[str] = ()
    symbol_lists: Sequence[str] = ()
    jobs: int | None = None
    use_cache: bool = True  # the scan cache and the findings cache (kmodsim.findings_cache)
    config_paths: Sequence[str] | None = None  # depmod.d for the trees
    max_size: int = DEFAULT_MAX_SIZE
    scheduler: str | None = None  # each path one task on a cluster (kmodsim.tree.scan_groups)
    resolve: Callable[[str], str] | None = None  # an input's name -> its path (e.g. debian.resolve_input)


class CheckResult(NamedTuple):
    """What a check run found. ``problems``: every input problem (``(path, problem)``, path "" when
    the problem names its file itself), in the order met; ``aborted``: one of them stopped the run
    before any check (a bad allowlist or symbol list, an unreadable kernel)."""

    findings: list[Finding]
    modules: int  # modules checked
    problems: list[tuple[str, str]]
    ignored: list[str]  # .ko.gz files of the trees (depmod passes over them)
    aborted: bool = False
    cached: bool = False  # the findings came from the findings cache
    notes: list[str] = []  # what the user must know of the answer (an unverified target release)

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)


def check_paths(req: CheckRequest) -> CheckResult:
    """Read the modules of ``req`` (as depmod finds them in trees), the kernel, the allowlists and
    symbol lists, and run every check; with ``req.use_cache``, a run whose inputs are all unchanged
    takes the previous run's findings (:mod:`kmodsim.findings_cache`). Input problems are collected,
    not raised: the rest of the inputs is still checked."""
    from .parallel import without_gc

    with without_gc():
        return _check_paths(req)


def _check_paths(req: CheckRequest) -> CheckResult:
    from . import __version__, findings_cache
    from .cache import racy_cutoff
    from .tree import scan_groups

    try:
        allow = [e for f in req.allow_files for e in load_allowlist(f)]
        lists = [(f, load_symbol_list(f)) for f in req.symbol_lists]
    except CheckError as exc:
        return CheckResult([], 0, [("", str(exc))], [], aborted=True)
    cutoff = racy_cutoff()  # before any input is read: findings from racily clean inputs are not kept
    loaded: list[Kernel | KernelError] = []

    def load_kernel() -> None:  # while the workers read the modules (a findings-cache hit needs none)
        if req.kernel_path and not loaded:
            try:
                loaded.append(Kernel.load(req.kernel_path))
            except KernelError as exc:
                loaded.append(exc)

    # the modules checked and the --modules tree read together (on a cluster: every path a task);
    # the checks themselves run here
    groups = [list(req.paths)] + ([[req.modules_dir]] if req.modules_dir else [])
    try:
        res, *rest = scan_groups(groups, jobs=req.jobs, max_size=req.max_size, use_cache=req.use_cache,
                                 config_paths=req.config_paths, meanwhile=load_kernel, scheduler=req.scheduler,
                                 resolve=req.resolve)
    except Error as exc:  # the cluster's (kmodsim.cluster.SchedulerError): no module was read
        return CheckResult([], 0, [("", str(exc))], [], aborted=True)
    tree = rest[0] if rest else None
    ignored = res.ignored + (tree.ignored if tree else [])
    problems = [(e.path, e.problem) for e in res.errors + (tree.errors if tree else [])]

    # The findings are a function of every input below: with all of them unchanged (same stat keys,
    # same contents), the previous run's findings are the answer.
    key = ""
    if req.use_cache and not problems:
        key = findings_cache.key(__version__, res, tree, req.kernel_path, req.allow_files, req.symbol_lists,
                              cutoff)
        hit = findings_cache.load(key) if key else None
        if hit is not None:
            return CheckResult(hit.findings, hit.modules, [], ignored, cached=True, notes=hit.notes)

    kernel = None
    if req.kernel_path:
        load_kernel()
        if isinstance(loaded[0], KernelError):
            return CheckResult([], 0, problems + [("", str(loaded[0]))], ignored, aborted=True)
        kernel = loaded[0]
    modules = res.modules
    if kernel is not None and kernel.machine is not None:
        from .elf import MACHINE_NAMES

        keep = []
        for m in modules:
            if m.machine != kernel.machine:
                problems.append((m.path, f"ELF machine {m.machine_name} does not match the kernel's "
                                         f"({MACHINE_NAMES.get(kernel.machine, kernel.machine)})"))
            else:
                keep.append(m)
        modules = keep
    target = check_target(kernel, modules)
    notes = target.warnings if kernel is not None else []  # a run without --kernel has no target
    findings = run_checks(modules, kernel, tree.modules if tree else [], allow, lists, target)
    if key and not problems:
        findings_cache.store(key, len(modules), findings, notes, kernel.inputs if kernel else [], cutoff)
    return CheckResult(findings, len(modules), problems, ignored, notes=notes)
