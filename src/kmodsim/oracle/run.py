"""Run a load script on a real kernel under QEMU and read back what the kernel did.

The guest is an initramfs (busybox-static, the one-syscall helper, the stripped modules, and an
``/init`` generated from the script). Before the first step /init sets ``/proc/sys/kernel/printk``
to 1 (only our markers reach the console) and empties the log with ``dmesg -c``; after each step it
prints the helper's result, ``dmesg -c``, ``/proc/modules`` and ``/proc/sys/kernel/tainted``
between ``@@KMS`` markers, then powers off.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from ..loader.script import Step
from .helper import HelperError, helper_binary
from .initramfs import build_initramfs
from .qemu_configs import QEMU_CONFIGS, QemuConfig

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_TS = re.compile(r"^\[\s*\d+\.\d+\] ")


class OracleError(Exception):
    pass


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def guest_init(steps: list[Step], paths: dict[str, str]) -> str:
    """The /init shell script. ``paths``: host path -> guest path of every module file."""
    out = [
        "#!/bin/sh",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "echo 1 > /proc/sys/kernel/printk",
        "dmesg -c > /dev/null",
        'echo "@@KMS boot $(cat /proc/sys/kernel/tainted)"',
        "step() {",
        '  echo "@@KMS step $1"; shift',
        '  /kmsh "$@"',
        '  echo "@@KMS dmesg"; dmesg -c',
        '  echo "@@KMS modules"; cat /proc/modules',
        '  echo "@@KMS tainted $(cat /proc/sys/kernel/tainted)"',
        "}",
    ]
    for i, s in enumerate(steps):
        if s.op == "rmmod":
            out.append(f"step {i} rmmod {_q(s.plan[0][0])}")
        elif s.op == "insmod":
            name, path = s.plan[0]
            out.append(f"step {i} insmod {_q(name)} {_q(paths[path])} {_q(s.args)}")
        else:
            pairs = " ".join(f"{_q(n)} {_q(paths[p])}" for n, p in s.plan)
            out.append(f"step {i} modprobe {_q(s.args)} {pairs}")
    out += ['echo "@@KMS done"', "poweroff -f", "sleep 5", ""]
    return "\n".join(out)


class ModuleFileError(OracleError):
    """A module named by the script cannot be packed; the message starts with its path."""


def strip_module(path: str, dest: str) -> bytes:
    """A plain copy without debug info (``strip --strip-debug``), as Debian ships modules.

    Compressed modules (.ko.xz, .ko.zst, .ko.gz) are decompressed first, with kmodsim's reader and
    its size limit: the guest loads plain ELF, whatever the kernel's CONFIG_MODULE_DECOMPRESS.
    """
    from ..module import MODULE_SIG_STRING, ModuleError, read_image

    strip = shutil.which("strip")
    if strip is None:
        raise OracleError("strip: not installed (binutils)")
    try:
        buf, fmt, _size = read_image(path)
    except ModuleError as exc:
        raise ModuleFileError(str(exc)) from None
    if bytes(buf[-len(MODULE_SIG_STRING):]) == MODULE_SIG_STRING:
        # a signed module (Debian's are shipped without debug info) is packed as it is: strip would
        # drop the appended signature, and the kernel would taint on it ("module verification failed")
        data = bytes(buf)
        if not fmt:
            buf.close()
        with open(dest, "wb") as f:
            f.write(data)
        return data
    src = path
    if fmt:
        src = dest + ".elf"
        with open(src, "wb") as f:
            f.write(buf)
    else:
        buf.close()
    p = subprocess.run([strip, "--strip-debug", "-o", dest, src], capture_output=True, text=True)
    if p.returncode != 0:
        raise ModuleFileError(f"{path}: strip --strip-debug: {p.stderr.strip()}")
    with open(dest, "rb") as f:
        return f.read()


def parse_console(text: str, steps: list[Step], noise: tuple[str, ...] = ()) -> dict:
    """The marked console output -> per-step calls, messages, modules, tainted."""
    lines = [ln.rstrip("\r") for ln in text.replace("\r\n", "\n").split("\n")]
    noise_re = [re.compile(n) for n in noise]
    boot = None
    recs: dict[int, dict] = {}
    cur = None
    section = None
    done = False
    for ln in lines:
        i = ln.find("@@KMS ")
        if i >= 0:
            words = ln[i + 6:].split()
            if not words:
                continue
            tag = words[0]
            if tag == "boot":
                boot = int(words[1])
            elif tag == "step":
                cur = recs[int(words[1])] = {"calls": [], "messages": [], "modules": [], "tainted": None}
                section = "calls"
            elif tag == "call" and cur is not None:
                cur["calls"].append({"module": words[1], "errno": int(words[2])})
            elif tag == "skip" and cur is not None:
                cur["calls"].append({"module": words[1], "skipped": True, "errno": 0})
            elif tag == "open" and cur is not None:
                raise OracleError(f"guest could not open a module file (errno {words[1]})")
            elif tag in ("dmesg", "modules"):
                section = tag
            elif tag == "tainted" and cur is not None:
                cur["tainted"] = int(words[1])
                section = None
            elif tag == "done":
                done = True
            continue
        if cur is None or section not in ("dmesg", "modules") or not ln.strip():
            continue
        if section == "dmesg":
            msg = _TS.sub("", ln)
            if not any(r.search(msg) for r in noise_re):
                cur["messages"].append(msg)
        else:
            cur["modules"].append(parse_proc_modules_line(ln))
    if boot is None:
        raise OracleError("the guest never reached /init (boot failed); console tail:\n" + _tail(text))
    if not done or len(recs) != len(steps):
        raise OracleError(f"the guest stopped after {len(recs)} of {len(steps)} steps; console tail:\n"
                          + _tail(text))
    return {"boot_tainted": boot, "steps": [recs[i] for i in range(len(steps))]}


def parse_proc_modules_line(ln: str) -> dict:
    """``name size refcnt users state addr [(taints)]`` (kernel/module/procfs.c:m_show)."""
    f = ln.split()
    users = [] if f[3] == "-" else [u for u in f[3].split(",") if u]
    taints = f[6].strip("()") if len(f) > 6 else ""
    return {"name": f[0], "size": int(f[1]), "refcnt": int(f[2]), "users": users, "state": f[4],
            "taints": taints}


def _tail(text: str, n: int = 25) -> str:
    clean = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", text)
    return "\n".join(clean.strip().splitlines()[-n:])


def run_on_kernel(steps: list[Step], vmlinuz: str, timeout: float = 60.0, arch: str = "x86_64",
                  busybox: str | None = None, keep: str | None = None) -> dict:
    """Boot ``vmlinuz`` with the script's modules and run it. Returns
    ``{"boot_tainted", "steps": [{"calls", "messages", "modules", "tainted"}], "boot_seconds"}``."""
    cfg: QemuConfig = QEMU_CONFIGS[arch]
    qemu = shutil.which(cfg.binary)
    if qemu is None:
        raise OracleError(f"{cfg.binary}: not installed (apt-get install {cfg.package})")
    if not os.path.isfile(vmlinuz):
        raise OracleError(f"{vmlinuz}: no such kernel image")
    bb = busybox or next((b for b in BUSYBOX_CANDIDATES if os.path.isfile(b)), None)
    if bb is None:
        raise OracleError("busybox: not installed (apt-get install busybox-static)")
    try:
        helper = helper_binary()
    except HelperError as exc:
        raise OracleError(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="kmodsim-verify-") as tmp:
        paths: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for s in steps:
            for _name, p in s.plan:
                if p and p not in paths:
                    n = len(paths)
                    base = os.path.basename(p)
                    for suf in (".xz", ".zst", ".gz"):  # packed decompressed (strip_module)
                        base = base.removesuffix(suf)
                    guest = f"m/{n}/{base}"
                    paths[p] = "/" + guest
                    files[guest] = strip_module(p, os.path.join(tmp, f"{n}-{base}"))
        init = guest_init(steps, paths)
        initrd = os.path.join(tmp, "initrd.cpio")
        with open(initrd, "wb") as f:
            f.write(build_initramfs(init, bb, helper, files))
        if keep:
            shutil.copy(initrd, keep)
        cmd = [qemu, *cfg.args, "-m", cfg.memory, "-kernel", vmlinuz, "-initrd", initrd,
               "-append", cfg.cmdline]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode("utf-8", "replace")
            raise OracleError(f"QEMU did not finish within {timeout:g} s; console tail:\n{_tail(out)}") from None
        elapsed = time.monotonic() - t0
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0 and "@@KMS done" not in out:
        raise OracleError(f"{cfg.binary} exited with {p.returncode}: "
                          f"{p.stderr.decode('utf-8', 'replace').strip()[-500:]}\n{_tail(out)}")
    res = parse_console(out, steps, cfg.noise)
    res["boot_seconds"] = round(elapsed, 2)
    return res
