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
from typing import Any

from ..errors import Error
from ..loader.result import Call, Formed, ModuleState, Run
from ..loader.script import Step
from .helper import HelperError, helper_binary
from .initramfs import build_initramfs
from .qemu_configs import QEMU_CONFIGS, QemuConfig

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
_TS = re.compile(r"^\[\s*\d+\.\d+\] ")


class OracleError(Error):
    pass


def _q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


# The module-size probe: a kprobe event on do_init_module() (kernel/module/main.c), which every
# load that got as far as a formed module passes — before the module's own init runs, so its sizes
# are seen even when init then fails (kvm-intel under TCG). Its fields: the name and the sizes of
# struct module's memory, at offsets read from the kernel's BTF (they depend on its .config).
TRACEFS = "/sys/kernel/tracing"
PROBE_EVENT = "kmodsim/formed"
# include/linux/module.h, enum mod_mem_type (6.4+, commit ac3b43283923): the order of mod->mem[]
MOD_MEM_TYPES = ("text", "data", "rodata", "ro_after_init", "init_text", "init_data", "init_rodata")


# init memory: 6.1's init_layout, 6.4+'s MOD_INIT_* types; everything else stays after init
_INIT_LABELS = ("init", "init_text", "init_data", "init_rodata")


def formed_sizes(hit: dict) -> Formed:
    """A probe hit -> the formed module: core and init bytes as the footprint model counts them,
    and the raw fields read from struct module."""
    sizes = hit["sizes"]
    return Formed(hit["name"], sum(v for k, v in sizes.items() if k not in _INIT_LABELS),
                  sum(v for k, v in sizes.items() if k in _INIT_LABELS), dict(sizes))


def kernel_run(kernel, profile, steps, raw: dict) -> Run:
    """The real kernel's run (:func:`run_on_kernel`'s raw answer) as a
    :class:`kmodsim.loader.result.Run`, like the model's: ``kmodsim verify``'s result, and what
    the kernel recordings of the tests keep."""
    from ..loader.run import run_of, step_result

    observed = bool(raw.get("probe"))
    recs = [step_result(s, r["calls"], r["messages"], r["modules"], r["tainted"],
                        [formed_sizes(f) for f in r.get("formed", [])] if observed else None)
            for s, r in zip(steps, raw["steps"], strict=True)]
    last = raw["steps"][-1] if raw["steps"] else {"modules": [], "tainted": raw["boot_tainted"]}
    notes = [f"booted in {raw['boot_seconds']} s", f"tainted at boot: {raw['boot_tainted']}"]
    if observed:
        notes.append("formed modules and their sizes seen by a kprobe on do_init_module() "
                     "(struct module offsets from the kernel's BTF)")
    elif raw.get("probe_problem"):
        notes.append(f"module sizes at do_init_module() not observed: {raw['probe_problem']}")
    return run_of("kernel", kernel, profile, recs, last["modules"], last["tainted"], notes, raw["boot_seconds"])


def module_probe_fields(vmlinuz: str) -> list[tuple[str, int, int]]:
    """(label, byte offset, size) of the fields of struct module the probe reads, from the BTF of
    ``vmlinuz``: ``name``, then ``core``/``init`` (``struct module_layout``, up to 6.3; also
    ``data`` where the kernel has a separate data layout) or one label per ``mem[]`` type (6.4+).
    Raises :class:`kmodsim.btf.BtfError` when the image has no usable BTF."""
    from ..btf import BtfError, vmlinux_btf

    btf = vmlinux_btf(vmlinuz)
    fields = [("name", *btf.offset_of("module", "name"))]
    if btf.has_field("module", "core_layout.size"):
        for label in ("core", "init", "data"):
            if btf.has_field("module", f"{label}_layout.size"):
                fields.append((label, *btf.offset_of("module", f"{label}_layout.size")))
    elif btf.has_field("module", "mem[0].size"):
        for i, label in enumerate(MOD_MEM_TYPES):
            if btf.has_field("module", f"mem[{i}].size"):
                fields.append((label, *btf.offset_of("module", f"mem[{i}].size")))
    else:
        raise BtfError("struct module has neither core_layout nor mem[]")
    return fields


def _probe_definition(fields: list[tuple[str, int, int]], first_arg: str) -> str:
    args = []
    for label, off, size in fields:
        kind = "string" if label == "name" else f"u{8 * size}"
        args.append(f"{label}=+{off}({first_arg}):{kind}")
    return f"p:{PROBE_EVENT} do_init_module " + " ".join(args)


def guest_init(steps: list[Step], paths: dict[str, str], probe: str | None = None) -> str:
    """The /init shell script. ``paths``: host path -> guest path of every module file; ``probe``:
    a kprobe event definition (:func:`_probe_definition`) whose hits are printed after each step."""
    out = [
        "#!/bin/sh",
        "mount -t proc proc /proc",
        "mount -t sysfs sysfs /sys",
        "echo 1 > /proc/sys/kernel/printk",
    ]
    if probe:
        event = f"{TRACEFS}/events/{PROBE_EVENT}/enable"
        out += [
            f"mount -t tracefs nodev {TRACEFS} 2>/dev/null",
            f"if echo {_q(probe)} > {TRACEFS}/kprobe_events && echo 1 > {event}; then",
            '  echo "@@KMS probe ok"',
            "else",
            '  echo "@@KMS probe failed"',
            "fi",
        ]
    out += [
        "dmesg -c > /dev/null",
        'echo "@@KMS boot $(cat /proc/sys/kernel/tainted)"',
        "step() {",
        '  echo "@@KMS step $1"; shift',
        '  /kmsh "$@"',
        '  echo "@@KMS dmesg"; dmesg -c',
        '  echo "@@KMS modules"; cat /proc/modules',
    ]
    if probe:
        out += [f'  echo "@@KMS formed"; cat {TRACEFS}/trace; echo > {TRACEFS}/trace']
    out += [
        '  echo "@@KMS tainted $(cat /proc/sys/kernel/tainted)"',
        "}",
    ]
    for i, s in enumerate(steps):
        if s.op == "rmmod":
            out.append(f"step {i} rmmod {_q(s.plan[0][0])}")
        elif s.op == "insmod":
            name, path = s.plan[0]
            out.append(f"step {i} {_force(s)}insmod {_q(name)} {_q(paths[path])} {_q(s.args)}")
        else:
            quads = " ".join(f"{_q(n)} {_q(paths[p] if p else '')} {_q(a)} {'b' if b else int(r)}"
                             for (n, p), a, r, b in zip(s.plan, s.plan_args, s.plan_required, s.plan_builtin,
                                                        strict=True))
            out.append(f"step {i} {_force(s)}modprobe {_q(s.module)} {quads}".rstrip())
    out += ['echo "@@KMS done"', "poweroff -f", "sleep 5", ""]
    return "\n".join(out)


def _force(step: Step) -> str:
    """The helper's ``-F FLAGS`` for a step with force options (finit_module() flags), else ``""``."""
    return f"-F {step.flags} " if step.flags else ""


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
    buf: Any  # an mmap of a plain file, the decompressed bytes of a compressed one
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
    probe = None  # None: not asked for; True/False: set up or not
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
            elif tag == "probe":
                probe = words[1] == "ok"
            elif tag == "step":
                cur = recs[int(words[1])] = {"calls": [], "messages": [], "modules": [], "tainted": None,
                                             "formed": []}
                section = "calls"
            elif tag == "call" and cur is not None:
                cur["calls"].append(Call(words[1], int(words[2])))
            elif tag == "ignored" and cur is not None and cur["calls"]:
                cur["calls"][-1] = cur["calls"][-1]._replace(ignored=True)
            elif tag == "skip" and cur is not None:
                cur["calls"].append(Call(words[1], 0, skipped=True))
            elif tag == "open" and cur is not None:
                raise OracleError(f"guest could not open a module file (errno {words[1]})")
            elif tag in ("dmesg", "modules", "formed"):
                section = tag
            elif tag == "tainted" and cur is not None:
                cur["tainted"] = int(words[1])
                section = None
            elif tag == "done":
                done = True
            continue
        if cur is None or section not in ("dmesg", "modules", "formed") or not ln.strip():
            continue
        if section == "formed":
            hit = parse_probe_line(ln)
            if hit is not None:
                cur["formed"].append(hit)
        elif section == "dmesg":
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
    return {"boot_tainted": boot, "probe": probe, "steps": [recs[i] for i in range(len(steps))]}


_PROBE_HIT = re.compile(r" formed: \([^)]*\) (.*)$")
_PROBE_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_probe_line(ln: str) -> dict | None:
    """A trace line of the probe -> ``{"name": ..., "sizes": {label: bytes}}`` (None otherwise):
    ``<task>-<pid> [cpu] flags ts: formed: (do_init_module+0x0/0x...) name="kvm_amd" core=... init=...``."""
    m = _PROBE_HIT.search(ln)
    if m is None:
        return None
    name, sizes = None, {}
    for key, val in _PROBE_FIELD.findall(m.group(1)):
        if key == "name":
            name = val.strip('"')
        else:
            try:
                sizes[key] = int(val, 0)
            except ValueError:
                return None
    return None if name is None else {"name": name, "sizes": sizes}


def parse_proc_modules_line(ln: str) -> ModuleState:
    """``name size refcnt users state addr [(taints)]`` (kernel/module/procfs.c:m_show)."""
    f = ln.split()
    users = [] if f[3] == "-" else [u for u in f[3].split(",") if u]
    taints = f[6].strip("()") if len(f) > 6 else ""
    return ModuleState(f[0], int(f[1]), int(f[2]), users, f[4], taints)


def _tail(text: str, n: int = 25) -> str:
    clean = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc", "", text)
    return "\n".join(clean.strip().splitlines()[-n:])


def pack_modules(steps: list[Step], dest: str) -> dict[str, str]:
    """The files the guest will load, made in ``dest``: host path -> packed copy (debug info
    stripped, decompressed; see :func:`strip_module`). The model of a verify run reads these same
    copies, so that what it predicts (the init layout's symbol table, for one) is of the file the
    kernel really loads."""
    packed: dict[str, str] = {}
    for s in steps:
        for _name, p in s.plan:
            if p and p not in packed:
                base = os.path.basename(p)
                for suf in (".xz", ".zst", ".gz"):
                    base = base.removesuffix(suf)
                d = os.path.join(dest, str(len(packed)))
                os.makedirs(d, exist_ok=True)
                packed[p] = os.path.join(d, base)
                strip_module(p, packed[p])
    return packed


def on_packed(steps: list[Step], packed: dict[str, str]) -> list[Step]:
    """The steps with each module path replaced by its packed copy: what the model must read to
    predict what the guest's kernel does with those copies."""
    import dataclasses

    return [dataclasses.replace(s, plan=[(n, packed.get(p, p)) for n, p in s.plan]) for s in steps]


def run_on_kernel(steps: list[Step], vmlinuz: str, timeout: float = 60.0, arch: str = "x86_64",
                  busybox: str | None = None, keep: str | None = None, probe: bool = True,
                  packed: dict[str, str] | None = None) -> dict:
    """Boot ``vmlinuz`` with the script's modules and run it. Returns ``{"boot_tainted", "probe",
    "probe_problem", "steps": [{"calls", "messages", "modules", "tainted", "formed"}], "boot_seconds"}``.

    With ``probe`` (and BTF in the image), ``formed`` lists every module that reached
    ``do_init_module()`` in the step, with the sizes of its memory (see :func:`module_probe_fields`);
    ``probe`` is then True if the guest could set the kprobe up. Without BTF the run goes on
    without it, and ``probe_problem`` says why. ``packed``: :func:`pack_modules`' copies to load
    (made here when not given)."""
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
        if packed is None:
            packed = pack_modules(steps, os.path.join(tmp, "packed"))
        paths: dict[str, str] = {}
        files: dict[str, bytes] = {}
        for n, (p, copy) in enumerate(packed.items()):
            guest = f"m/{n}/{os.path.basename(copy)}"
            paths[p] = "/" + guest
            with open(copy, "rb") as f:
                files[guest] = f.read()
        definition, problem = None, None
        if probe:
            from ..btf import BtfError

            try:
                definition = _probe_definition(module_probe_fields(vmlinuz), cfg.first_arg)
            except (BtfError, OSError) as exc:
                problem = str(exc)
        init = guest_init(steps, paths, definition)
        initrd = os.path.join(tmp, "initrd.cpio")
        with open(initrd, "wb") as f:
            f.write(build_initramfs(init, bb, helper, files))
        if keep:
            shutil.copy(initrd, keep)
        cmd = [qemu, *cfg.args, "-m", cfg.memory, "-kernel", vmlinuz, "-initrd", initrd,
               "-append", cfg.cmdline]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode("utf-8", "replace")
            raise OracleError(f"QEMU did not finish within {timeout:g} s; console tail:\n{_tail(out)}") from None
        elapsed = time.monotonic() - t0
    out = proc.stdout.decode("utf-8", "replace")
    if proc.returncode != 0 and "@@KMS done" not in out:
        raise OracleError(f"{cfg.binary} exited with {proc.returncode}: "
                          f"{proc.stderr.decode('utf-8', 'replace').strip()[-500:]}\n{_tail(out)}")
    res = parse_console(out, steps, cfg.noise)
    if definition and not res["probe"]:
        problem = "the guest could not set up the kprobe event (tracefs, CONFIG_KPROBE_EVENTS?)"
    res["probe_problem"] = problem
    res["boot_seconds"] = round(elapsed, 2)
    return res


def verify(kernel, profile, steps: list[Step], vmlinuz: str, timeout: float = 120.0,
           compare: bool = False) -> Run:
    """Run resolved ``steps`` on the real kernel ``vmlinuz`` under QEMU: the kernel's
    :class:`kmodsim.loader.result.Run`, like the model's (:func:`kmodsim.loader.run.replay`); with
    ``compare``, its
    ``differences`` from the model's run on the very files the guest loaded (stripped of debug
    info: the init layout holds the whole symbol table, so its size depends on that). Raises
    :class:`ModuleFileError` (names the module file) or :class:`OracleError`."""
    import tempfile

    from ..loader.run import compare as compare_runs
    from ..loader.run import replay

    if compare:  # the model checks signatures against the keys of the kernel booted
        kernel.image_keys(vmlinuz)
    with tempfile.TemporaryDirectory(prefix="kmodsim-verify-") as tmp:
        packed = pack_modules(steps, tmp)
        raw = run_on_kernel(steps, vmlinuz, timeout=timeout, packed=packed)
        run = kernel_run(kernel, profile, steps, raw)
        if compare:
            run = run._replace(differences=compare_runs(replay(kernel, on_packed(steps, packed), profile), run))
    return run
