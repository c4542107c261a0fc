"""``kmodsim fetch-kernel``: a Debian kernel package, downloaded and unpacked into the cache."""

from __future__ import annotations

import shlex

import click

from .common import EXIT_ERROR, dump_json, error


@click.command("fetch-kernel")
@click.option("--package", "package", default=None,
              help="Image package, e.g. linux-image-6.12.117+deb12-amd64 (default: what --meta depends on).")
@click.option("--meta", default="linux-image-amd64", show_default=True, help="Meta-package to follow.")
@click.option("--shell", "as_shell", is_flag=True, help="Print KMODSIM_* variable assignments for eval.")
@click.option("--json", "as_json", is_flag=True)
def fetch_cmd(package: str | None, meta: str, as_shell: bool, as_json: bool) -> None:
    """Fetch a Debian kernel image (apt-get download, cached; never installed) and its headers."""
    from ..debian import DebianError, DebianKernel, image_package

    try:
        k = DebianKernel(package or image_package(meta))
        headers = k.headers()
    except DebianError as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    info = {"package": k.package, "kver": k.kver, "root": k.root, "modules": k.modules_dir,
            "vmlinuz": k.vmlinuz, "headers": headers}
    if as_json:
        dump_json(info)
    elif as_shell:
        for key, val in info.items():
            click.echo(f"KMODSIM_{key.upper()}={shlex.quote(val)}")
    else:
        for key, val in info.items():
            click.echo(f"{key + ':':<10}{val}")
