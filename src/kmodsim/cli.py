"""Command line entry point.

The CLI is thin: each sub-command lives in its own module (``kmodsim.commands.*`` or a
subsystem's ``cli`` module) and is imported only when it is run, so ``kmodsim scan`` on a warm
cache does not pay for importing the C parser or the terminal renderer.

Exit codes everywhere: 0 clean, 1 findings, 2 usage or input error.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click.Command
COMMANDS: dict[str, str] = {
    "inspect": "kmodsim.commands.inspect:inspect_cmd",
    "ldd": "kmodsim.commands.ldd:ldd_cmd",
    "scan": "kmodsim.commands.scan:scan_cmd",
    "check": "kmodsim.commands.check:check_cmd",
    "footprint": "kmodsim.commands.footprint:footprint_cmd",
    "ops": "kmodsim.ops.cli:ops_cmd",
    "fetch-kernel": "kmodsim.commands.fetch:fetch_cmd",
    "depmod": "kmodsim.commands.depmod:depmod_cmd",
    "why": "kmodsim.commands.deps:why_cmd",
    "deps": "kmodsim.commands.deps:deps_cmd",
    "load": "kmodsim.commands.load:load_cmd",
    "verify": "kmodsim.commands.verify:verify_cmd",
}

HELP = {
    "inspect": "Show what a module exports, imports and declares (like modinfo).",
    "ldd": "Resolve a module's imports against a kernel (like ldd for a .ko).",
    "scan": "Read every module of a tree (parallel, cached) and summarise it.",
    "check": "modpost-class link checks across a set of modules, with an allowlist.",
    "footprint": "What each module costs in RAM, as /proc/modules shows it.",
    "ops": "Census of an ops table in C source, with a devirtualization plan.",
    "fetch-kernel": "Fetch and unpack a Debian kernel package (cached, never installed).",
    "depmod": "depmod with kmod's options: modules.dep & co. byte-identical, cycles with their symbols.",
    "why": "Which symbols make module A need module B (directly or through a chain).",
    "deps": "The dependency tree of a module, with the symbols behind each edge.",
    "load": "Model the kernel's module loader on an insmod/rmmod/modprobe script.",
    "verify": "Run a load script on the real kernel under QEMU; --compare with the model.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        mod_name, attr = target.split(":")
        return getattr(importlib.import_module(mod_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kmodsim")
def main() -> None:
    """kmodsim: model, check and verify how Linux kernel modules link and load."""
