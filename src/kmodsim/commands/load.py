"""``kmodsim load --kernel KDIR [--modules TREE] --script FILE [--json]``: what the kernel's loader
would do with a script of insmod/rmmod/modprobe steps (the model of kmodsim.loader)."""

from __future__ import annotations

from .. import args
from .common import EXIT_ERROR, EXIT_OK, config_option, dump_json, error, kernel_option, load_target, warn


def script_options(f):
    from .depmod import _kmod_version

    f = args.option("--kmod-version", metavar="30|34", default=None, callback=_kmod_version,
                    help="modprobe steps as this kmod's depmod and modprobe do them (34: weak dependencies "
                         "reported; default: the machine's depmod --version if 30 or 34, else 34).")(f)
    f = args.option("--profile", "profile_name", default=None, metavar="SERIES",
                     help="Loader profile (6.1, 6.12); default: from the kernel's release.")(f)
    f = args.option("--json", "as_json", is_flag=True, help="Machine-readable result.")(f)
    f = args.option("--script", "-s", "script", required=True, type=args.path,
                     help="One command a line: insmod PATH [args], rmmod NAME, modprobe NAME [args].")(f)
    f = args.option("--modules", "-m", "modules_dir", type=args.path,
                     help="Module tree for modprobe: the modules depmod takes, dependencies as "
                          "depmod writes them into modules.dep.")(f)
    f = config_option(f)
    return kernel_option()(f)


def prepare(kernel_path: str, script: str, modules_dir: str | None, profile_name: str | None,
            config: tuple[str, ...] = (), kmod_version: int | None = None):
    """(kernel, profile, resolved steps); exits 2 with one line on bad input."""
    from ..errors import Error
    from ..loader.run import prepare as prepare_run

    target = load_target(kernel_path)
    try:
        profile, steps = prepare_run(target, script, modules_dir, profile_name, list(config) or None, kmod_version)
    except Error as exc:
        error(str(exc))
        raise SystemExit(EXIT_ERROR) from None
    if not profile_name:  # the target's own profile: say so when it is not a verified one
        for w in target.warnings:
            warn(w)
    kernel = target.kernel
    assert kernel is not None
    return kernel, profile, steps


@args.command("load")
@script_options
@args.option("--vmlinuz", type=args.path, default=None,
             help="The kernel's image: module signatures are checked against the keys built into it "
                  "(default: taken as good when --kernel is a headers directory).")
def load_cmd(kernel_path: str, config: tuple[str, ...], modules_dir: str | None, script: str, as_json: bool,
             profile_name: str | None, kmod_version: int | None, vmlinuz: str | None) -> None:
    """Replay SCRIPT on a model of the kernel's load_module()/delete_module(): per step the errno,
    the exact kernel log lines, the taints, and /proc/modules with each module's size (from the
    footprint model of the module's memory layout, as `kmodsim footprint` computes it).

    Exit status: 0 the script ran (whatever its steps returned), 2 usage or input error.
    """
    from ..errors import Error
    from ..loader.run import replay
    from ..render.loader import load_text, run_json

    kernel, profile, steps = prepare(kernel_path, script, modules_dir, profile_name, config, kmod_version)
    if vmlinuz:
        try:
            kernel.image_keys(vmlinuz)
        except Error as exc:
            error(str(exc))
            raise SystemExit(EXIT_ERROR) from None
    run = replay(kernel, steps, profile)
    if as_json:
        dump_json(run_json(run))
    else:
        args.echo(load_text(run), nl=False)
    raise SystemExit(EXIT_OK)
