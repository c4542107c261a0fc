"""``kmodsim scan PATH...``: read every module of one or more trees (parallel, cached)."""

from __future__ import annotations

from .. import args
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    config_option,
    dump_json,
    error,
    input_resolver,
    max_size_option,
    scheduler_option,
    warn_ignored,
)


@args.command("scan")
@args.argument("paths", nargs=-1, required=True, type=args.path)
@args.option("--jobs", "-j", type=int, default=None, help="Worker processes (default: all cores).")
@args.option("--no-cache", is_flag=True, help="Neither read nor write the scan cache.")
@args.option("--cache-dir", type=args.path, default=None,
              help="Cache directory (default: $KMODSIM_CACHE/scan or ~/.cache/kmodsim/scan).")
@args.option("--json", "as_json", is_flag=True, help="Per-module summary as JSON.")
@args.option("--stats", is_flag=True,
              help="Also say on stderr how many modules came from the cache and how many were read.")
@scheduler_option("each PATH (its discovery and its modules)")
@config_option
@max_size_option
def scan_cmd(paths: tuple[str, ...], jobs: int | None, no_cache: bool, cache_dir: str | None,
             as_json: bool, stats: bool, scheduler: str | None, config: tuple[str, ...], max_size: int) -> None:
    """Read every module under PATH (a module tree, a root with lib/modules/<kver>, or files). A
    tree's modules are the ones depmod takes (depmod.d, updates/ first, no .ko.gz).

    The output depends on the modules only: the same with a cold or a warm cache, with any --jobs
    (--stats tells the cache's part, on stderr), and with --scheduler, where each PATH is one task
    on the cluster (its worker's scan cache, --jobs 1 unless given). A PATH may name a Debian
    kernel package, debian:linux-image-KVER[=VERSION]: fetched into the cache and its root read
    (with --scheduler, by the task's worker).
    """
    from ..errors import Error
    from ..render.modules import scan_json, scan_stats, scan_text
    from ..tree import scan

    try:  # (an Error here is the cluster's: --scheduler unusable, a task that killed its workers)
        res = scan(paths, jobs=jobs, use_cache=not no_cache, cache_dir=cache_dir, max_size=max_size,
                   config_paths=config or None, scheduler=scheduler, resolve=input_resolver(paths))
    except Error as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    warn_ignored(res.ignored)
    for e in res.errors:
        error(str(e))
    if as_json:
        dump_json(scan_json(res))
    else:
        args.echo(scan_text(res))
    if stats:
        error(scan_stats(res))
    raise SystemExit(EXIT_ERROR if res.errors else EXIT_OK)
