"""``kmodsim verify --kernel KDIR [--vmlinuz FILE] --script FILE [--json] [--compare]``: run the
script on the real kernel under QEMU and report what it did, in ``kmodsim load``'s shape; with
``--compare``, diff it against the model step by step."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, EXIT_FINDINGS, EXIT_OK, dump_json, error
from .load import prepare, script_options


def image_for(kernel, vmlinuz: str | None) -> str:
    if vmlinuz:
        return vmlinuz
    from ..debian import DebianError, kernel_image

    if not kernel.release:
        error("the kernel's release is unknown: give --vmlinuz")
        raise SystemExit(EXIT_ERROR)
    try:
        return kernel_image(kernel.release)
    except DebianError as exc:
        error(f"cannot fetch the kernel image for {kernel.release} (give --vmlinuz): {exc}")
        raise SystemExit(EXIT_ERROR) from None


@args.command("verify")
@script_options
@args.option("--vmlinuz", type=args.path,
              help="Kernel image to boot (default: Debian's linux-image-<release>, fetched and cached).")
@args.option("--compare", is_flag=True, help="Diff the real kernel against the model; exit 1 on any difference.")
@args.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds allowed for the boot.")
def verify_cmd(kernel_path: str, config: tuple[str, ...], modules_dir: str | None, script: str, as_json: bool,
               profile_name: str | None, kmod_version: int | None, vmlinuz: str | None, compare: bool,
               timeout: float) -> None:
    """Run SCRIPT on the real kernel under QEMU (qemu-system-x86_64, TCG): a busybox initramfs and a
    static helper making one finit_module/delete_module call per step.

    Exit status: 0 ran (and, with --compare, model == kernel), 1 differences, 2 usage, input or
    boot error.
    """
    from ..oracle import OracleError
    from ..oracle.boot import ModuleFileError, verify
    from ..render.loader import compare_text, load_text, run_json

    kernel, profile, steps = prepare(kernel_path, script, modules_dir, profile_name, config, kmod_version)
    image = image_for(kernel, vmlinuz)
    try:
        run = verify(kernel, profile, steps, image, timeout=timeout, compare=compare)
    except ModuleFileError as exc:  # names the module file itself
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    except OracleError as exc:
        error(f"{image}: {exc}")
        raise SystemExit(EXIT_ERROR) from None
    diffs = run.differences or []
    if as_json:
        dump_json(run_json(run))
    else:
        args.echo(load_text(run), nl=False)
        if compare:
            args.echo(compare_text(diffs, len(steps)), nl=False)
    raise SystemExit(EXIT_FINDINGS if diffs else EXIT_OK)
