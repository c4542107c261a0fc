"""A minimal initramfs (cpio "newc", uncompressed — the kernel unpacks it as is) written directly,
without the cpio tool: busybox-static as /bin/busybox (and /init's shell), the helper as /kmsh, the
modules under /m/, and /init itself."""

from __future__ import annotations

import io
import os
import stat

NEWC_MAGIC = b"070701"


class CpioWriter:
    """Writes the ``newc`` format of the kernel's usr/gen_init_cpio (Documentation/driver-api/early-userspace)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        nb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        self.ino += 1
        hdr = NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)
        self.buf.write(hdr + nb)
        self.buf.write(b"\0" * (-(len(hdr) + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def close(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        out = self.buf.getvalue()
        return out + b"\0" * (-len(out) % 512)


def build_initramfs(init: str, busybox: str, helper: str, modules: dict[str, bytes]) -> bytes:
    """``modules``: guest path (under /m) -> file content."""
    w = CpioWriter()
    for d in ("bin", "dev", "proc", "sys", "m"):
        w.dir(d)
    with open(busybox, "rb") as f:
        w.file("bin/busybox", f.read(), 0o755)
    for applet in ("sh", "cat", "dmesg", "echo", "mount", "poweroff", "reboot", "sleep"):
        w.symlink(f"bin/{applet}", "busybox")
    with open(helper, "rb") as f:
        w.file("kmsh", f.read(), 0o755)
    dirs = set()
    for path in sorted(modules):
        parent = os.path.dirname(path)
        while parent and parent not in dirs and parent != "m":
            dirs.add(parent)
            parent = os.path.dirname(parent)
    for d in sorted(dirs):
        w.dir(d)
    for path, data in sorted(modules.items()):
        w.file(path, data)
    w.file("init", init.encode(), 0o755)
    return w.close()
