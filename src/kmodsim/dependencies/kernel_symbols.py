"""The kernel's own symbols for ``-E`` (Module.symvers) and ``-F`` (System.map), read as kmod's
``tools/depmod.c`` reads them."""

from __future__ import annotations

import os
import re

from ..messages import DepmodMessage

# ---------------------------------------------------------------------------------------------
# Kernel symbols (-E / -F)
# ---------------------------------------------------------------------------------------------


def _strtoull16(s: str) -> tuple[int, str]:
    """strtoull(s, &end, 16): (value, rest)."""
    m = re.match(r"\s*([+-]?)(0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]*)", s)
    assert m is not None  # every group may be empty: the pattern matches any string
    digits = m.group(3)
    if not digits:
        return 0, s
    v = min(int(digits, 16), (1 << 64) - 1)
    if m.group(1) == "-":
        v = (-v) % (1 << 64)
    return v, s[m.end():]


def load_symvers(path: str, prefix: str, messages: list[DepmodMessage]) -> list[tuple[bytes, int]]:
    """depmod_load_symvers(): the ``vmlinux`` rows of a Module.symvers, (name, crc)."""
    out = []
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            line = raw.decode("utf-8", "surrogateescape")
            toks = [t for t in re.split(r"[ \t]+", line) if t]
            if len(toks) < 3 or toks[2] != "vmlinux":
                continue
            crc, rest = _strtoull16(toks[0])
            if rest:
                messages.append(DepmodMessage("symvers-bad-crc", (path, str(no), toks[0])))
                continue
            name = toks[1]
            if prefix and name.startswith(prefix):
                name = name[1:]
            out.append((os.fsencode(name), crc))
    return out


def load_system_map(path: str, prefix: str, messages: list[DepmodMessage]) -> list[tuple[bytes, int]]:
    """depmod_load_system_map(): the ``__ksymtab_<S>`` lines of a System.map, (S, 0)."""
    out = []
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            a = raw.find(b" ")
            b = raw.find(b" ", a + 1) if a >= 0 else -1
            if b < 0:
                messages.append(DepmodMessage("system-map-bad-line",
                                              (path, str(no), raw.decode("utf-8", "surrogateescape"))))
                continue
            p = raw[b + 1:]
            if prefix and p[:1] == prefix.encode():
                p = p[1:]
            if not p.startswith(b"__ksymtab_"):
                continue
            p = p.split(b"\n", 1)[0]
            out.append((p[10:], 0))
    return out
