"""``kmodsim fetch-kernel``: a Debian kernel package, downloaded and unpacked into the cache."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, dump_json, error


@args.command("fetch-kernel")
@args.option("--package", "package", default=None,
              help="Image package, e.g. linux-image-6.12.117+deb12-amd64 (default: what --meta depends on).")
@args.option("--meta", default=None, help="Meta-package to follow (default: linux-image-<flavour> of --arch).")
@args.option("--arch", default=None,
              help="Debian architecture (s390x, i386, armhf, ...): fetched with a private apt state, "
                   "nothing of the system's apt changes.")
@args.option("--shell", "as_shell", is_flag=True, help="Print KMODSIM_* variable assignments for eval.")
@args.option("--json", "as_json", is_flag=True)
def fetch_cmd(package: str | None, meta: str | None, arch: str | None, as_shell: bool, as_json: bool) -> None:
    """Fetch a Debian kernel image (apt-get download, cached; never installed) and its headers."""
    from ..debian import DebianError, fetch_kernel
    from ..render.fetch import fetch_json, fetch_shell, fetch_text

    try:
        k, headers = fetch_kernel(package, meta, arch)
    except DebianError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    if as_json:
        dump_json(fetch_json(k, headers))
    elif as_shell:
        args.echo(fetch_shell(k, headers))
    else:
        args.echo(fetch_text(k, headers))
