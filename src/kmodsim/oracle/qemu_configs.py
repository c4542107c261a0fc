"""QEMU configurations as data, one per architecture (in the manner of the kernel's kunit_tool
``qemu_configs``): the emulator, its arguments, the kernel command line and the console."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QemuConfig:
    arch: str
    binary: str
    args: tuple[str, ...]
    cmdline: str
    package: str  # the Debian package providing ``binary``
    memory: str = "512"
    # kernel lines that may appear in dmesg between steps whatever a step does (asynchronous
    # noise); removed from the real kernel's messages before they are compared. Regexes.
    noise: tuple[str, ...] = ()
    # how a kprobe event names a function's first argument on this architecture (kprobetrace.rst)
    first_arg: str = "%di"


QEMU_CONFIGS: dict[str, QemuConfig] = {
    "x86_64": QemuConfig(
        arch="x86_64",
        binary="qemu-system-x86_64",
        # TCG (no KVM needed), one CPU, serial console on stdio, exit instead of rebooting
        args=("-accel", "tcg", "-smp", "1", "-nographic", "-no-reboot"),
        # deterministic output: quiet boot, panic -> immediate exit, no TSC watchdog, no KASLR;
        # no_timer_check: on a loaded host TCG can run too slowly for check_timer()
        # (arch/x86/kernel/apic/io_apic.c), which then panics "IO-APIC + timer doesn't work!"
        # (seen in CI with the host at load 9 on 2 cores); the parameter skips that probe
        cmdline="console=ttyS0 quiet panic=-1 tsc=unstable nokaslr no_timer_check",
        package="qemu-system-x86",
        noise=(r"^random: crng init done$", r"^clocksource: ", r"^tsc: "),
    ),
}
