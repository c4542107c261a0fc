"""Records produced by the census (plain dataclasses, JSON-ready through ``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field

MANDATORY = "mandatory"
OPTIONAL = "optional"
RET0 = "ret0"


@dataclass
class Location:
    file: str
    line: int
    column: int
    function: str | None  # enclosing function (or macro, for sites in a #define body); None at file scope

    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def location_json(self) -> dict:
        """The keys every located item's JSON starts with, in this order."""
        return {"file": self.file, "line": self.line, "column": self.column, "function": self.function}


@dataclass
class CallSite(Location):
    """A call of a member, in one of the idioms of :data:`kmodsim.ops.census.CALL_IDIOMS`."""

    member: str
    idiom: str
    in_macro: bool = False  # found in a #define body by the macro-aware pass
    value_used: bool = True
    guarded: bool = False  # a NULL test of the same member is in the same function
    in_parse_error: bool = False
    # byte span of the enclosing function definition (to look for guard predicates)
    function_span: tuple[int, int] | None = field(default=None, repr=False)
    # what --emit patch replaces with "<target>" -- the callee expression -- or, for
    # INDIRECT_CALL_n(f, f2, f1, args...), with "<target>(": the text up to the first real argument
    span: tuple[int, int] | None = field(default=None, repr=False)
    replacement_suffix: str = field(default="", repr=False)

    @property
    def indirect(self) -> bool:
        """True if the site is an indirect call today (not already a static call)."""
        return self.idiom in ("p->m()", "x.m()") or self.idiom.startswith("INDIRECT_CALL")

    def to_json(self) -> dict:
        return {
            **self.location_json(),
            "idiom": self.idiom,
            "in_macro": self.in_macro,
            "guarded": self.guarded,
            "value_used": self.value_used,
        }


@dataclass
class NullCheck(Location):
    """A test of a member against NULL: ``if (p->m)``, ``if (!x.m)``, ``x.m ? :``, ``WARN_ON(!x.m)``..."""

    member: str
    idiom: str
    assertion: bool = False  # WARN_ON(!x.m) / BUG_ON(!x.m): asserts the member is set
    fallback: str | None = None  # what happens when NULL: "zero", "error", "return", "else", None
    predicate: bool = False  # the test is what its function returns (a helper like kvm_can_use_hv_timer())

    def to_json(self) -> dict:
        return {
            **self.location_json(),
            "idiom": self.idiom,
            "assertion": self.assertion,
            "fallback": self.fallback,
            "predicate": self.predicate,
        }


@dataclass
class Assignment(Location):
    """A runtime store: ``x.m = f`` (member), or a whole-table copy/switch (``kvm_x86_ops = *ops``,
    ``memcpy(&kvm_x86_ops, ...)``, ``kvm_x86_ops = &vmx_x86_ops``)."""

    target: str
    value: str
    idiom: str
    member: str | None = None  # None for whole-table copies

    @property
    def sets_null(self) -> bool:
        return self.value.strip() in ("NULL", "0", "(void *)0")

    def to_json(self) -> dict:
        return {
            **self.location_json(),
            "idiom": self.idiom,
            "target": self.target,
            "value": self.value,
        }


@dataclass
class Instance:
    """A variable of the struct type with an initializer (``struct S vmx_ops = { .m = f, ... }``)."""

    name: str
    file: str
    line: int
    implementations: dict[str, str]  # member -> initializer text (a function name, usually)
    explicit_null: list[str]  # members initialised to NULL / 0

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "file": self.file,
            "line": self.line,
            "implementations": dict(self.implementations),
            "explicit_null": list(self.explicit_null),
        }


@dataclass
class Member:
    """A function-pointer member of the struct and everything found about it."""

    name: str
    index: int
    file: str
    line: int
    return_type: str
    returns_void: bool
    prototype: str  # "int {}(struct kvm_vcpu *vcpu)": format with a function name
    call_sites: list[CallSite] = field(default_factory=list)
    null_checks: list[NullCheck] = field(default_factory=list)
    assignments: list[Assignment] = field(default_factory=list)
    reads: list[Location] = field(default_factory=list)
    implementations: dict[str, str] = field(default_factory=dict)
    unset_in: list[str] = field(default_factory=list)  # instances whose initializer leaves it NULL
    cleared_in: list[str] = field(default_factory=list)  # instances that get "x.m = NULL" at run time
    classification: str = MANDATORY
    evidence: list[str] = field(default_factory=list)
    xmacro_class: str | None = None

    @property
    def effective(self) -> str:
        """The class the member has: the X-macro list's when the member is listed there (that list
        is the kernel's declaration: it decides which static calls may be NULL), else the one
        derived from the code (:attr:`classification`). A disagreement is a mismatch either way."""
        return self.xmacro_class or self.classification

    @property
    def optional(self) -> bool:
        return self.effective in (OPTIONAL, RET0)

    @property
    def ret0(self) -> bool:
        return self.effective == RET0


@dataclass
class XMacroEntry:
    name: str
    macro: str
    classification: str
    file: str
    line: int


@dataclass
class XMacroList:
    """An X-macro list (``KVM_X86_OP(m)`` lines) found by the macro-aware pass."""

    family: str  # base macro name, e.g. KVM_X86_OP
    file: str
    entries: list[XMacroEntry]

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "file": self.file,
            "entries": [{"name": e.name, "macro": e.macro, "class": e.classification, "line": e.line}
                        for e in self.entries],
        }


@dataclass
class Mismatch:
    member: str
    problem: str  # "classification", "not in x-macro list", "not a member"
    derived: str | None
    xmacro: str | None
    evidence: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "member": self.member,
            "problem": self.problem,
            "derived": self.derived,
            "xmacro": self.xmacro,
            "evidence": list(self.evidence),
        }
