"""The files depmod writes: modules.dep, .alias, .softdep, .symbols, .devname (and their .bin
indexes), written as depmod writes them; ``-A``'s up-to-date test."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING

from ..discovery import KMOD_EXTENSIONS, superfasthash
from ..messages import DepmodMessage
from .index import Index, alias_normalize, builtin_alias_index, builtin_index
from .kmod_versions import KMOD_VERSIONS, KmodVersion
from .kmod_view import KmodRecord, split0, u32s

if TYPE_CHECKING:
    from .graph import Depmod



SYMBOL_BUCKETS = 2048  # hash_new(2048, ...) in depmod_init

HEADERS = {
    "modules.alias": b"# Aliases extracted from modules themselves.\n",
    "modules.softdep": b"# Soft dependencies extracted from modules themselves.\n",
    "modules.weakdep": b"# Weak dependencies extracted from modules themselves.\n",  # kmod 33+
    "modules.symbols": b"# Aliases for symbols, used by symbol_request().\n",
    "modules.devname": b"# Device nodes to trigger on-demand module loading.\n",
}
TEXT_FILES = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols", "modules.devname")
KMOD_30 = KMOD_VERSIONS[30]


def text_files(kmod: KmodVersion) -> tuple[str, ...]:
    """The text files the depmod of ``kmod`` writes, in its order (kmod 33+: modules.weakdep
    after modules.softdep)."""
    return TEXT_FILES[:3] + ("modules.weakdep",) + TEXT_FILES[3:] if kmod.weakdep else TEXT_FILES



def output_dep(dm: Depmod) -> bytes:
    paths = [m.bpath for m in dm.mods]
    sort = dm.dep_sort
    assert sort is not None
    deps = dm.deps
    memo: list[Collection[int]] = [()] * len(dm.mods)  # each set below before it is read
    # closures, leaves first (highest topological number first)
    for i in sorted(range(len(dm.mods)), key=sort.__getitem__, reverse=True):
        ds = deps[i]
        if not ds:
            memo[i] = ()
            continue
        s = set(ds)
        for d in ds:
            s.update(memo[d])
        memo[i] = s
    key = sort.__getitem__
    out = []
    for i, p in enumerate(paths):
        closure = memo[i]
        if closure:
            out.append(p + b": " + b" ".join([paths[d] for d in sorted(closure, key=key)]) + b"\n")
        else:
            out.append(p + b":\n")
    return b"".join(out)


def output_alias(dm: Depmod) -> bytes:
    out = [HEADERS["modules.alias"]]
    for m in dm.mods:
        v = m.rec.aliases
        if v:
            tail = b" " + m.bname + b"\n"
            out.append(b"alias " + v[:-1].replace(b"\0", tail + b"alias ") + tail)
    return b"".join(out)


def output_softdep(dm: Depmod) -> bytes:
    """output_softdeps(): one ``softdep <module> <value>`` line per value."""
    return _keyed_lines(dm, "modules.softdep", b"softdep", attrgetter("softdeps"))


def output_weakdep(dm: Depmod) -> bytes:
    """output_weakdeps() (kmod 33+, 05828b4): one ``weakdep <module> <value>`` line per value."""
    return _keyed_lines(dm, "modules.weakdep", b"weakdep", attrgetter("weakdeps"))


def _keyed_lines(dm: Depmod, name: str, word: bytes, values: Callable[[KmodRecord], bytes]) -> bytes:
    """The header of ``name``, then ``<word> <module> <value>`` for each of a module's values (the
    record's NUL-terminated strings), modules in modules.dep order."""
    out = [HEADERS[name]]
    for m in dm.mods:
        v = values(m.rec)
        if v:
            head = word + b" " + m.bname + b" "
            out.append(head + v[:-1].replace(b"\0", b"\n" + head) + b"\n")
    return b"".join(out)


def output_symbols(dm: Depmod) -> bytes:
    """The owned names in kmod's hash-table order: by bucket, then by name."""
    mask = SYMBOL_BUCKETS - 1
    owned: dict[bytes, tuple[int, int]] = {}  # name -> (bucket, owner); the last exporter wins
    pre = dm.prefix.encode()
    for m in dm.mods:
        rec = m.rec
        if not rec.exports:
            continue
        names = split0(rec.exports)
        buckets = [h & mask for h in u32s(rec.export_hashes)]
        if pre and any(n[:1] == pre for n in names):  # -P: the table holds the names without it
            names = [n[1:] if n[:1] == pre else n for n in names]
            buckets = [superfasthash(n) & mask for n in names]
        owned.update(zip(names, zip(buckets, repeat(m.idx)), strict=True))
    rows = sorted([(b, n, o) for n, (b, o) in owned.items()])
    mods = dm.mods
    return HEADERS["modules.symbols"] + b"".join(
        [b"alias symbol:" + n + b" " + mods[o].bname + b"\n" for _b, n, o in rows])


def output_devname(dm: Depmod, messages: list[DepmodMessage] | None = None) -> bytes:
    out = []
    for m in dm.mods:
        aliases = m.rec.aliases
        if b"devname:" not in aliases:
            continue
        devname = None
        typ = ""
        major = minor = 0
        for v in split0(aliases):
            if v.startswith(b"devname:"):
                devname = v[8:]
            else:
                for t, pre in (("c", b"char-major-"), ("b", b"block-major-")):
                    mm = _scan_major_minor(v, pre)
                    if mm is not None:
                        typ, (major, minor) = t, mm
                        break
            if typ and devname is not None:
                break
        if devname is None:
            continue
        if typ:
            out.append(b"%s %s %s%d:%d\n" % (m.bname, devname, typ.encode(), major, minor))
        elif messages is not None:
            messages.append(DepmodMessage("devname-no-numbers",
                                          (m.name, devname.decode("utf-8", "surrogateescape"))))
    return HEADERS["modules.devname"] + b"".join(out) if out else b""


def outputs(dm: Depmod, messages: list[DepmodMessage] | None = None, bins: bool = False, warn_dups: bool = False,
            show: bool = False, kmod: KmodVersion = KMOD_30) -> dict[str, bytes]:
    """The files, in the order the depmod of ``kmod`` writes them; with ``bins`` the .bin indexes
    too. The messages depmod prints while writing them go to ``messages``, in its order: aliases
    it cannot index (and with -w duplicates) unless -n, the builtin files with ``bins``, devnames
    without a major/minor."""
    msgs: list[DepmodMessage] = []
    pre = kmod.index_preorder
    out = {"modules.dep": output_dep(dm)}
    if bins:
        out["modules.dep.bin"] = dep_index(dm, out["modules.dep"], pre)
    out["modules.alias"] = output_alias(dm)
    if bins:
        out["modules.alias.bin"] = alias_index(dm, msgs, warn_dups, pre)
    elif not show:
        msgs.extend(alias_warnings(dm, warn_dups))
    out["modules.softdep"] = output_softdep(dm)
    if kmod.weakdep:
        out["modules.weakdep"] = output_weakdep(dm)
    out["modules.symbols"] = output_symbols(dm)
    if bins:
        out["modules.symbols.bin"] = symbols_index(dm, out["modules.symbols"], pre)
    if not show:  # the built-in indexes are small: read them for depmod's messages even without bins
        for name, make in (("modules.builtin.bin", builtin_index),
                           ("modules.builtin.alias.bin", builtin_alias_index)):
            data = make(dm.dirname, msgs, pre)
            if bins:
                out[name] = b"" if data is None else data  # depmod leaves an empty file
    out["modules.devname"] = output_devname(dm, msgs)
    if messages is not None:
        messages.extend(msgs)
    return out


def dep_index(dm: Depmod, dep: bytes, preorder: bool = False) -> bytes:
    idx = Index()
    for m, line in zip(dm.mods, dep.split(b"\n"), strict=False):
        idx.insert(m.bname, line, m.idx)
    return idx.to_bytes(preorder)


def alias_index(dm: Depmod, messages: list[DepmodMessage], warn_dups: bool, preorder: bool = False) -> bytes:
    """modules.alias.bin (normalised aliases); an alias with an unmatched bracket is reported
    and left out, and with -w one a module declares twice."""
    idx = Index()
    for m in dm.mods:
        aliases = m.rec.aliases
        if not aliases:
            continue
        for v in split0(aliases):
            norm = alias_normalize(v)
            if norm is None:
                messages.append(DepmodMessage("alias-bracket", (v.decode("utf-8", "surrogateescape"),)))
                continue
            if idx.insert(norm, m.bname, m.idx) and warn_dups:
                messages.append(DepmodMessage("alias-duplicate", (norm.decode("utf-8", "surrogateescape"), m.name)))
    return idx.to_bytes(preorder)


def alias_warnings(dm: Depmod, warn_dups: bool) -> list[DepmodMessage]:
    """alias_index()'s messages without building the index."""
    out = []
    for m in dm.mods:
        aliases = m.rec.aliases
        if not aliases or (not warn_dups and b"[" not in aliases and b"]" not in aliases):
            continue
        seen: set[bytes] = set()
        for v in split0(aliases):
            norm = alias_normalize(v)
            if norm is None:
                out.append(DepmodMessage("alias-bracket", (v.decode("utf-8", "surrogateescape"),)))
                continue
            if norm in seen and warn_dups:
                out.append(DepmodMessage("alias-duplicate", (norm.decode("utf-8", "surrogateescape"), m.name)))
            seen.add(norm)
    return out


def symbols_index(dm: Depmod, symbols: bytes, preorder: bool = False) -> bytes:
    idx = Index()
    by_name = {m.bname: m.idx for m in dm.mods}
    for line in symbols.split(b"\n")[1:-1]:
        _alias, key, owner = line.split(b" ")
        idx.insert(key, owner, by_name[owner])
    return idx.to_bytes(preorder)


def _scan_major_minor(v: bytes, prefix: bytes) -> tuple[int, int] | None:
    """sscanf(v, "<prefix>%u-%u"): two unsigned decimals, the rest ignored."""
    if not v.startswith(prefix):
        return None
    m = re.match(rb"\s*([+-]?\d+)-\s*([+-]?\d+)", v[len(prefix):])
    if m is None:
        return None
    return int(m.group(1)) % (1 << 32), int(m.group(2)) % (1 << 32)




# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def write_outputs(dirname: str, files: dict[str, bytes]) -> None:
    """Each file through a temporary name and a rename, as depmod does (mode 0644 less umask)."""
    import time

    stamp = f"{os.getpid()}.{int(time.time() * 1e6) % 1000000}.{int(time.time())}"
    for name, data in files.items():
        tmp = os.path.join(dirname, f"{name}.{stamp}")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(dirname, name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise


def up_to_date(dirname: str, messages: list[DepmodMessage] | None = None) -> bool:
    """depfile_up_to_date() for -A: modules.dep exists and no module file is newer (in whole
    seconds). depmod's complaints go to ``messages``; when in doubt the work is done."""
    import stat as _st

    try:
        mtime = int(os.stat(os.path.join(dirname, "modules.dep")).st_mtime)
    except OSError as exc:
        if messages is not None:
            if not os.path.isdir(dirname):
                messages.append(DepmodMessage("open-directory", (dirname, str(exc.strerror))))
            else:
                messages.append(DepmodMessage("fstatat-dep", (dirname, str(exc.strerror))))
        return False

    def walk(d: str) -> bool:
        try:
            entries = list(os.scandir(d))
        except OSError:
            return True
        for e in entries:
            if e.name in ("build", "source"):
                continue
            try:
                st = e.stat()
            except OSError:
                continue
            if _st.S_ISDIR(st.st_mode):
                if not walk(e.path):
                    return False
            elif _st.S_ISREG(st.st_mode) and e.name.endswith(KMOD_EXTENSIONS) and e.name not in KMOD_EXTENSIONS:
                if int(st.st_mtime) > mtime:
                    return False
        return True

    return walk(dirname)


def is_version_number(v: str) -> bool:
    """sscanf(v, "%u.%u") == 2."""
    return re.match(r"\s*[+-]?\d+\.\s*[+-]?\d+", v) is not None
