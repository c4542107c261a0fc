"""``kmodsim depmod``: kmod's depmod, with the same options and byte-identical modules.* files."""

from __future__ import annotations

import sys

from .. import args
from .common import EXIT_ERROR, EXIT_OK, error, max_size_option

DEPMOD_FAILED = 1  # depmod's EXIT_FAILURE: a cycle, or an error that stops it

def _kmod_version(ctx: None, param: args.Param, value: str | None) -> int | None:
    if value is None:
        return None
    from ..dependencies.kmod_versions import KMOD_VERSIONS

    if not value.isdigit() or int(value) not in KMOD_VERSIONS:
        raise args.UsageError(f"--kmod-version: {value!r}: one of {', '.join(map(str, KMOD_VERSIONS))}")
    return int(value)


@args.command("depmod")
@args.option("-a", "--all", "all_", is_flag=True, help="Probe all modules (the default without MODULES).")
@args.option("-A", "--quick", is_flag=True, help="Only do the work if a module is newer than modules.dep.")
@args.option("-b", "--basedir", metavar="DIR", help="Use an image of a module tree: DIR/lib/modules/KVER.")
@args.option("-m", "--moduledir", metavar="DIR",
              help="kmod 34: the module directory below BASEDIR instead of lib/modules (a leading / is dropped).")
@args.option("-o", "--outdir", metavar="DIR",
              help="kmod 31+: write the files into DIR/lib/modules/KVER instead of BASEDIR/lib/modules/KVER.")
@args.option("-C", "--config", "config", multiple=True, metavar="PATH",
              help="Read depmod.d configuration from PATH (repeatable) instead of the default directories.")
@args.option("-e", "--errsyms", is_flag=True, help="Report symbols nobody supplies (needs -E or -F).")
@args.option("-E", "--symvers", metavar="Module.symvers", help="The kernel's symbols and CRCs (checks versions).")
@args.option("-F", "--filesyms", metavar="System.map", help="The kernel's symbols from a System.map.")
@args.option("-n", "--show", "--dry-run", "show", is_flag=True, help="Write the files to stdout only.")
@args.option("-P", "--symbol-prefix", "prefix", default="", metavar="C", help="Architecture symbol prefix.")
@args.option("-w", "--warn", is_flag=True, help="Warn on duplicates.")
@args.option("-v", "--verbose", count=True, help="Accepted for compatibility.")
@args.option("-u", "--unresolved-error", is_flag=True, hidden=True)
@args.option("-q", "--quiet", is_flag=True, hidden=True)
@args.option("-r", "--root", is_flag=True, hidden=True)
@args.option("--map", "map_", is_flag=True, hidden=True)
@args.option("--kmod-version", metavar="30|34", default=None, callback=_kmod_version,
              help="Mirror the depmod of this kmod version (default: the machine's depmod --version if "
                   "30 or 34, else 34).")
@args.option("--bin", "bins", is_flag=True,
              help="Also write the .bin indexes modprobe reads (kmod's index format; slower).")
@args.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")
@args.option("--no-cache", is_flag=True, help="Neither read nor write kmodsim's cache.")
@args.option("--cache-dir", type=args.path, default=None,
              help="Cache directory (default: $KMODSIM_CACHE/depmod-v1).")
@args.option("--explain-cycles", is_flag=True,
              help="After depmod's cycle lines, list every dependency cycle with the symbols behind each edge.")
@args.option("--cycles-limit", type=args.IntRange(1), default=1000, show_default=True,
              help="With --explain-cycles, list at most this many cycles.")
@max_size_option
@args.argument("kver", required=False)
@args.argument("modules", nargs=-1)
def depmod_cmd(all_: bool, quick: bool, basedir: str | None, moduledir: str | None, outdir: str | None,
               config: tuple[str, ...], errsyms: bool,
               symvers: str | None, filesyms: str | None, show: bool, prefix: str, warn: bool, verbose: int,
               unresolved_error: bool, quiet: bool, root: bool, map_: bool, kmod_version: int | None,
               bins: bool, jobs: int | None,
               no_cache: bool,
               cache_dir: str | None, explain_cycles: bool, cycles_limit: int, max_size: int, kver: str | None,
               modules: tuple[str, ...]) -> None:
    """Compute module dependencies as kmod's depmod does and write modules.dep, modules.alias,
    modules.softdep, modules.symbols and modules.devname (kmod 34: and modules.weakdep) into
    BASEDIR/lib/modules/KVER, byte-identical to the depmod of --kmod-version (30: Debian 12's,
    34: Debian 13's); with --bin also the .bin indexes modprobe reads (not written otherwise).
    depmod's messages are printed in its own words and order; a dependency cycle stops the run
    as it stops depmod (--explain-cycles adds every cycle with the symbols behind each edge).
    With -n the files go to stdout. MODULES (absolute paths, after KVER) limit the run to them,
    unless -a. On a terminal, a progress bar while modules are read.

    Exit status, depmod's: 0 written, 1 depmod stopped (a dependency cycle, nothing written; or
    its 'depmod: FATAL: ...' and 'Bad version passed' errors: a missing tree or symbol file, a
    module argument that is not absolute or not there, -P with more than one character).
    kmodsim's own: 2 for a command-line usage error, or an unreadable module (one line
    'kmodsim: <file>: <problem>' for it; it is still listed, as depmod lists it)."""
    import os

    from ..dependencies import (
        DepmodError,
        depmod_result,
        is_version_number,
        plan,
        text_files,
        tree_dirname,
        up_to_date,
        write_outputs,
    )
    from ..dependencies.kmod_versions import kmod_version as behaviours
    from ..messages import DepmodMessage
    from ..render.depmod import depmod_stderr

    kmod = behaviours(kmod_version)
    given = [opt for opt, on in (("--unresolved-error", unresolved_error), ("--quiet", quiet), ("--root", root),
                                 ("--map", map_)) if on]
    if kmod.deprecated_options:  # kmod 30's getopt loop: a warning each, in this order
        sys.stderr.write(depmod_stderr(DepmodMessage("deprecated-option", (o,)) for o in given))
    elif given:  # kmod 34, af54b73: getopt_long() refuses them (kmodsim says so in its words)
        error(f"{given[0]}: not an option of kmod {kmod.version}'s depmod")
        raise SystemExit(EXIT_ERROR)
    for opt, value, ok in (("--moduledir", moduledir, kmod.moduledir), ("--outdir", outdir, kmod.outdir)):
        if value is not None and not ok:
            error(f"{opt}: not an option of kmod {kmod.version}'s depmod (--kmod-version 34)")
            raise SystemExit(EXIT_ERROR)

    # do_depmod() (kmod 30, tools/depmod.c): these stop depmod with exit 1, in its words
    if len(prefix) > 1:
        sys.stderr.write(depmod_stderr([DepmodMessage("prefix-too-long")]))
        raise SystemExit(DEPMOD_FAILED)
    if kver is not None and not is_version_number(kver):
        sys.stderr.write(depmod_stderr([DepmodMessage("bad-version", (kver,))]))
        raise SystemExit(DEPMOD_FAILED)
    kver = kver or os.uname().release
    dirname = tree_dirname(basedir, kver, moduledir)
    # kmod 31+ (1712a15): the files go to OUTDIR/<moduledir>/KVER (the output tree, made if missing)
    outdirname = tree_dirname(outdir, kver, moduledir) if outdir is not None else dirname
    if quick:
        if show:
            raise SystemExit(EXIT_OK)
        said: list[DepmodMessage] = []
        fresh = up_to_date(dirname, said)
        sys.stderr.write(depmod_stderr(said))
        if fresh:
            raise SystemExit(EXIT_OK)
    try:
        pl = plan(basedir, kver, files=list(modules) if modules and not all_ else None, symvers=symvers,
                  system_map=filesyms, config_paths=list(config) if config else None, stat=not no_cache,
                  dirname=dirname, kmod=kmod)
        res = depmod_result(pl, errsyms=errsyms, prefix=prefix, warn=warn, show=show, bins=bins,
                            cycles_limit=cycles_limit, jobs=jobs, use_cache=not no_cache,
                            cache_dir=cache_dir, max_size=max_size, explain_cycles=explain_cycles,
                            progress=None)
    except DepmodError as exc:
        sys.stderr.write(depmod_stderr(exc.depmod))
        raise SystemExit(DEPMOD_FAILED) from None
    if res.files is not None:
        if show:
            out = sys.stdout.buffer
            for name in text_files(kmod):
                out.write(res.files[name])
            out.flush()
        else:
            try:
                if kmod.outdir:  # depmod_output(): mkdir_p(outdirname, 0755) since kmod 31 (1712a15)
                    os.makedirs(outdirname, 0o755, exist_ok=True)
                write_outputs(outdirname, res.files)
            except OSError as exc:
                sys.stderr.write(depmod_stderr(res.messages))
                error(f"{exc.filename or outdirname}: {exc.strerror or exc}")
                raise SystemExit(EXIT_ERROR) from None
    sys.stderr.write(depmod_stderr(res.messages))
    raise SystemExit(res.status)


# Option errors as kmod's depmod gives them: getopt_long()'s own line, and EXIT_FAILURE.
depmod_cmd.getopt_prog = "depmod"
depmod_cmd.getopt_status = DEPMOD_FAILED
