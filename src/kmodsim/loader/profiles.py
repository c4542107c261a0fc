"""The loader's view of a target: one :class:`Profile`, built from :mod:`kmodsim.target`.

Nothing here is a second table: the release-dependent fields are the facts of
:data:`kmodsim.target.BEHAVIOUR` (each with its release and commit, or its Debian patch), read at
the target's release; the configuration fields are :data:`kmodsim.target.KCONFIG` options, read
from the target's ``.config``; ``series`` and ``verified`` are the target's verified profile
(:func:`kmodsim.target.profile_for`: the nearest verified series, with a warning when the release
is not of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..target import FACTS, KCONFIG, VERIFIED, Target, has, series_name

# Profile fields that are facts of kmodsim.target.BEHAVIOUR
RELEASE_FIELDS = ("namespaces", "inherit_taint", "early_exists_check", "taints_after_unformed", "kstrtobool_tf",
                  "missing_version_refused", "btf_mismatch_quiet")
# Profile fields that are .config options (kmodsim.target.KCONFIG)
CONFIG_FIELDS = ("modversions", "force_load", "module_sig", "sig_force", "allow_missing_ns_imports", "btf_modules",
                 "allow_btf_mismatch")


@dataclass(frozen=True)
class Profile:
    series: str
    verified: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    # -- release behaviour: kmodsim.target.BEHAVIOUR ----------------------------------------------
    # verify_namespace_is_imported() (v5.4)
    namespaces: bool = True
    # inherit_taint() (v5.13)
    inherit_taint: bool = True
    # early_mod_check()'s EEXIST check (v6.4): the order of the log lines is unchanged
    early_exists_check: bool = False
    # module_augment_kernel_taints() after add_unformed_module() (v6.4)
    taints_after_unformed: bool = False
    # kstrtobool() takes t/T/f/F (v5.19)
    kstrtobool_tf: bool = True
    # check_version() refuses a symbol __versions does not list (Debian's patch)
    missing_version_refused: bool = True
    # btf_module_notify(): an ignored BTF mismatch logs no verifier messages (v6.3)
    btf_mismatch_quiet: bool = False
    # -- configuration: kmodsim.target.KCONFIG, from the target's .config ---------------------------
    modversions: bool = True  # CONFIG_MODVERSIONS
    force_load: bool = True  # CONFIG_MODULE_FORCE_LOAD
    module_sig: bool = True  # CONFIG_MODULE_SIG
    sig_force: bool = False  # CONFIG_MODULE_SIG_FORCE
    allow_missing_ns_imports: bool = False  # CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS
    btf_modules: bool = True  # CONFIG_DEBUG_INFO_BTF_MODULES
    allow_btf_mismatch: bool = True  # CONFIG_MODULE_ALLOW_BTF_MISMATCH
    # -- the same in every release the model covers -----------------------------------------------
    # load_module(): "Check module struct version now, before we try to use module."
    # (check_modstruct_version(); kernel/module/version.c since 5.19, main.c/module.c before)
    modstruct_version: bool = True
    # symbols simplify_symbols() leaves undefined on x86 (ignore_undef_symbol)
    ignore_undef: tuple[str, ...] = ("_GLOBAL_OFFSET_TABLE_",)
    # the memory layout behind /proc/modules sizes (kmodsim.memory_layout: "6.1", or "6.4" for mod_mem[])
    footprint: str = "6.1"


def profile_at(version: tuple[int, int], series: str, verified: bool, notes: tuple[str, ...] = ()) -> Profile:
    """The profile of a kernel of ``version``: every release field read from the one table, the
    configuration fields at Debian's values (:func:`configured` puts the target's in)."""
    values: dict[str, Any] = {f: has(f, version) for f in RELEASE_FIELDS}
    values.update({f: KCONFIG[f].debian for f in CONFIG_FIELDS})
    mod_mem = has("mod_mem", version)
    return Profile(series, verified, notes, footprint=series_name(FACTS["mod_mem"].since) if mod_mem else "6.1",
                   **values)


def configured(profile: Profile, target: Target) -> Profile:
    """The profile with its configuration fields taken from the target (its ``.config``; Debian's
    values when it has none)."""
    values: dict[str, Any] = {f: target.kconfig(f) for f in CONFIG_FIELDS}
    return replace(profile, **values)


# the verified series, by name: ``kmodsim load --profile``
PROFILES: dict[str, Profile] = {
    series_name(v.series): profile_at(v.series, series_name(v.series), True, (v.evidence,)) for v in VERIFIED}


def profile_of(target: Target) -> Profile:
    """The loader's profile of a target: the table read at its release, its verified profile's
    series and flag, its configuration."""
    notes = tuple(v.evidence for v in VERIFIED if v.series == target.profile.series and target.verified)
    return configured(profile_at(target.version, target.series, target.verified, notes), target)


def profile_for(release: str) -> Profile:
    """The profile of a kernel release string (``6.1.0-56-amd64`` -> 6.1), Debian's configuration."""
    t = Target.of(None, release)
    return profile_at(t.version, t.series, t.verified)
