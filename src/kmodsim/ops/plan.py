"""The devirtualization plan: which conversion applies to each call site, ranked by payoff.

For every call site of every member, one conversion applies (first match wins):

``direct``
    a single implementation is linked -- the monolithic case: only one instance exists, the user
    chose one (``--instance``/``--prefix``), or every instance uses the same function -- so the call
    becomes a direct call of that function;
``keep``
    the site is already a static call (``static_call(...)``, ``static_call_cond(...)``, a wrapper)
    and no single implementation is known: nothing to gain;
``static_call``
    a mandatory member called indirectly: ``static_call(<prefix>m)(args)``;
``static_call_cond``
    an optional member returning ``void``: ``static_call_cond(<prefix>m)(args)``, its NULL test
    goes away;
``static_call_ret0``
    an optional member whose missing implementation must return 0: a static call defaulting to
    ``__static_call_return0`` (``KVM_X86_OP_OPTIONAL_RET0``);
``early_return``
    an optional member returning a value whose call is guarded by a NULL test that bails out
    (error code, ``goto``, plain ``return``): the test becomes an early return on a capability
    flag, the call a static call.

Members are ranked by the number of indirect calls (``p->m()``, ``x.m()``, ``INDIRECT_CALL_n``)
the conversion removes, then by the number of call sites.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .census import Census
from .model import MANDATORY, RET0, CallSite, Member


@dataclass
class SitePlan:
    site: CallSite
    conversion: str
    target: str | None  # the direct function, for "direct"

    def to_json(self) -> dict:
        return {
            "file": self.site.file,
            "line": self.site.line,
            "function": self.site.function,
            "idiom": self.site.idiom,
            "conversion": self.conversion,
            "target": self.target,
        }


@dataclass
class MemberPlan:
    member: str
    classification: str
    conversion: str
    removes: int  # indirect calls removed
    sites: list[SitePlan] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "member": self.member,
            "class": self.classification,
            "conversion": self.conversion,
            "removes": self.removes,
            "sites": [s.to_json() for s in self.sites],
        }


def direct_targets(census: Census, instance: str | None = None, prefix: str | None = None) -> dict[str, str]:
    """Member -> the function a direct call should name.

    * ``prefix``: ``<prefix>_<member>``, for every member -- except, when an instance named
      ``<prefix>_...`` exists, the members that instance leaves unset;
    * ``instance``: that instance's initializer (members it sets to a plain function name);
    * neither: the only instance's initializer if there is one instance, else the members every
      instance initialises to the same function.
    """
    members = [m.name for m in census.members]
    by_name = {i.name: i for i in census.instances}
    if prefix:
        owner = next((i for i in census.instances if i.name.startswith(prefix + "_")), None)
        return {
            m: f"{prefix}_{m}" for m in members if owner is None or m in owner.implementations
        }
    if instance:
        inst = by_name[instance]
        return {m: f for m, f in inst.implementations.items() if f.isidentifier() and m in members}
    if len(census.instances) == 1:
        return direct_targets(census, instance=census.instances[0].name)
    out = {}
    for mem in census.members:
        funcs = {mem.implementations.get(i.name) for i in census.instances}
        if len(funcs) == 1:
            (f,) = funcs
            if f is not None and f.isidentifier():
                out[mem.name] = f
    return out


def _conversion(mem: Member, site: CallSite, direct: dict[str, str]) -> tuple[str, str | None]:
    if mem.name in direct and not site.in_macro:
        return "direct", direct[mem.name]
    if not site.indirect:
        return "keep", None
    if mem.effective == MANDATORY:
        return "static_call", None
    if mem.returns_void:
        return "static_call_cond", None
    if site.guarded and any(nc.fallback in ("error", "return") for nc in mem.null_checks):
        return "early_return", None
    if mem.effective == RET0:
        return "static_call_ret0", None
    # optional, non-void, not ret0: static_call_cond() is for void calls only, so the call needs a
    # NULL test that returns early (the existing guard, or one to add: the list says it may be NULL)
    return "early_return", None


def make_plan(census: Census, direct: dict[str, str] | None = None) -> list[MemberPlan]:
    """One :class:`MemberPlan` per called member, best payoff first."""
    direct = direct if direct is not None else direct_targets(census)
    plans = []
    for mem in census.members:
        if not mem.call_sites:
            continue
        sites = []
        for cs in mem.call_sites:
            conv, target = _conversion(mem, cs, direct)
            sites.append(SitePlan(cs, conv, target))
        removes = sum(1 for s in sites if s.site.indirect and s.conversion != "keep")
        counts = Counter(s.conversion for s in sites if s.site.indirect) or Counter(s.conversion for s in sites)
        plans.append(MemberPlan(mem.name, mem.effective, counts.most_common(1)[0][0], removes, sites))
    plans.sort(key=lambda p: (-p.removes, -len(p.sites), p.member))
    return plans
