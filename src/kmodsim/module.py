"""A kernel module file (``.ko``, ``.ko.xz``, ``.ko.zst``, ``.ko.gz``) read into a :class:`Module`.

What is read, and where the kernel keeps it (see ../shared/notes/kernel-modules.md):

* exports: every symbol named ``__ksymtab_<S>`` defined in ``__ksymtab`` (plain) or
  ``__ksymtab_gpl`` (GPL-only). This holds for every entry layout the kernel has used — absolute
  16/24-byte ``struct kernel_symbol`` entries, PREL32 8-byte (4.19-5.3) and 12-byte (5.4+) ones —
  because the symbol labels the entry, whatever its size. ``__export_symbol_<S>`` symbols in a
  leftover ``.export_symbol`` section (6.5-6.9) are not exports and are ignored.
* namespace: the string in ``__ksymtab_strings`` at ``__kstrtabns_<S>`` (5.4+; absent means none).
* CRC: ``__crc_<S>``, an absolute symbol whose value is the CRC (before 5.19), or a u32 at the
  symbol's offset in ``__kcrctab``/``__kcrctab_gpl`` (5.19+, commit f292d875d0dc).
* imports: named symbols with ``st_shndx == SHN_UNDEF`` (what ``readelf -s`` lists as UND), with
  the CRC the module expects from ``__versions`` — or from ``__version_ext_crcs``/
  ``__version_ext_names`` when present (6.14+, which the kernel then prefers).
* ``.modinfo``: NUL-separated ``key=value`` strings, all kept in order (keys repeat).
* the appended signature: ``struct module_signature`` + ``~Module signature appended~\\n``.

Compressed modules are decompressed whole in memory (``.ko.xz`` is one xz block), in bounded
steps and with a limit on the expanded size (:data:`DEFAULT_MAX_SIZE`), so that a hostile file
exhausts neither memory nor time.
"""

from __future__ import annotations

import lzma
import marshal
import mmap
import os
import stat
import struct
import sys
import zlib
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import compress, repeat
from operator import and_, not_
from typing import NamedTuple, TypeVar, cast

from .elf import ET_NAMES, ET_REL, SHN_ABS, SHT_NOBITS, ElfError, ElfFile, ImageBytes, cstr
from .errors import PathError

_WEAK = bytes(1 if c >> 4 == 2 else 0 for c in range(256))  # st_info -> 1 if STB_WEAK
_NUL_TO_SPACE = bytes.maketrans(b"\0", b" ")
_WHITESPACE = bytes(c for c in range(256) if chr(c).isspace())  # what str.split() splits latin-1 text on
_new = tuple.__new__  # builds a NamedTuple from a tuple at C speed (the hot path makes ~10^5 a tree)

MODULE_SIG_STRING = b"~Module signature appended~\n"
PKEY_ID_TYPES = {0: "PGP", 1: "X.509", 2: "PKCS#7"}
# Expanded-size limit for compressed modules: 128 MiB, 4.4 times the largest module Debian ships
# (6.12's amdgpu.ko: 29,314,215 bytes decompressed; 6.1's, plain: 19,462,185). Well under the
# 1 GiB address-space limit CI systems and containers set, and a bomb is refused in well under a
# second (a 330 KB .ko.xz of zeros expands to 2.2 GiB).
DEFAULT_MAX_SIZE = 128 << 20

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")

# ksymtab section -> export kind. "gpl_future" and "unused*" existed until 5.12/5.13.
KSYMTAB_KINDS = {
    "__ksymtab": "",
    "__ksymtab_gpl": "gpl",
    "__ksymtab_gpl_future": "gpl_future",
    "__ksymtab_unused": "unused",
    "__ksymtab_unused_gpl": "unused_gpl",
}
KCRCTAB_SECTIONS = ("__kcrctab", "__kcrctab_gpl", "__kcrctab_gpl_future", "__kcrctab_unused",
                    "__kcrctab_unused_gpl")


class ModuleError(PathError):
    """A module file cannot be read; ``str()`` is one line naming the file and the problem."""


class Export(NamedTuple):
    name: str
    gpl: bool
    namespace: str = ""
    crc: int | None = None
    kind: str = ""  # "", "gpl", "gpl_future", "unused", "unused_gpl"


class Import(NamedTuple):
    name: str
    crc: int | None = None
    weak: bool = False


class SectionInfo(NamedTuple):
    name: str
    type: int
    flags: int
    size: int
    align: int
    entsize: int


class Param(NamedTuple):
    name: str
    type: str
    description: str


class Signature(NamedTuple):
    id_type: str
    algo: int
    hash: int
    signer_len: int
    key_id_len: int
    sig_len: int


class ModuleRecord(NamedTuple):
    """The serialisation of a :class:`Module`: what worker processes send to the parent and what
    the scan cache stores. Every field is a builtin (marshal-able), each column one NUL-terminated
    joined string or one packed integer array, so a module costs a dozen objects instead of
    thousands. Fields are read by name only; :meth:`dumps`/:meth:`loads` are the one place that
    knows their order. Its version (:data:`RECORD_VERSION`) is derived from the field names:
    adding, removing or renaming a field changes it, and every cache of records follows."""

    name: str  # .modinfo name=, else struct module's name, else the file's
    path: str
    export_names: str  # NUL-terminated, joined
    export_namespaces: str
    export_kinds: str  # "", "gpl", "gpl_future", "unused", "unused_gpl"
    export_crcs: bytes  # array('q'): -1 for none
    import_names: str
    import_weak: bytes  # one byte per import: 1 if STB_WEAK
    modinfo: str  # every non-empty .modinfo string, NUL-terminated, joined
    section_names: str  # the section name string table (latin-1)
    section_columns: bytes  # sections 1..n-1: name offset, type, flags, size, align, entsize columns
    version_names: str  # __versions (or __version_ext_*) entries, in file order
    version_crcs: bytes  # array('Q')
    signature: tuple[str, int, int, int, int, int] | None  # Signature's fields
    machine: int
    ei_class: int  # 1 = ELF32, 2 = ELF64
    little_endian: bool
    compression: str  # "", "xz", "zstd", "gzip"
    file_size: int
    elf_size: int  # the ELF image without its appended signature

    def dumps(self) -> bytes:
        """The record marshalled (a plain tuple: marshal takes no tuple subclass)."""
        return marshal.dumps(tuple(self))

    @classmethod
    def loads(cls, blob: bytes) -> ModuleRecord:
        """The inverse of :meth:`dumps`; ValueError if ``blob`` is not a record of this version."""
        return record_of(cls, marshal.loads(blob), f"module record of version {RECORD_SCHEMA}")

    @classmethod
    def of(cls, t: tuple[object, ...]) -> ModuleRecord:
        """A record from its plain tuple (as :meth:`dumps` marshals it)."""
        return record_of(cls, t, f"module record of version {RECORD_SCHEMA}")


R = TypeVar("R", bound="tuple[object, ...]")
T = TypeVar("T")


def record_of(cls: type[R], t: object, what: str) -> R:
    """``t`` as a record of the NamedTuple ``cls`` (a plain tuple with one item a field, as the
    records travel and are cached: :class:`ModuleRecord`, :class:`kmodsim.dependencies.kmod_view.
    KmodRecord`), made at C speed; ValueError naming ``what`` was expected if it is not one."""
    if type(t) is cls:
        return t
    if not isinstance(t, tuple) or len(t) != len(cls._fields):  # type: ignore[attr-defined]
        raise ValueError(f"not a {what}")
    return tuple.__new__(cls, t)


# The version of the record: a schema number, bumped by hand only when a field's *meaning* changes
# (what the parser puts in it), and the field names, so that a change of the layout needs no bump.
# 6: named fields (5: import CRCs on use; 4: section columns; 2: section name table + offsets).
RECORD_SCHEMA = 6
RECORD_VERSION = (RECORD_SCHEMA, ModuleRecord._fields)


class Module:
    """A parsed module: a view over its :class:`ModuleRecord` (:meth:`to_record`).

    Each field is decoded from the record the first time it is used, so a tree of thousands of
    modules costs only what the caller reads (``check`` never decodes section tables, ``scan``
    summaries decode nothing). Instances are immutable once built.
    """

    __slots__ = ("_r", "_cache")

    def __init__(self, record: ModuleRecord) -> None:
        self._r = ModuleRecord.of(record)
        self._cache: dict[str, object] = {}

    def __repr__(self) -> str:
        return f"Module(name={self.name!r}, path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Module) and other._r == self._r

    __hash__ = None  # type: ignore[assignment]

    # -- plain fields (no decoding) ----------------------------------------------------------
    @property
    def path(self) -> str:
        return self._r.path

    @property
    def name(self) -> str:
        return self._r.name

    @property
    def signature(self) -> Signature | None:
        sig = self._r.signature
        return None if sig is None else _new(Signature, sig)

    @property
    def machine(self) -> int:
        return self._r.machine

    @property
    def ei_class(self) -> int:  # 1 = ELF32, 2 = ELF64
        return self._r.ei_class

    @property
    def little_endian(self) -> bool:
        return self._r.little_endian

    @property
    def compression(self) -> str:  # "", "xz", "zstd", "gzip"
        return self._r.compression

    @property
    def file_size(self) -> int:
        return self._r.file_size

    @property
    def elf_size(self) -> int:
        return self._r.elf_size

    # -- decoded on first use ----------------------------------------------------------------
    def _get(self, key: str, make: Callable[[ModuleRecord], T]) -> T:
        v = self._cache.get(key)
        if v is None:
            v = self._cache[key] = make(self._r)
        return cast(T, v)

    @property
    def exports(self) -> list[Export]:
        return self._get("exports", _decode_exports)

    @property
    def imports(self) -> list[Import]:
        return self._get("imports", _decode_imports)

    @property
    def modinfo(self) -> list[tuple[str, str]]:
        return self._get("modinfo", lambda r: cast("list[tuple[str, str]]",
                                                   [tuple(kv.partition("=")[::2]) for kv in _split(r.modinfo)]))

    @property
    def sections(self) -> list[SectionInfo]:
        return self._get("sections", _decode_sections)

    @property
    def export_names(self) -> list[str]:
        """The names of the exports, in order (a column: no :class:`Export` per symbol)."""
        return _split(self._r.export_names)

    @property
    def exports_any(self) -> bool:
        """Whether the module exports anything (nothing decoded to say so)."""
        return bool(self._r.export_names)

    @property
    def import_names(self) -> list[str]:
        """The names of the imports, in order (a column of :meth:`import_columns`)."""
        return _split(self._r.import_names)

    def version_columns(self) -> tuple[list[str], list[int]]:
        """``__versions`` as columns — names, CRCs — in file order (:attr:`versions` as pairs)."""
        r = self._r
        return _split(r.version_names), _unints("Q", r.version_crcs)

    @property
    def has_versions(self) -> bool:
        """Whether the module has ``__versions`` records (modversions: what ``same_magic()`` and
        ``check_version()`` ask)."""
        return bool(self._r.version_names)

    def import_columns(self, names: list[str] | None = None) -> tuple[list[str], bytes, list[int]]:
        """Imports as columns — names, weak flags, expected CRCs (-1: none) — for hot loops that
        should not build an :class:`Import` per symbol. ``names``: :attr:`import_names`, when the
        caller has it already (it is not split again)."""
        r = self._r
        if names is None:
            names = _split(r.import_names)
        return names, r.import_weak, _import_crcs(r, names)

    @property
    def versions(self) -> list[tuple[str, int]]:
        """Every ``__versions`` record, in file order (including ``module_layout``)."""
        return self._get("versions", lambda r: list(zip(_split(r.version_names), _unints("Q", r.version_crcs), strict=True)))

    # -- modinfo views -----------------------------------------------------------------------
    def info(self, key: str) -> list[str]:
        """All values of a ``.modinfo`` key, in file order: found in the record's modinfo text
        (C-level ``find`` of ``\0key=``), not by decoding every entry (a driver's hundreds of
        ``alias=`` are never split to read its ``license=``)."""
        return _info_values(self._r.modinfo, key)

    def info1(self, key: str, default: str = "") -> str:
        """The first value of a ``.modinfo`` key (``default`` without one)."""
        v = _info_values(self._r.modinfo, key, 1)
        return v[0] if v else default

    @property
    def vermagic(self) -> str:
        return self.info1("vermagic")

    @property
    def license(self) -> str:
        return self.info1("license")

    @property
    def depends(self) -> list[str]:
        """``depends=`` split on commas (modpost writes one, possibly empty, key)."""
        out: list[str] = []
        for v in self.info("depends"):
            out.extend(d for d in v.split(",") if d)
        return out

    @property
    def import_ns(self) -> list[str]:
        return self.info("import_ns")

    @property
    def aliases(self) -> list[str]:
        return self.info("alias")

    @property
    def softdeps(self) -> list[str]:
        return self.info("softdep")

    @property
    def params(self) -> list[Param]:
        """Parameters from ``parm=name:desc`` and ``parmtype=name:type``, in first-seen order."""
        types: dict[str, str] = {}
        descs: dict[str, str] = {}
        order: list[str] = []
        for k, v in self.modinfo:
            if k not in ("parm", "parmtype"):
                continue
            pname, _, rest = v.partition(":")
            if pname not in types and pname not in descs:
                order.append(pname)
            (types if k == "parmtype" else descs)[pname] = rest
        return [Param(p, types.get(p, ""), descs.get(p, "")) for p in order]

    @property
    def signed(self) -> bool:
        return self.signature is not None

    @property
    def machine_name(self) -> str:
        from .elf import MACHINE_NAMES

        return MACHINE_NAMES.get(self.machine, f"machine {self.machine}")

    # -- serialisation (the JSON schema is the renderer's: kmodsim.render.modules.module_json) --
    def to_record(self) -> ModuleRecord:
        """The record the module is a view of (:class:`ModuleRecord`)."""
        return self._r

    @classmethod
    def from_record(cls, r: ModuleRecord | tuple[object, ...]) -> Module:
        """The module of a record, or of its plain tuple (:meth:`ModuleRecord.dumps`' content)."""
        return cls(ModuleRecord.of(r))


def _info_values(s: str, key: str, limit: int = -1) -> list[str]:
    """The values of ``key`` in a record's modinfo text (NUL-terminated strings), in order, as
    :attr:`Module.modinfo` pairs them: the text before an entry's first ``=`` is its key (an
    entry without one is a key with an empty value). At most ``limit`` values (-1: all)."""
    pat = "\0" + key
    skip = len(key)
    out: list[str] = []
    if s.startswith(key):  # at: the start of an entry that begins with key
        at = 0
    else:
        at = s.find(pat)
        if at >= 0:
            at += 1
    while at >= 0:
        j = at + skip
        c = s[j:j + 1]
        if c == "=":
            end = s.index("\0", j)
            out.append(s[j + 1:end])
        elif c == "\0":
            out.append("")
        if len(out) == limit:
            break
        at = s.find(pat, j)
        if at >= 0:
            at += 1
    return out


def _decode_exports(r: ModuleRecord) -> list[Export]:
    if not r.export_names:
        return []
    return [_new(Export, (n, k in ("gpl", "unused_gpl"), ns, None if c < 0 else c, k))
            for n, ns, k, c in zip(_split(r.export_names), _split(r.export_namespaces), _split(r.export_kinds),
                                   _unints("q", r.export_crcs), strict=True)]


def _import_crcs(r: ModuleRecord, names: list[str]) -> list[int]:
    """The CRC each import expects (-1: none): its ``__versions`` entry, looked up when imports are
    first used rather than while a tree is read."""
    vmap = dict(zip(_split(r.version_names), _unints("Q", r.version_crcs), strict=True))
    return list(map(vmap.get, names, repeat(-1)))


def _decode_imports(r: ModuleRecord) -> list[Import]:
    names = _split(r.import_names)
    return [_new(Import, (n, None if c < 0 else c, bool(w)))
            for n, w, c in zip(names, r.import_weak, _import_crcs(r, names), strict=True)]


def _decode_sections(r: ModuleRecord) -> list[SectionInfo]:
    # the section table's columns (sections 1..n-1) as arrays in host byte order, one after the
    # other — name offset and type (u32), flags, size, alignment, entry size (u64 in ELF64, u32 in
    # ELF32), and the section name string table. Decoded only here, when asked for.
    codes = ("I", "I", "Q", "Q", "Q", "Q") if r.ei_class == 2 else ("I",) * 6
    raw = r.section_columns
    n = len(raw) // sum(array(c).itemsize for c in codes)
    cols, at = [], 0
    for c in codes:
        a = array(c)
        a.frombytes(raw[at:at + n * a.itemsize])
        at += n * a.itemsize
        cols.append(a.tolist())
    names = r.section_names
    return [_new(SectionInfo, (names[nm:names.index("\0", nm)], *rest))
            for nm, *rest in zip(*cols, strict=True)]


def _join(items: Iterable[str]) -> str:
    """Each item NUL-terminated, so that empty strings survive the round trip."""
    items = items if isinstance(items, list) else list(items)
    return "\0".join(items) + "\0" if items else ""


def _split(s: str) -> list[str]:
    return s.split("\0")[:-1]


def _ints(code: str, values: Iterable[int]) -> bytes:
    return array(code, values).tobytes()


def _unints(code: str, raw: bytes) -> list[int]:
    a = array(code)
    a.frombytes(raw)
    return a.tolist()


# ---------------------------------------------------------------------------------------------
# Reading bytes
# ---------------------------------------------------------------------------------------------

# The compressed formats kmodsim reads, by magic number: the one definition, for module files and
# for the payload of a bzImage (kmodsim.kernel.extract_vmlinux). kmod (libkmod/libkmod-file.c:
# magic_xz, magic_zstd, magic_zlib) and the kernel (lib/decompress.c) tell gzip by ID1 ID2 alone.
COMPRESSION_MAGICS = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))

_IN_CHUNK = 1 << 20  # compressed bytes read at a time
_OUT_CHUNK = 8 << 20  # decompressed bytes asked for at a time (most modules: one step)
_TAIL = 4 << 10  # the end of a compressed file, where xz keeps its index
_ZSTD_MAX_RATIO = 1 << 15  # a 4-byte RLE block gives 128 KiB (ZSTD_BLOCKSIZE_MAX): the most per input byte


def compression_of(head: bytes) -> str:
    """Compression format by magic number (kmod also relies on the content, not only the name)."""
    for magic, fmt in COMPRESSION_MAGICS:
        if head.startswith(magic):
            return fmt
    return ""


def decompress(data: bytes | bytearray | memoryview, fmt: str, max_size: int = DEFAULT_MAX_SIZE) -> bytes | bytearray:
    """Decompress a whole module image held in memory (``data``: bytes-like); see :func:`inflate`."""
    view = memoryview(data)
    at = 0

    def read(n: int) -> memoryview:
        nonlocal at
        at += n
        return view[at - n:at]

    return inflate(read, fmt, max_size, lambda: view[-_TAIL:])


def xz_declared_size(tail: bytes | memoryview) -> int | None:
    """The uncompressed size an xz file states in its index, from the file's last bytes (``tail``,
    a few KiB): the sum of the Uncompressed Size fields of the last stream's index, found through
    the stream footer's Backward Size (xz file format 1.0.4, sections 2.1.2.2 and 4). None when
    the tail does not hold a well-formed footer and index. The decoder checks the index against
    the blocks, so a valid file expands to exactly this size: a bomb is refused before it is
    decompressed (a file that lies fails to decompress anyway)."""
    tail = bytes(tail)
    end = len(tail)
    while end >= 4 and tail[end - 4:end] == b"\0\0\0\0":  # stream padding
        end -= 4
    if end < 12 or tail[end - 2:end] != b"YZ" or zlib.crc32(tail[end - 8:end - 2]) != int.from_bytes(
            tail[end - 12:end - 8], "little"):
        return None
    index_size = (int.from_bytes(tail[end - 8:end - 4], "little") + 1) * 4
    at = end - 12 - index_size
    if at < 0 or tail[at] != 0:
        return None
    index = tail[at:end - 12]
    if zlib.crc32(index[:-4]) != int.from_bytes(index[-4:], "little"):
        return None
    pos = 1

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while pos < len(index) - 4 and shift < 63:
            b = index[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
        raise ValueError

    try:
        total = 0
        for _ in range(varint()):
            varint()  # Unpadded Size
            total += varint()
    except ValueError:
        return None
    return total


def inflate(read: Callable[[int], bytes | memoryview], fmt: str, max_size: int = DEFAULT_MAX_SIZE,
            tail: Callable[[], bytes | memoryview] | None = None) -> bytes | bytearray:
    """Decompress the first stream of ``fmt`` read by ``read(n)`` (at most n compressed bytes;
    empty at the end), in bounded steps: at most 1 MiB of input and 8 MiB of output at a time, so
    memory stays near ``max_size`` whatever the input claims, and an input that expands past
    ``max_size`` is refused as soon as it does (a 2 MiB gzip of zeros expands to 2 GiB). Bytes
    after the stream are ignored. ``tail()``: the input's last bytes, where an xz file states its
    size (:func:`xz_declared_size`), asked for once the output passes one step: an xz file that
    declares more than ``max_size`` is refused there. Returns bytes (one step) or a bytearray;
    raises ValueError naming the problem."""
    if fmt == "xz":
        pieces = _xz_pieces
    elif fmt == "gzip":
        pieces = _gzip_pieces
    elif fmt == "zstd":
        pieces = _zstd_pieces
    else:
        raise ValueError(f"unknown compression {fmt!r}")
    too_big = ValueError(f"{fmt} data expands past the {max_size}-byte limit")
    out: bytes | bytearray | None = None

    def left() -> int:  # what the output may still grow by, one byte past the limit included
        return max_size + 1 - (0 if out is None else len(out))

    try:
        for piece in pieces(read, left):
            if out is None:
                out = piece
            else:
                if not isinstance(out, bytearray):
                    if tail is not None and fmt == "xz" and (xz_declared_size(tail()) or 0) > max_size:
                        raise too_big
                    out = bytearray(out)
                out += piece
            if len(out) > max_size:
                raise too_big
    except (lzma.LZMAError, zlib.error, EOFError) as exc:
        raise ValueError(f"corrupt {fmt} data: {exc}") from None
    except MemoryError:
        raise ValueError(f"out of memory after expanding {fmt} data to {len(out or b'')} bytes "
                         f"(the limit is {max_size} bytes: see --max-decompressed)") from None
    except Exception as exc:  # zstandard.ZstdError and friends
        if type(exc).__module__.startswith("zstandard") or type(exc).__name__ == "ZstdError":
            raise ValueError(f"corrupt {fmt} data: {exc}") from None
        raise
    return b"" if out is None else out


def _truncated(fmt: str) -> ValueError:
    return ValueError(f"corrupt {fmt} data: unexpected end of input")


def _xz_pieces(read: Callable[[int], bytes | memoryview], left: Callable[[], int]) -> Iterator[bytes]:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    while not d.eof:
        data = b""
        if d.needs_input:  # else the decoder holds output (or input) still to give
            data = read(_IN_CHUNK)
            if not data:
                raise _truncated("xz")
        piece = d.decompress(data, min(_OUT_CHUNK, left()))
        if not data and not piece and not d.eof:  # no progress: never loop forever
            raise _truncated("xz")
        yield piece


def _gzip_pieces(read: Callable[[int], bytes | memoryview], left: Callable[[], int]) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits=31)
    while not d.eof:
        data = d.unconsumed_tail or read(_IN_CHUNK)
        piece = d.decompress(data, min(_OUT_CHUNK, left()))
        if not data and not piece:
            raise _truncated("gzip")
        yield piece


def _zstd_pieces(read: Callable[[int], bytes | memoryview], left: Callable[[], int]) -> Iterator[bytes]:
    import zstandard

    # zstd's decompressobj takes no output limit: it is fed few enough bytes at a time that their
    # output stays within what is left of the limit (at least 256 bytes a step: 8 MiB at most)
    d = zstandard.ZstdDecompressor().decompressobj()
    view, at = memoryview(b""), 0
    while not d.eof:
        if at >= len(view):
            view, at = memoryview(read(_IN_CHUNK)), 0
            if not view:
                raise _truncated("zstd")
        n = max(256, min(_OUT_CHUNK, left()) // _ZSTD_MAX_RATIO)
        piece = d.decompress(view[at:at + n])
        at += n
        yield piece


def stat_key_of(st: os.stat_result) -> tuple[int, int, int, int]:
    """What identifies a file's content for kmodsim's caches: (size, mtime_ns, ctime_ns, inode)."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class FileImage:
    """A plain module file, read on demand: each slice is one ``pread``.

    The hot path reads a few KiB of a ~100 KiB module (headers, symbols, strings, ``__versions``,
    ``.modinfo``): copying just those costs less than mapping the file, whose every first touch of
    a page is a fault (measured on the 6.1 tree: ~0.1 CPU-s of 0.75 went to faults and munmap).
    A file that shrinks while being read gives an :class:`ElfError`, never short data."""

    __slots__ = ("fd", "size", "_head", "_tail", "_tail_at")

    # ld -r puts the symbol table, its strings, the section names and the section header table
    # last: one read of the file's tail serves them (and the signature) for most modules.
    TAIL = 32 << 10

    def __init__(self, fd: int, size: int, head: bytes = b"") -> None:
        """``head``: the file's first bytes, already read (the ELF header is served from them)."""
        self.fd, self.size, self._head = fd, size, head
        self._tail: bytes | None = None
        self._tail_at = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, key: slice) -> bytes:
        if not isinstance(key, slice):
            raise TypeError("FileImage supports slices only")
        start, stop = key.start, key.stop
        # the readers' slices are [a:b] with 0 <= a <= b <= size: no normalising (~8 a module)
        if (key.step is not None or type(start) is not int or type(stop) is not int
                or not 0 <= start <= stop <= self.size):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise ValueError("FileImage supports contiguous slices only")
        if stop <= start:
            return b""
        if stop <= len(self._head):
            return self._head[start:stop]
        if start >= self.size - self.TAIL:
            if self._tail is None:
                self._tail_at = at = max(0, self.size - self.TAIL)
                self._tail = os.pread(self.fd, self.size - at, at)
                if len(self._tail) != self.size - at:
                    raise ElfError(f"file shrank while being read (at {at:#x})")
            return self._tail[start - self._tail_at:stop - self._tail_at]
        data = os.pread(self.fd, stop - start, start)
        if len(data) != stop - start:
            raise ElfError(f"file shrank while being read (at {start:#x})")
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _reader(fd: int, size: int) -> Callable[[int], bytes]:
    """``read(n)`` for :func:`inflate`: the file from its start, no more than ``size`` bytes asked
    for at once (a small module costs one read of its size, not a 1 MiB buffer)."""
    at = 0

    def read(n: int) -> bytes:
        nonlocal at
        data = os.pread(fd, min(n, max(size - at, 0)) or n, at)
        at += len(data)
        return data

    return read


def _tail(fd: int, size: int) -> Callable[[], bytes]:
    return lambda: os.pread(fd, _TAIL, max(0, size - _TAIL))


def open_image(path: str, max_size: int = DEFAULT_MAX_SIZE) -> tuple[ImageBytes, str, int, tuple[int, int, int, int]]:
    """Like :func:`read_image`, for the hot path: a plain file comes back as a :class:`FileImage`
    (close it), a compressed one decompressed in memory. The fourth item is the stat key of the
    file read — (size, mtime_ns, ctime_ns, inode), from ``fstat`` of the open file, so that it
    describes exactly the content parsed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModuleError(path, exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModuleError(path, "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        size = st.st_size
        if size == 0:
            raise ModuleError(path, "empty file")
        key = stat_key_of(st)
        head = os.pread(fd, 64, 0)  # the compression magic, or the ELF header
        fmt = compression_of(head)
        if not fmt:
            img, fd = FileImage(fd, size, head), -1
            return img, "", size, key
        return inflate(_reader(fd, size), fmt, max_size, _tail(fd, size)), fmt, size, key
    except ValueError as exc:
        raise ModuleError(path, str(exc)) from None
    except OSError as exc:
        raise ModuleError(path, exc.strerror or str(exc)) from None
    finally:
        if fd >= 0:
            os.close(fd)


def read_image(path: str, max_size: int = DEFAULT_MAX_SIZE) -> tuple[ImageBytes, str, int]:
    """The ELF image of a module file: (buffer, compression, file size).

    Plain files are memory-mapped (read-only; nothing is ever written to the user's files).
    """
    try:
        # O_NONBLOCK: a FIFO or device named *.ko must not block the whole scan
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ModuleError(path, exc.strerror or str(exc)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ModuleError(path, "is a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
    with open(fd, "rb") as f:
        try:
            size = st.st_size
            if size == 0:
                raise ModuleError(path, "empty file")
            head = f.read(6)
            fmt = compression_of(head)
            if fmt:
                return inflate(_reader(fd, size), fmt, max_size, _tail(fd, size)), fmt, size
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ), "", size
        except ValueError as exc:
            raise ModuleError(path, str(exc)) from None
        except OSError as exc:
            raise ModuleError(path, exc.strerror or str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

def module_name_from_path(path: str) -> str:
    """kmod's rule: basename without the module suffix, '-' replaced by '_'."""
    base = os.path.basename(path)
    for suf in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(suf):
            base = base[: -len(suf)]
            break
    return base.replace("-", "_")


def _signature(buf: ImageBytes, size: int) -> tuple[Signature | None, int]:
    """The appended signature (mod_verify_sig's layout) and the size of the part before it."""
    n = len(MODULE_SIG_STRING)
    if size < n + 12:
        return None, size
    tail = buf[size - n - 12:size]
    if tail[12:] != MODULE_SIG_STRING:
        return None, size
    algo, hsh, id_type, signer_len, key_id_len, sig_len = struct.unpack_from(">BBBBB3xI", tail, 0)
    payload = size - n - 12
    total = sig_len + signer_len + key_id_len
    if total > payload:
        raise ElfError(f"appended signature claims {total} bytes, only {payload} precede it")
    return (Signature(PKEY_ID_TYPES.get(id_type, str(id_type)), algo, hsh, signer_len, key_id_len, sig_len),
            payload - total)


def parse_module(buf: ImageBytes, path: str, compression: str = "", file_size: int | None = None) -> Module:
    """Parse a module image (already decompressed). Raises ElfError on malformed input."""
    return Module.from_record(parse_record(buf, path, compression, file_size))


def parse_record(buf: ImageBytes, path: str, compression: str = "", file_size: int | None = None) -> ModuleRecord:
    """Parse a module image straight into its :class:`ModuleRecord` (the hot path: worker
    processes send these to the parent and the cache stores them)."""
    return parse_view(buf, path, compression, file_size)[0]


def parse_view(buf: ImageBytes, path: str, compression: str = "", file_size: int | None = None,
               elf: ElfFile | None = None) -> tuple[ModuleRecord, ElfFile]:
    """:func:`parse_record`, and the :class:`~kmodsim.elf.ElfFile` it read the image with, for
    readers that need more of the file than the record keeps (the loader, the footprint): one
    parse of the file serves both. ``elf``: the image's view when the caller made it already."""
    size = len(buf)
    sig, elf_size = _signature(buf, size)
    if elf is None:
        elf = ElfFile(buf)
    if elf.type != ET_REL:
        raise ElfError(f"not a kernel module: ELF type {ET_NAMES.get(elf.type, elf.type)}, expected ET_REL")
    if not elf.indices(".gnu.linkonce.this_module"):
        raise ElfError("not a kernel module: no .gnu.linkonce.this_module section")
    symtab = elf.symtab()
    if symtab is None:
        raise ElfError("module has no symbol table")

    # section index -> role (most modules export nothing: one search of the name table says so)
    ksym_kind: dict[int, str] = {}
    crc_secs: list[int] = []
    kstr_idx = -1
    if "__k" in elf.section_names_table:
        for sname, kind in KSYMTAB_KINDS.items():
            for i in elf.indices(sname):
                ksym_kind[i] = kind
        crc_secs = [i for sname in KCRCTAB_SECTIONS for i in elf.indices(sname)]
        kstr_idx = next(iter(elf.indices("__ksymtab_strings")), -1)

    st_name, st_info, st_shndx, st_value, strtab = elf.symbol_arrays(symtab)
    find = strtab.find

    # imports: named undefined symbols, selected and decoded column-wise (C level, no per-symbol
    # Python code: a tree has ~2*10^5 of them). Undefined symbols are global: only the globals
    # (from the symtab's sh_info on) are looked at unless a local one is undefined too.
    nsym = len(st_shndx)
    g = symtab.info if 0 < symtab.info <= nsym and 0 not in st_shndx[1:symtab.info] else 0
    names_g, shndx_g = st_name[g:], st_shndx[g:]
    und = list(map(not_, shndx_g))
    if 0 in names_g:  # nameless undefined symbols (the null symbol) are not imports
        und = list(map(and_, und, map(bool, names_g)))
    offs = list(compress(names_g, und))
    ends = list(map(find, repeat("\0"), offs))
    if -1 in ends:
        k = ends.index(-1)
        i = g + list(compress(range(len(und)), und))[k]
        raise ElfError(f"symbol {i} name at {offs[k]:#x} is outside the string table")
    im_names = list(map(strtab.__getitem__, map(slice, offs, ends)))
    im_weak = bytes(compress(st_info[g:], und)).translate(_WEAK)

    # exports, namespaces and CRCs: the few symbols defined in the export sections (or absolute)
    wanted = {SHN_ABS, kstr_idx, *ksym_kind, *crc_secs}
    exports: list[tuple[str, str]] = []
    crc_syms: dict[str, tuple[int, int]] = {}
    ns_off: dict[str, int] = {}
    for i in _positions(st_shndx, wanted):
        nm = st_name[i]
        if nm == 0:
            continue
        end = find("\0", nm)
        if end < 0:
            raise ElfError(f"symbol {i} name at {nm:#x} is outside the string table")
        name = strtab[nm:end]
        shndx = st_shndx[i]
        if shndx in ksym_kind:
            if name.startswith("__ksymtab_"):
                exports.append((name[10:], ksym_kind[shndx]))
        elif shndx == kstr_idx:
            if name.startswith("__kstrtabns_"):
                ns_off[name[12:]] = st_value[i]
        elif name.startswith("__crc_"):
            crc_syms[name[6:]] = (shndx, st_value[i])

    crc_data: dict[int, bytes] = {}
    kstr = elf.data(elf.section_at(kstr_idx)) if kstr_idx >= 0 else b""
    ex_crcs, ex_ns = [], []
    for name, _kind in exports:
        crc = -1
        c = crc_syms.get(name)
        if c is not None:
            shndx, val = c
            if shndx == SHN_ABS:
                crc = val & 0xFFFFFFFF
            else:
                data = crc_data.get(shndx)
                if data is None:
                    data = crc_data[shndx] = elf.data(elf.section_at(shndx))
                crc = elf.u32(data, val)
        ex_crcs.append(crc)
        off = ns_off.get(name)
        ex_ns.append(cstr(kstr, off, "export namespace") if off is not None else "")

    ve_names, ve_crcs = _versions(elf)

    mi = elf.section(".modinfo")
    modinfo = ""
    if mi is not None:  # the non-empty strings, each NUL-terminated (as _join makes them)
        text = elf.data(mi).decode("utf-8", "surrogateescape")
        if "\0\0" in text or text.startswith("\0"):  # empty strings (padding) to drop
            modinfo = _join(list(filter(None, text.split("\0"))))
        else:
            modinfo = text if not text or text.endswith("\0") else text + "\0"
    name = ""
    at = modinfo.find("name=")
    while at >= 0:
        if at == 0 or modinfo[at - 1] == "\0":
            name = modinfo[at + 5:modinfo.index("\0", at)]
            break
        at = modinfo.find("name=", at + 1)
    if not name:
        name = _this_module_name(elf) or module_name_from_path(path)
    if exports:
        ex_names, ex_kinds = _join([e[0] for e in exports]), _join([e[1] for e in exports])
        ex_ns_text, ex_crcs_raw = _join(ex_ns), _ints("q", ex_crcs)
    else:  # most modules
        ex_names = ex_kinds = ex_ns_text = ""
        ex_crcs_raw = b""
    return ModuleRecord(
        name=name, path=path,
        export_names=ex_names, export_namespaces=ex_ns_text, export_kinds=ex_kinds, export_crcs=ex_crcs_raw,
        import_names=_join(im_names), import_weak=im_weak,  # their CRCs: looked up on use (_import_crcs)
        modinfo=modinfo,
        section_names=elf.section_names_table, section_columns=b"".join([c[1:].tobytes() for c in (
            elf.sh_name_off, elf.sh_type, elf.sh_flags, elf.sh_size, elf.sh_addralign, elf.sh_entsize)]),
        version_names=_join(ve_names), version_crcs=_ints("Q", ve_crcs),
        signature=None if sig is None else cast("tuple[str, int, int, int, int, int]", tuple(sig)),
        machine=elf.machine, ei_class=elf.ei_class, little_endian=elf.little, compression=compression,
        file_size=size if file_size is None else file_size, elf_size=elf_size,
    ), elf


def _positions(column: array[int], values: set[int]) -> list[int]:
    """Indices of the u16 ``column`` whose value is in ``values`` — few among many: found with
    ``bytes.find`` (memchr speed) rather than by looking at every element from Python."""
    raw = column.tobytes()
    out: list[int] = []
    for v in values:
        if not 0 <= v <= 0xFFFF:
            continue
        pat = array("H", (v,)).tobytes()
        j = raw.find(pat)
        while j >= 0:
            if j & 1:  # straddles two entries
                j = raw.find(pat, j + 1)
                continue
            out.append(j >> 1)
            j = raw.find(pat, j + 2)
    out.sort()
    return out


def _versions(elf: ElfFile) -> tuple[list[str], list[int]]:
    """``__versions`` records, or the extended tables when present (the kernel prefers them)."""
    ext = "__version_ext_" in elf.section_names_table
    ext_crcs = elf.section("__version_ext_crcs") if ext else None
    ext_names = elf.section("__version_ext_names") if ext else None
    if ext_crcs is not None and ext_names is not None:
        raw = elf.data(ext_crcs)
        names = [n.decode("utf-8", "surrogateescape") for n in elf.data(ext_names).split(b"\0")]
        if len(raw) % 4:
            raise ElfError("__version_ext_crcs size is not a multiple of 4")
        count = len(raw) // 4
        if len(names) < count:
            raise ElfError(f"__version_ext_names has fewer names than __version_ext_crcs ({count})")
        return names[:count], list(struct.unpack(elf.e + f"{count}I", raw))
    sec = elf.section("__versions")
    if sec is None or sec.type == SHT_NOBITS:
        return [], []
    data = elf.data(sec)
    if len(data) % 64:
        raise ElfError(f"__versions size {len(data):#x} is not a multiple of 64")
    # The CRC field is an unsigned long; the kernel compares its low 32 bits: one u32 column.
    words = array("I")
    words.frombytes(data)
    if elf.little != (sys.byteorder == "little"):
        words.byteswap()
    crcs = words[1 if elf.is64 and not elf.little else 0::16].tolist()
    # Names, at C level: the fixed-width name fields cut out and joined, NUL turned into space and
    # the text split on whitespace. That is "each field up to its first NUL" exactly when no field
    # holds whitespace, every field starts with a name character and ends with a NUL (so no word
    # spans two fields) and there is one word per field (so nothing follows a terminator). Any
    # other section takes the exact cut below, which also reports a field without a NUL.
    width = 60 if not elf.is64 else 56
    n = len(data) // 64
    fields = b"".join(struct.unpack(f"{64 - width}x{width}s" * n, data))
    if (n and b"\0" not in fields[0::width] and fields[width - 1::width].count(0) == n
            and len(fields.translate(None, _WHITESPACE)) == len(fields)):
        names = fields.translate(_NUL_TO_SPACE).decode("latin-1").split()
        if len(names) == n:
            return names, crcs
    text = data.decode("latin-1")
    starts = range(64 - width, len(text), 64)
    ends = list(map(text.find, repeat("\0"), starts, range(64, len(text) + 64, 64)))
    if -1 in ends:
        off = starts[ends.index(-1)]
        raise ElfError(f"__versions record at {off - (64 - width):#x} has no NUL-terminated name")
    return list(map(text.__getitem__, map(slice, starts, ends))), crcs


def _this_module_name(elf: ElfFile) -> str:
    """``struct module``'s name field (after ``state`` and ``list``) in ``.gnu.linkonce.this_module``."""
    sec = elf.section(".gnu.linkonce.this_module")
    if sec is None or sec.type == SHT_NOBITS:
        return ""
    off = 24 if elf.is64 else 12
    data = elf.data(sec)
    raw = data[off:off + 56]
    end = raw.find(b"\0")
    if end <= 0:
        return ""
    try:
        return raw[:end].decode("ascii")
    except UnicodeDecodeError:
        return ""


def read_module(path: str, max_size: int = DEFAULT_MAX_SIZE) -> Module:
    """Read and parse a module file. Raises :class:`ModuleError` (one line) on any problem."""
    buf, fmt, fsize, _key = open_image(path, max_size)
    try:
        return parse_module(buf, path, fmt, fsize)
    except ElfError as exc:
        raise ModuleError(path, str(exc)) from None
    finally:
        if isinstance(buf, FileImage):
            buf.close()
