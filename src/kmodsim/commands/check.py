"""``kmodsim check``: modpost-class link checks across a set of modules, with an allowlist."""

from __future__ import annotations

from .. import args
from .common import (
    EXIT_ERROR,
    EXIT_FINDINGS,
    EXIT_OK,
    config_option,
    dump_json,
    error,
    max_size_option,
    warn,
    warn_ignored,
)


@args.command("check")
@args.argument("paths", nargs=-1, required=True, type=args.Path())
@args.option("--kernel", "-k", "kernel_path", metavar="KDIR|Module.symvers|vmlinux",
              help="Target kernel (vmlinux exports, vermagic). Without it, unresolved and vermagic are not checked.")
@args.option("--modules", "-m", "modules_dir", type=args.Path(file_okay=False),
              help="A module tree whose exports may satisfy imports (not itself checked).")
@args.option("--allow", "allow_files", multiple=True, type=args.Path(dir_okay=False),
              help="Allowlist (TOML: [[exclusive]] and [[allow]] entries). Repeatable.")
@args.option("--symbol-list", "symbol_lists", multiple=True, type=args.Path(dir_okay=False),
              help="Allowed vmlinux imports (Android [abi_symbol_list] or one name a line). Repeatable.")
@args.option("--format", "fmt", type=args.Choice(["text", "json", "sarif"]), default="text", show_default=True)
@args.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")
@args.option("--no-cache", is_flag=True, help="Neither read nor write the scan cache.")
@config_option
@max_size_option
def check_cmd(paths, kernel_path, modules_dir, allow_files, symbol_lists, fmt, jobs, no_cache, config,
              max_size) -> None:
    """Check PATH (.ko files or module trees) the way modpost, depmod and the loader would. A
    tree's modules are the ones depmod takes (depmod.d, updates/ first, no .ko.gz).

    Exit status: 0 no error findings, 1 error findings, 2 usage or input error.
    """
    from .. import __version__
    from ..cache import racy_cutoff
    from ..check import CheckError, check_target, load_allowlist, load_symbol_list, run_checks
    from ..tree import scan

    problems: list[tuple[str, str]] = []  # (path, problem): stderr, and SARIF's invocation

    def problem(path: str, what: str) -> None:
        error(f"{path}: {what}" if path else what)
        problems.append((path, what))

    try:
        allow = [e for f in allow_files for e in load_allowlist(f)]
        lists = [(f, load_symbol_list(f)) for f in symbol_lists]
    except CheckError as exc:
        problem("", str(exc))
        _abort(fmt, __version__, problems)
    cutoff = racy_cutoff()  # before any input is read: findings from racily clean inputs are not kept
    cfg = config or None
    res = scan(paths, jobs=jobs, max_size=max_size, use_cache=not no_cache, config_paths=cfg)
    tree = scan([modules_dir], jobs=jobs, max_size=max_size, use_cache=not no_cache,
                config_paths=cfg) if modules_dir else None
    warn_ignored(res.ignored + (tree.ignored if tree else []))
    for e in res.errors + (tree.errors if tree else []):
        problem(e.path, e.problem)

    # The findings are a function of every input below: with all of them unchanged (same stat keys,
    # same contents), the previous run's findings are the answer.
    key = None
    if not no_cache and not problems:
        key = _fingerprint(__version__, res, tree, kernel_path, allow_files, symbol_lists, cutoff)
        hit = _load_findings(key) if key else None
        if hit is not None:
            for w in hit.pop("warnings", []):
                warn(w)
            _render(hit, fmt, __version__, problems)
            raise SystemExit(_status(hit, False))

    kernel = None
    if kernel_path:
        from ..kernel import Kernel, KernelError

        try:
            kernel = Kernel.load(kernel_path)
        except KernelError as exc:
            problem("", str(exc))
            _abort(fmt, __version__, problems)
    modules = res.modules
    if kernel is not None and kernel.machine is not None:
        from ..elf import MACHINE_NAMES

        keep = []
        for m in modules:
            if m.machine != kernel.machine:
                problem(m.path, f"ELF machine {m.machine_name} does not match the kernel's "
                                f"({MACHINE_NAMES.get(kernel.machine, kernel.machine)})")
            else:
                keep.append(m)
        modules = keep
    target = check_target(kernel, modules)
    warnings = target.warnings if kernel is not None else []  # a run without --kernel has no target
    for w in warnings:
        warn(w)
    findings = run_checks(modules, kernel, tree.modules if tree else [], allow, lists, target)
    doc = {"findings": [f.to_json() for f in findings],
           "summary": {"modules": len(modules), "errors": sum(f.severity == "error" for f in findings),
                       "warnings": sum(f.severity == "warning" for f in findings)}}
    if key and not problems:
        _store_findings(key, {**doc, "warnings": warnings})
    _render(doc, fmt, __version__, problems)
    raise SystemExit(_status(doc, bool(problems)))


def _abort(fmt: str, version: str, problems: list[tuple[str, str]]) -> None:
    """A run that cannot check anything: exit 2 (with SARIF, a run that says it failed and why)."""
    if fmt == "sarif":
        _render({"findings": [], "summary": {"modules": 0, "errors": 0, "warnings": 0}}, fmt, version, problems)
    raise SystemExit(EXIT_ERROR)


def _status(doc: dict, input_error: bool) -> int:
    if input_error:
        return EXIT_ERROR
    return EXIT_FINDINGS if doc["summary"]["errors"] else EXIT_OK


def _render(doc: dict, fmt: str, version: str, problems: list[tuple[str, str]]) -> None:
    from ..check import Finding, render_text, to_sarif

    if fmt == "json":
        dump_json(doc)
        return
    base = ("check", "severity", "symbol", "module", "path", "message")
    findings = [Finding(**{k: f[k] for k in base}, extra={k: v for k, v in f.items() if k not in base})
                for f in doc["findings"]]
    if fmt == "sarif":
        dump_json(to_sarif(findings, version, problems))
    elif findings:
        args.echo(render_text(findings))


KERNEL_INPUTS = ("Module.symvers", ".config", ".kernelvariables", "include/generated/utsrelease.h",
                 "include/config/kernel.release", "include/generated/randstruct_hash.h")


def _fingerprint(version, res, tree, kernel_path, allow_files, symbol_lists, cutoff: int) -> str:
    """The findings cache key; "" when an input's stat key cannot be trusted (a missing module, or
    one changed within the clock second the run started in: :func:`kmodsim.cache.is_trusted`)."""
    import hashlib
    import os

    from ..cache import is_trusted
    from ..tree import file_fingerprint

    h = hashlib.blake2b(digest_size=20)
    kfiles = []
    if kernel_path:
        kp = os.path.realpath(kernel_path)
        kfiles = [os.path.join(kp, f) for f in KERNEL_INPUTS] if os.path.isdir(kp) else [kp]
    checked = [(p, res.keys.get(p)) for p, _r, _s in res.items]
    providers = [(p, tree.keys.get(p)) for p, _r, _s in tree.items] if tree else None
    kernel_files = file_fingerprint(kfiles)  # a kernel input that does not exist has key None
    if not all(is_trusted(k, cutoff) for _p, k in checked + (providers or [])) or not all(
            k is None or is_trusted(k, cutoff) for _p, k in kernel_files):
        return ""
    parts = [version, checked, providers, kernel_files]
    h.update(repr(parts).encode("utf-8", "surrogateescape"))
    for f in (*allow_files, *symbol_lists):  # contents, not only stat: they are small
        with open(f, "rb") as fh:
            h.update(b"\0" + f.encode() + b"\0" + fh.read())
    return h.hexdigest()


def _findings_file(key: str) -> str:
    import os

    from ..cache import cache_root

    return os.path.join(cache_root(), "check", key + ".json")


def _load_findings(key: str) -> dict | None:
    import json

    try:
        with open(_findings_file(key), encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key:
        return None
    return doc["result"]


def _store_findings(key: str, doc: dict) -> None:
    import json
    import os

    from ..cache import write_atomic

    path = _findings_file(key)
    try:
        write_atomic(path, json.dumps({"key": key, "result": doc}).encode())
        # keep the 32 newest results
        d = os.path.dirname(path)
        olds = sorted((os.path.join(d, f) for f in os.listdir(d) if f.endswith(".json")),
                      key=os.path.getmtime)
        for old in olds[:-32]:
            os.unlink(old)
    except OSError:
        pass  # a result that cannot be cached only costs time next run
