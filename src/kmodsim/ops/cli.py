"""``kmodsim ops``: parse the arguments, call :mod:`kmodsim.ops`, render.

Exit codes: 0 clean, 1 findings (members whose classification differs from the X-macro list),
2 usage or input error (an input that is missing, unreadable or not C / not ELF is reported on one
line of stderr and the other inputs are still processed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .. import args
from ..commands.common import error
from ..module import MODULE_SUFFIXES  # noqa: E402
from . import binary as binmod
from . import census as censusmod
from . import emit, plan, render


def _err(path: str, problem: str) -> None:
    error(f"{path}: {problem}")


def _write_raw(text: str) -> None:
    """Write to stdout byte-exactly (source text may hold non-UTF-8 bytes); a closed pipe
    (``| head``) ends the command quietly."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", "surrogateescape"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


@args.command("ops")
@args.argument("paths", nargs=-1, required=True, type=args.path)
@args.option("--struct", "struct_name", metavar="NAME", help="The ops struct type, e.g. kvm_x86_ops.")
@args.option("--json", "as_json", is_flag=True, help="Print the stable JSON document (docs/ops.md).")
@args.option(
    "--emit",
    "emit_kind",
    type=args.Choice(["plan", "xmacro", "patch", "series"]),
    help="plan: ranked conversion plan; xmacro: the X-macro list; patch: a unified diff to direct calls; "
         "series: the plan as a patch series (--output DIR or --branch NAME).",
)
@args.option("--instance", metavar="NAME", help="Direct calls go to this instance's functions (plan/patch).")
@args.option("--prefix", metavar="PREFIX", help="Direct calls go to PREFIX_<member> (plan/patch).")
@args.option("--output", "-o", "output", metavar="DIR", help="--emit series: write git format-patch files here.")
@args.option("--branch", metavar="NAME",
             help="--emit series: commit the series on a new branch NAME of the git tree the PATHs are in.")
@args.option("--group", type=args.Choice(["member", "file"]), default="member",
             help="--emit series: one commit per member (default) or per file holding most of a member's calls.")
@args.option("--members", metavar="M,M...", help="--emit series: only these members.")
@args.option("--binary", "binary_mode", is_flag=True,
              help="PATHs are built modules (.ko, .ko.xz, ...): count indirect and static calls.")
def ops_cmd(paths, struct_name, as_json, emit_kind, instance, prefix, output, branch, group, members,
            binary_mode):
    """Census of an ops table in C source (PATH: files or directories), with a devirtualization plan.

    With --binary, PATHs are kernel modules and the census counts indirect calls through retpoline
    thunks and static-call sites per function.
    """
    if binary_mode:
        if emit_kind or instance or prefix:
            raise args.UsageError("--emit, --instance and --prefix apply to C source, not to --binary")
        sys.exit(_binary(paths, as_json))
    if not struct_name:
        raise args.UsageError("--struct NAME is required (unless --binary)")
    if as_json and emit_kind in ("xmacro", "patch"):
        raise args.UsageError(f"--emit {emit_kind} prints a text artifact; it cannot be combined with --json")
    if instance and prefix:
        raise args.UsageError("give --instance or --prefix, not both")
    if emit_kind == "series":
        if as_json:
            raise args.UsageError("--emit series writes patches or commits; it cannot be combined with --json")
        if (output is None) == (branch is None):
            raise args.UsageError("--emit series needs --output DIR or --branch NAME (one of them)")
    elif output or branch or members:
        raise args.UsageError("--output, --branch and --members apply to --emit series")

    inputs, errors, _root = censusmod.load_inputs(paths)
    for e in errors:
        _err(e.path, e.problem)
    status = 2 if errors else 0
    if not inputs:
        sys.exit(2)
    try:
        c = censusmod.run_census(struct_name, inputs)
    except censusmod.CensusError as exc:
        _err(", ".join(paths), str(exc))
        sys.exit(2)
    for e in c.input_errors:
        _err(e.path, e.problem)
        status = 2
    if instance and instance not in {i.name for i in c.instances}:
        known = ", ".join(i.name for i in c.instances) or "none"
        _err(", ".join(paths), f"no instance {instance!r} of struct {struct_name} (instances: {known})")
        sys.exit(2)
    if status == 0 and c.mismatches:
        status = 1

    direct = plan.direct_targets(c, instance=instance, prefix=prefix)
    if emit_kind == "series":
        sys.exit(_series(c, paths, direct if (instance or prefix or len(c.instances) == 1) else {},
                         output, branch, group, members, status))
    if emit_kind == "xmacro":
        _write_raw(emit.emit_xmacro(c))
    elif emit_kind == "patch":
        if not direct:
            known = ", ".join(i.name for i in c.instances) or "none"
            _err(", ".join(paths), f"no single implementation to call directly; use --instance or --prefix "
                 f"(instances: {known})")
            sys.exit(2)
        diff, notes = emit.emit_patch(c, direct)
        header = "".join(f"kmodsim: ops: {n}\n" for n in notes)
        _write_raw((header + "\n" if header else "") + diff)
    elif emit_kind == "plan":
        p = plan.make_plan(c, direct)
        if as_json:
            _write_raw(json.dumps(render.census_json(c, p), indent=2) + "\n")
        else:
            _write_raw(render.plan_text(c, p))
    elif as_json:
        _write_raw(json.dumps(render.census_json(c), indent=2) + "\n")
    else:
        _write_raw(render.census_text(c))
    sys.exit(status)


def _series(c, paths, direct, output, branch, group, members, status: int) -> int:
    """--emit series: the commits on a branch or as format-patch files; the notes on stderr."""
    from . import emit_series

    try:
        es = emit_series.emit_series(c, direct, group, [m for m in (members or "").split(",") if m] or None)
        root = str(censusmod.parse.common_root(paths))
        if branch:
            written = emit_series.write_branch(es, root, branch)
        else:
            written = emit_series.write_patches(es, output)
    except emit_series.EmitError as exc:
        error(str(exc))
        return 2
    for n in es.notes:
        sys.stderr.write(f"kmodsim: ops: {n}\n")
    where = f"branch {branch}" if branch else output
    _write_raw(f"{len(written)} commits ({where}):\n" + "".join(
        f"  {i:>3}  {cm.subject}\n" for i, cm in enumerate(es.commits, 1)))
    return status


def _module_files(paths) -> tuple[list[Path], list[tuple[str, str]]]:
    files: list[Path] = []
    errors: list[tuple[str, str]] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(MODULE_SUFFIXES))
            if not found:
                errors.append((arg, "no kernel modules (*.ko, *.ko.xz, ...) in this directory"))
            files.extend(found)
        else:
            files.append(p)
    return files, errors


def _binary(paths, as_json: bool) -> int:
    files, errors = _module_files(paths)
    reports = []
    for f in files:
        try:
            reports.append(binmod.analyze_path(f))
        except binmod.ElfError as exc:
            errors.append((str(f), str(exc)))
        except OSError as exc:
            errors.append((str(f), exc.strerror or str(exc)))
    for path, problem in errors:
        _err(path, problem)
    if as_json:
        doc = {
            "schema": "kmodsim.ops.binary/1",
            "modules": [r.to_json() for r in reports],
            "input_errors": [{"path": p, "problem": m} for p, m in errors],
        }
        _write_raw(json.dumps(doc, indent=2) + "\n")
    elif reports:
        _write_raw(binmod.binary_text(reports))
    return 2 if errors else 0
