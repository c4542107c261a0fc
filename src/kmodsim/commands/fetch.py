"""``kmodsim fetch-kernel``: a Debian kernel package, downloaded and unpacked into the cache."""

from __future__ import annotations

import shlex

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
    from ..debian import DebianError, DebianKernel, image_package

    flavour = {None: "amd64", "amd64": "amd64", "i386": "686", "armhf": "armmp", "arm64": "arm64",
               "s390x": "s390x", "ppc64el": "powerpc64le", "mips64el": "5kc-malta", "mipsel": "4kc-malta"}
    try:
        if not package and not meta:
            if arch not in flavour:
                raise DebianError(f"--arch {arch}: name the image with --package or --meta")
            meta = f"linux-image-{flavour[arch]}"
        k = DebianKernel(package or image_package(meta or "", arch), arch)
        headers = k.headers()
    except DebianError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    info = {"package": k.package, "arch": arch or "", "kver": k.kver, "root": k.root, "modules": k.modules_dir,
            "vmlinuz": k.vmlinuz, "headers": headers}
    if as_json:
        dump_json(info)
    elif as_shell:
        for key, val in info.items():
            args.echo(f"KMODSIM_{key.upper()}={shlex.quote(val)}")
    else:
        for key, val in info.items():
            args.echo(f"{key + ':':<10}{val}")
