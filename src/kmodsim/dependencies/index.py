"""kmod's binary index format (``libkmod/libkmod-index.c``): the .bin radix trees, and
modules.builtin.bin / modules.builtin.alias.bin."""

from __future__ import annotations

import os
import re
import struct

from ..messages import DepmodMessage

# ---------------------------------------------------------------------------------------------
# The .bin indexes (kmod's index format: libkmod/libkmod-index.c describes it)
# ---------------------------------------------------------------------------------------------

INDEX_HEADER = b"\xb0\x07\xf4\x57\x00\x02\x00\x01"  # magic 0xB007F457, version 2.1, big-endian
NODE_PREFIX, NODE_VALUES, NODE_CHILDS = 0x80000000, 0x40000000, 0x20000000


class Index:
    """A key -> values map written as kmod's radix-tree index. Values are kept in the order
    depmod's index_add_value() leaves them: by priority, a later value before an earlier one of
    the same priority."""

    def __init__(self) -> None:
        self.entries: dict[bytes, list[tuple[int, int, bytes]]] = {}
        self.seq = 0

    def insert(self, key: bytes, value: bytes, priority: int) -> bool:
        """Add a value; True if the key already had this very value (depmod's 'duplicate')."""
        vals = self.entries.setdefault(key, [])
        dup = any(v == value for _p, _s, v in vals)
        self.seq += 1
        vals.append((priority, -self.seq, value))
        return dup

    def to_bytes(self, preorder: bool = False) -> bytes:
        """The file. The tree is built from the sorted keys (a node's prefix is what its keys
        share past the branch character, as depmod's node splitting leaves it); the root keeps an
        empty prefix. kmod 30 writes it in post-order, children first (index_write__node()); kmod
        34 (``preorder``, dada048 "depmod: Write index in pre-order") a node before its children,
        which follow it in character order, the root at offset 12."""
        import bisect

        keys = sorted(self.entries)
        entries = self.entries
        u32 = struct.Struct(">I").pack

        def shape(lo: int, hi: int, d: int, root: bool) -> tuple[bytes, int, bool, list[tuple[int, int, int]]]:
            """A node's prefix, where its key ends, whether it has a value, its children's ranges."""
            a, b = keys[lo], keys[hi - 1]
            n = 0
            if not root:  # common prefix length of a[d:] and b[d:], by bisection
                top = min(len(a), len(b)) - d
                while n < top:
                    mid = (n + top + 1) >> 1
                    if a[d:d + mid] == b[d:d + mid]:
                        n = mid
                    else:
                        top = mid - 1
            d2 = d + n
            has_value = len(a) == d2
            k = lo + 1 if has_value else lo
            kids = []
            while k < hi:
                key = keys[k]
                c = key[d2]
                end = bisect.bisect_left(keys, key[:d2] + bytes((c + 1,)), k, hi) if c < 255 else hi
                kids.append((c, k, end))
                k = end
            return a[d:d2], d2, has_value, kids

        def values(key: bytes) -> bytes:
            vals = sorted(entries[key])
            return u32(len(vals)) + b"".join([u32(prio) + v + b"\0" for prio, _s, v in vals])

        def flags(prefix: bytes, kids: list[tuple[int, int, int]], has_value: bool) -> int:
            return (NODE_PREFIX if prefix else 0) | (NODE_CHILDS if kids else 0) | (NODE_VALUES if has_value else 0)

        if not preorder:
            out = bytearray(INDEX_HEADER + b"\0\0\0\0")

            def node(lo: int, hi: int, d: int, root: bool) -> int:
                prefix, d2, has_value, kids = shape(lo, hi, d, root)
                children = {c: node(k, end, d2 + 1, False) for c, k, end in kids}
                off = len(out)
                if prefix:
                    out.extend(prefix + b"\0")
                if children:
                    first, last = kids[0][0], kids[-1][0]
                    out.extend(bytes((first, last)))
                    out.extend(b"".join([u32(children.get(c, 0)) for c in range(first, last + 1)]))
                if has_value:
                    out.extend(values(keys[lo]))
                return off | flags(prefix, kids, has_value)

            # an empty index still has its root node: nothing is written for it, and the header
            # points at the offset where it would be (index_write__node() returns ftell() = 12)
            root = node(0, len(keys), 0, True) if keys else len(out)
            out[8:12] = u32(root)
            return bytes(out)

        # pre-order: a node's own bytes, then its children's subtrees one after the other
        # (index_calculate_size() knows each node's size before anything is written)
        parts: list[bytes] = []

        def pre(lo: int, hi: int, d: int, root: bool, off: int) -> tuple[int, int]:
            """Write the subtree at ``off``; return (its flags, its total size)."""
            prefix, d2, has_value, kids = shape(lo, hi, d, root)
            head = prefix + b"\0" if prefix else b""
            val = values(keys[lo]) if has_value else b""
            size = len(head) + len(val) + (2 + 4 * (kids[-1][0] - kids[0][0] + 1) if kids else 0)
            slot = len(parts)
            parts.append(b"")  # this node, filled in once its children's offsets are known
            at = off + size
            offs: dict[int, int] = {}
            for c, k, end in kids:
                f, total = pre(k, end, d2 + 1, False, at)
                offs[c] = at | f
                at += total
            table = b""
            if kids:
                first, last = kids[0][0], kids[-1][0]
                table = bytes((first, last)) + b"".join([u32(offs.get(c, 0)) for c in range(first, last + 1)])
            parts[slot] = head + table + val
            return flags(prefix, kids, has_value), at - off

        first_off = len(INDEX_HEADER) + 4
        root_flags = pre(0, len(keys), 0, True, first_off)[0] if keys else 0
        return INDEX_HEADER + u32(first_off | root_flags) + b"".join(parts)


def builtin_index(dirname: str, messages: list[DepmodMessage], preorder: bool = False) -> bytes | None:
    """modules.builtin.bin: the module name of each modules.builtin line (None: no such file)."""
    names = builtin_names(dirname, messages)
    if names is None:
        return None
    idx = Index()
    for n in names:
        idx.insert(n, b"", 0)
    return idx.to_bytes(preorder)


def builtin_names(dirname: str, messages: list[DepmodMessage]) -> list[bytes] | None:
    """The module names of modules.builtin as depmod indexes them (None: no such file; depmod's
    messages about the file appended to ``messages``). Also what libkmod's builtin lookups find."""
    try:
        with open(os.path.join(dirname, "modules.builtin"), "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except OSError as exc:
        messages.append(DepmodMessage("builtin-open", (dirname, str(exc.strerror))))
        return None
    out = []
    for line in lines:
        if not line[:1].isalpha():
            messages.append(DepmodMessage("builtin-bad-line", (line.decode("utf-8", "surrogateescape"),)))
            continue
        base = line.rsplit(b"/", 1)[-1]
        out.append(re.split(rb"[.\0]", base, maxsplit=1)[0].replace(b"-", b"_"))
    return out


def builtin_alias_index(dirname: str, messages: list[DepmodMessage], preorder: bool = False) -> bytes | None:
    """modules.builtin.alias.bin: the ``<module>.alias=<value>`` strings of modules.builtin.modinfo."""
    pairs = builtin_aliases(dirname, messages)
    if pairs is None:
        return None
    idx = Index()
    for norm, name in pairs:
        idx.insert(norm, name, 0)
    return idx.to_bytes(preorder)


def builtin_aliases(dirname: str, messages: list[DepmodMessage]) -> list[tuple[bytes, bytes]] | None:
    """(normalised alias, module) of each ``<module>.alias=<value>`` string of
    modules.builtin.modinfo, read with depmod's stream rules (a field ends at its delimiter or at a
    NUL); None: no such file (depmod's messages appended to ``messages``)."""
    try:
        with open(os.path.join(dirname, "modules.builtin.modinfo"), "rb") as f:
            data = f.read()
    except OSError as exc:
        messages.append(DepmodMessage("builtin-modinfo-open", (dirname, str(exc.strerror))))
        return None
    out = []
    pos, size = 0, len(data)

    def field(end: int) -> tuple[bytes, bool]:
        nonlocal pos
        j = data.find(b"\0", pos)
        if end:
            k = data.find(bytes((end,)), pos, j if j >= 0 else size)
            if k >= 0:
                j = k
        if j < 0:
            text, pos = data[pos:], size
            return text, False
        text, stop = data[pos:j], data[j]
        pos = j + 1
        return text, stop == end

    while pos < size:
        name, ok = field(0x2E)  # '.'
        if not ok or not name:
            continue
        key, ok = field(0x3D)  # '='
        if not ok or key != b"alias":
            field(0)  # depmod skips to the next NUL (past the following string if the key had none)
            continue
        value, ok = field(0)
        if not ok or not value:
            continue
        norm = alias_normalize(value)
        if norm is None:
            messages.append(DepmodMessage("alias-bracket", (value.decode("utf-8", "surrogateescape"),)))
            continue
        out.append((norm, name))
    return out


def alias_normalize(v: bytes) -> bytes | None:
    """alias_normalize(): '-' becomes '_' outside brackets; None for an unmatched bracket."""
    if b"[" not in v and b"]" not in v:
        return v.replace(b"-", b"_")
    out = bytearray()
    i = 0
    while i < len(v):
        c = v[i]
        if c == 0x2D:  # '-'
            out.append(0x5F)
        elif c == 0x5D:  # ']'
            return None
        elif c == 0x5B:  # '['
            j = v.find(b"]", i)
            if j < 0:
                return None
            out += v[i:j + 1]
            i = j
        else:
            out.append(c)
        i += 1
    return bytes(out)
