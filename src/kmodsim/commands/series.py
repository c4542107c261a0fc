"""``kmodsim series --src DIR --kernel K (BASE..TIP | --patches F...)``: every step of a patch
series applied, built with kbuild, checked and measured."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, dump_json, error, warn


@args.command("series")
@args.argument("revisions", required=False, help="A git range of DIR (instead of --patches).")
@args.option("--src", "src", required=True, type=args.path, metavar="DIR",
             help="The tree the series applies to (module source or a kernel tree); never modified.")
@args.option("--kernel", "-k", "kernel_path", required=True, type=args.path, metavar="KDIR",
             help="Target kernel: a headers or build directory (the modules are built against it).")
@args.option("--patches", "-p", "patches", multiple=True, type=args.path, metavar="FILE|DIR",
             help="The series as patch files (repeatable, in order): git format-patch files or their "
                  "directory, an mbox, a quilt directory or its series file.")
@args.option("--modules", "-m", "modules", multiple=True, type=args.path, metavar="PATH",
             help="A module directory of DIR to build (repeatable; default: the directories the series "
                  "touches that hold a Kbuild or Makefile).")
@args.option("--struct", "struct", metavar="NAME",
             help="An ops table (struct NAME) to take the census of at each step, as kmodsim ops does.")
@args.option("--census", "census", multiple=True, type=args.path, metavar="PATH",
             help="Where the census reads C source (repeatable, relative to DIR; default: the module directories).")
@args.option("--expect", "expect", multiple=True, metavar="METRIC=down|up[,...]",
             help="Flag a step where a metric moves the other way: calls, static_calls, null_tests, "
                  "assignments, members (the ops census: --struct) or size (the modules' total).")
@args.option("--with", "with_modules", multiple=True, type=args.path, metavar="PATH",
             help="Modules of the target the series' modules use (files or directories; repeatable): "
                  "checked together with each step's modules.")
@args.option("--reorder", is_flag=True,
             help="Search an order of the patches in which every step is good; print it, or the proof "
                  "that none exists.")
@args.option("--jobs", "-j", type=int, default=None, help="make -j (default: all cores).")
@args.option("--json", "as_json", is_flag=True)
@args.option("--times", is_flag=True,
             help="Add each step's build time (the output then differs from run to run).")
def series_cmd(revisions: str | None, src: str, kernel_path: str, patches: tuple[str, ...],
               modules: tuple[str, ...], struct: str | None, census: tuple[str, ...], expect: tuple[str, ...],
               with_modules: tuple[str, ...], reorder: bool, jobs: int | None, as_json: bool, times: bool) -> None:
    """Check every step of a series: does it apply, build (kbuild M= against KDIR, one build tree
    reused so only what changed recompiles), link (kmodsim check: new findings against the step
    before), and what moved (exports between modules, each module's /proc/modules size; with
    --struct, the ops census: members, calls through the table, static calls, NULL tests, assignments).

    With --reorder, also an order of the patches in which every step is good (the given one when it
    is), or the proof that none exists, and the trees built to find it.

    Exit status: 0 every step good, 1 a step does not apply, build, adds a link error or moves an
    --expect metric the wrong way (with --reorder: of the given order), 2 usage or input error.
    """
    from ..errors import Error
    from ..render.series import series_json, series_text
    from ..series import SeriesRequest, run_series

    try:
        res = run_series(SeriesRequest(src, kernel_path, revisions, patches, modules, jobs, progress=None,
                                       struct=struct, census_paths=census, expect=expect,
                                       with_modules=with_modules, reorder=reorder))
    except Error as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    for note in res.notes:
        warn(note)
    if as_json:
        dump_json(series_json(res, times))
    else:
        args.echo(series_text(res, times))
    raise SystemExit(EXIT_OK if res.bisectable else EXIT_FINDINGS)
