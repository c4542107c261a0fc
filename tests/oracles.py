"""Independent oracles for the tests: binutils' readelf, pyelftools, Module.symvers as kbuild wrote it.

Nothing here imports kmodsim: expected values must not come from the code under test.
"""

from __future__ import annotations

import io
import lzma
import os
import re
import subprocess
from collections import defaultdict

from elftools.elf.elffile import ELFFile


def symvers(path: str) -> dict[str, dict[str, tuple[int, bool, str]]]:
    """Module.symvers (5.6+ layout) -> {module path: {symbol: (crc, gpl, namespace)}}."""
    out: dict[str, dict[str, tuple[int, bool, str]]] = defaultdict(dict)
    with open(path) as f:
        for line in f:
            crc, sym, mod, typ, ns = line.rstrip("\n").split("\t")
            out[mod][sym] = (int(crc, 16), typ == "EXPORT_SYMBOL_GPL", ns)
    return out


_FILE = re.compile(r"^File: (.*)$")


def readelf_symbols(paths: list[str], batch: int = 200) -> dict[str, list[tuple[str, str, str, str]]]:
    """``readelf -sW`` of many files: {path: [(type, bind, ndx, name)]}. Plain ELF files only."""
    return {p: [(typ, bind, ndx, name) for _n, _v, _s, typ, bind, ndx, name in rows]
            for p, rows in readelf_symtab(paths, batch).items()}


def undefined(syms: list[tuple[str, str, str, str]]) -> list[str]:
    return [name for _t, _b, ndx, name in syms if ndx == "UND" and name]


def elf_bytes(path: str) -> bytes:
    data = open(path, "rb").read()
    if path.endswith(".xz"):
        data = lzma.decompress(data)
    return data


def versions(data: bytes) -> dict[str, int]:
    """``__versions`` read with pyelftools: {name: crc}."""
    elf = ELFFile(io.BytesIO(data))
    sec = elf.get_section_by_name("__versions")
    if sec is None:
        return {}
    raw = sec.data()
    word = 8 if elf.elfclass == 64 else 4
    order = "little" if elf.little_endian else "big"
    out = {}
    for off in range(0, len(raw), 64):
        crc = int.from_bytes(raw[off:off + word], order)
        name = raw[off + word:off + 64].split(b"\0", 1)[0].decode()
        out[name] = crc
    return out


def modinfo(data: bytes) -> list[str]:
    elf = ELFFile(io.BytesIO(data))
    sec = elf.get_section_by_name(".modinfo")
    return [s.decode() for s in sec.data().split(b"\0") if s]


_SYM_FULL = re.compile(r"^\s*(\d+):\s+([0-9a-f]+)\s+(\d+|0x[0-9a-f]+)\s+(\w+)\s+(\w+)\s+(\w+)\s+"
                       r"(?:\[[^\]]*\]\s+)?(\S+)(?: (.*))?$")


def readelf_symtab(paths: list[str], batch: int = 200) -> dict[str, list[tuple]]:
    """``readelf -sW`` of many files, every column: {path: [(index, value, size, type, bind, ndx,
    name)]}, names as readelf prints them (section symbols named after their section, control
    characters as ``^X``). Plain ELF files only."""
    out: dict[str, list] = {}
    env = dict(os.environ, LC_ALL="C")
    for i in range(0, len(paths), batch):
        chunk = paths[i:i + batch]
        text = subprocess.run(["readelf", "-sW", *chunk], capture_output=True, text=True, check=True,
                              env=env, errors="surrogateescape").stdout
        cur = chunk[0] if len(chunk) == 1 else None
        if cur is not None:
            out[cur] = []
        for line in text.splitlines():
            m = _FILE.match(line)
            if m:
                cur = m.group(1)
                out[cur] = []
                continue
            m = _SYM_FULL.match(line)
            if m and cur is not None:
                num, val, size, typ, bind, _vis, ndx, name = m.groups()
                out[cur].append((int(num), int(val, 16), int(size, 0), typ, bind, ndx, name or ""))
    return out
