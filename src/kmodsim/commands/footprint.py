"""``kmodsim footprint --kernel KDIR FILE...``: the RAM each module takes, as /proc/modules shows it."""

from __future__ import annotations

import click

from .common import EXIT_ERROR, EXIT_OK, dump_json, error, kernel_option, load_kernel


def profile_for(release: str):
    """The layout profile of a kernel release (None: not modelled yet)."""
    from ..footprint import PROFILES
    from ..kernel import release_version

    v = release_version(release)
    if v is None or v[:2] < (6, 1):
        return None
    if v[:2] < (6, 4):  # 6.4 replaced the core/init layouts by mod_mem[] (ac3b43283923)
        return PROFILES["6.1"]
    return PROFILES["6.4"]


@click.command("footprint")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@kernel_option()
@click.option("--json", "as_json", is_flag=True)
def footprint_cmd(files: tuple[str, ...], kernel_path: str, as_json: bool) -> None:
    """Predict the size /proc/modules shows for each FILE once loaded, with a breakdown by memory
    type and the pages it takes."""
    from ..elf import ElfError
    from ..footprint import module_footprint
    from ..module import ModuleError, read_module

    kernel = load_kernel(kernel_path)
    prof = profile_for(kernel.release)
    if prof is None:
        error(f"{kernel_path}: no footprint model for kernel {kernel.release or '(unknown release)'} yet "
              f"(modelled: 6.1 and later)")
        raise SystemExit(EXIT_ERROR)
    status = EXIT_OK
    out = []
    for f in files:
        try:
            name = read_module(f).name
            out.append(module_footprint(f, prof, name))
        except (ModuleError, ElfError) as exc:
            error(str(exc) if isinstance(exc, ModuleError) else f"{f}: {exc}")
            status = EXIT_ERROR
    total_size = sum(x.size for x in out)
    total_pages = sum(x.pages for x in out)
    if as_json:
        dump_json({"profile": prof.name, "modules": [x.to_json() for x in out],
                   "total": {"size": total_size, "pages": total_pages}})
    else:
        kinds = [k for k in ("text", "rodata", "ro_after_init", "data", "other", "kallsyms")
                 if any(k in x.by_type for x in out)]
        click.echo(f"{'module':<24}{'size':>10}{'pages':>7}  " + "".join(f"{k:>14}" for k in kinds))
        for x in out:
            click.echo(f"{x.name:<24}{x.size:>10}{x.pages:>7}  "
                       + "".join(f"{x.by_type.get(k, 0):>14}" for k in kinds))
        click.echo(f"{'total':<24}{total_size:>10}{total_pages:>7}")
    raise SystemExit(status)
