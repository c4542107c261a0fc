"""Binary side of the census: indirect calls and static-call sites in built modules (``.ko``).

Read with kmodsim's bounds-checked ELF reader (:mod:`kmodsim.elf`: ELF32/ELF64, either byte
order, ``SHT_REL``/``SHT_RELA``); compressed modules (``.ko.xz``, ``.ko.gz``, ``.ko.zst``) are
decompressed in memory first by :func:`kmodsim.module.read_image`, with its size limit.

What is counted, per module:

* **indirect calls**: relocations, in executable sections, against a retpoline thunk symbol
  (``__x86_indirect_thunk_<reg>``, ``__x86_indirect_call_thunk_<reg>``, and the
  ``__x86_indirect_jump_thunk_<reg>`` variant).  Each is attributed to the function (``STT_FUNC``
  symbol) whose range holds the relocated offset, and classified by the opcode in front of it:
  ``call`` (``e8``), ``jmp`` (``e9``, a tail call) or ``jcc`` (``0f 8x``);
* **static-call sites**: entries of ``.static_call_sites`` (``struct static_call_site``: two
  32-bit PC-relative fields, call address and key).  The count is the section size over the entry
  size (``sh_entsize``, 8 if unset); through ``.rela.static_call_sites`` each site is attributed to
  its function and to its key (``__SCK__kvm_x86_vcpu_run`` -> ``kvm_x86_vcpu_run``; a site may
  name the trampoline ``__SCT__<name>`` instead when the key is not exported);
* ``.retpoline_sites`` entries (the kernel's own list of thunk calls to patch), when present, as
  a cross-check of the relocation count.

Malformed input raises :class:`ElfError` with a one-line reason; nothing is read out of bounds.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..elf import (
    SHF_EXECINSTR,
    SHN_LORESERVE,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_REL,
    SHT_RELA,
    ElfError,
    ElfFile,
    Section,
    Symbol,
)
from ..module import ModuleError, read_image

THUNK_PREFIXES = ("__x86_indirect_thunk_", "__x86_indirect_call_thunk_", "__x86_indirect_jump_thunk_")
STT_FUNC, STT_SECTION = 2, 3

__all__ = ["BinaryReport", "ElfError", "analyze", "analyze_path", "binary_text", "module_name"]


def _byte_at(elf: ElfFile, sec: Section, offset: int) -> int | None:
    if sec.type == SHT_NOBITS or not 0 <= offset < sec.size:
        return None
    at = sec.offset + offset
    return elf.buf[at:at + 1][0]


@dataclass
class BinaryReport:
    """What :func:`analyze` found in one module."""

    file: str
    elf_class: int
    machine: int
    indirect_by_function: dict[str, Counter] = field(default_factory=dict)  # function -> {call,jmp,jcc,other}
    thunks: Counter = field(default_factory=Counter)  # thunk symbol -> relocations
    static_call_sites: int = 0
    static_call_entsize: int = 0
    static_calls_by_key: Counter = field(default_factory=Counter)
    static_calls_by_function: Counter = field(default_factory=Counter)
    retpoline_sites: int | None = None

    @property
    def indirect_total(self) -> int:
        return sum(self.thunks.values())

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "elf_class": self.elf_class,
            "machine": self.machine,
            "indirect_calls": self.indirect_total,
            "indirect_by_kind": dict(sum(self.indirect_by_function.values(), Counter())),
            "indirect_by_function": {
                f: dict(c) for f, c in sorted(self.indirect_by_function.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
            },
            "thunks": dict(sorted(self.thunks.items())),
            "static_call_sites": self.static_call_sites,
            "static_call_entsize": self.static_call_entsize,
            "static_calls_by_key": dict(sorted(self.static_calls_by_key.items(), key=lambda kv: (-kv[1], kv[0]))),
            "static_calls_by_function": dict(
                sorted(self.static_calls_by_function.items(), key=lambda kv: (-kv[1], kv[0]))
            ),
            "retpoline_sites": self.retpoline_sites,
        }


class _FunctionIndex:
    """Maps (section index, offset) to the function symbol covering it."""

    def __init__(self, symbols: list[Symbol], sections: list[Section]) -> None:
        self.sections = sections
        by_sec: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
        for s in symbols:
            if s.type == STT_FUNC and SHN_UNDEF < s.shndx < SHN_LORESERVE:
                by_sec[s.shndx].append((s.value, s.size, s.name))
        self.starts: dict[int, list[int]] = {}
        self.funcs: dict[int, list[tuple[int, int, str]]] = {}
        for sec, lst in by_sec.items():
            lst.sort()
            self.funcs[sec] = lst
            self.starts[sec] = [v for v, _, _ in lst]

    def lookup(self, shndx: int, offset: int) -> str:
        starts = self.starts.get(shndx)
        if starts:
            i = bisect.bisect_right(starts, offset) - 1
            if i >= 0:
                value, size, name = self.funcs[shndx][i]
                if offset < value + max(size, 1):
                    return name
        sec = self.sections[shndx].name if 0 <= shndx < len(self.sections) else f"#{shndx}"
        return f"<{sec}+{offset:#x}>"


def analyze(elf: ElfFile, name: str = "<elf>") -> BinaryReport:
    rep = BinaryReport(file=name, elf_class=64 if elf.is64 else 32, machine=elf.machine)
    syms = list(elf.symbols())
    index = _FunctionIndex(syms, elf.sections)
    nsec = len(elf.sections)
    by_func: dict[str, Counter] = defaultdict(Counter)
    for rsec in elf.sections:
        if rsec.type not in (SHT_REL, SHT_RELA) or not 0 < rsec.info < nsec:
            continue
        target = elf.sections[rsec.info]
        if target.name == ".static_call_sites":
            _static_call_relocs(elf, rsec, target, syms, index, rep)
            continue
        if not target.flags & SHF_EXECINSTR:
            continue
        for off, si, _typ, _add in elf.relocations(rsec):
            if not 0 <= si < len(syms):
                raise ElfError(f"{rsec.name}: symbol index {si} out of range")
            name = syms[si].name
            if not name.startswith(THUNK_PREFIXES):
                continue
            rep.thunks[name] += 1
            op = _byte_at(elf, target, off - 1)
            if op == 0xE8:
                kind = "call"
            elif op == 0xE9:
                kind = "jmp"
            elif op is not None and 0x80 <= op <= 0x8F and _byte_at(elf, target, off - 2) == 0x0F:
                kind = "jcc"
            else:
                kind = "other"
            by_func[index.lookup(target.index, off)][kind] += 1
    rep.indirect_by_function = dict(by_func)
    scs = elf.section(".static_call_sites")
    if scs is not None:
        rep.static_call_entsize = scs.entsize or 8
        rep.static_call_sites = scs.size // rep.static_call_entsize
    rs = elf.section(".retpoline_sites")
    if rs is not None:
        rep.retpoline_sites = rs.size // (rs.entsize or 4)
    return rep


def _static_call_relocs(elf: ElfFile, rsec: Section, target: Section, syms: list[Symbol],
                        index: _FunctionIndex, rep: BinaryReport) -> None:
    entsize = target.entsize or 8
    for off, si, _typ, addend in elf.relocations(rsec):
        addend = addend or 0  # SHT_REL: the addend is in the field; the call site needs none
        if not 0 <= si < len(syms):
            raise ElfError(f"{rsec.name}: symbol index {si} out of range")
        sym = syms[si]
        field_no = (off % entsize) // 4
        if field_no == 0:  # call address: section symbol + addend (PC-relative to the field itself)
            if sym.type == STT_SECTION or sym.type == STT_FUNC:
                where = index.lookup(sym.shndx, sym.value + addend)
            else:
                where = sym.name
            rep.static_calls_by_function[where] += 1
        elif field_no == 1:  # key: __SCK__<name> (or the trampoline __SCT__<name> when the key is
            # not exported to modules); the low bits of the addend are flags
            key = sym.name
            if key.startswith(("__SCK__", "__SCT__")):
                key = key[7:]
            rep.static_calls_by_key[key] += 1


def analyze_path(path: Path) -> BinaryReport:
    """Analyze one module file; any problem with it raises :class:`ElfError` (one line)."""
    try:
        buf, _fmt, _size = read_image(str(path))
    except ModuleError as exc:
        raise ElfError(exc.problem) from None
    try:
        return analyze(ElfFile(buf), str(path))
    finally:
        close = getattr(buf, "close", None)
        if close is not None:
            close()


def module_name(path: str) -> str:
    base = Path(path).name
    for suf in (".xz", ".gz", ".zst"):
        if base.endswith(suf):
            base = base[: -len(suf)]
    return base[:-3] if base.endswith(".ko") else base


def binary_text(reports: list[BinaryReport], top: int = 10) -> str:
    out = []
    for r in reports:
        kinds = sum(r.indirect_by_function.values(), Counter())
        out.append(f"{r.file}: ELF{r.elf_class}, machine {r.machine}")
        out.append(
            f"  indirect calls via thunks: {r.indirect_total} in {len(r.indirect_by_function)} functions ("
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + ")"
            + (f"; .retpoline_sites: {r.retpoline_sites}" if r.retpoline_sites is not None else "")
        )
        out.append(f"  static-call sites: {r.static_call_sites} (entry size {r.static_call_entsize}), "
                   f"{len(r.static_calls_by_key)} keys, {len(r.static_calls_by_function)} functions")
        ranked = sorted(r.indirect_by_function.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:top]
        if ranked:
            out.append("  most indirect calls:")
            out += [f"    {sum(c.values()):>4}  {f}" for f, c in ranked]
        keys = sorted(r.static_calls_by_key.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        if keys:
            out.append("  most used static calls:")
            out += [f"    {n:>4}  {k}" for k, n in keys]
    groups: dict[str, list[BinaryReport]] = defaultdict(list)
    for r in reports:
        groups[module_name(r.file)].append(r)
    multi = {k: v for k, v in groups.items() if len(v) > 1}
    if multi:
        out.append("")
        out.append("comparison (same module name):")
        out.append(f"  {'module':<14} {'indirect':>9} {'static':>7}  file")
        for mod in sorted(multi):
            for r in multi[mod]:
                out.append(f"  {mod:<14} {r.indirect_total:>9} {r.static_call_sites:>7}  {r.file}")
    return "\n".join(out) + "\n"
