"""What differs between kernel versions, as data: one :class:`Profile` per kernel series.

Each field names the behaviour, the release that introduced it and the upstream change (subject,
and the commit where it is certain). ``verified`` says whether ``kmodsim verify --compare`` ran the
scenario suite on that series' real kernel with no difference; an unverified profile is derived from
the sources only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Profile:
    series: str
    verified: bool
    notes: tuple[str, ...] = field(default_factory=tuple)
    # v5.4, "module: add support for symbol namespaces" (8651ec01daed): verify_namespace_is_imported()
    namespaces: bool = True
    # CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS=y turns the refusal into a warning (v5.4)
    allow_missing_ns_imports: bool = False
    # v5.13, "modules: inherit TAINT_PROPRIETARY_MODULE" (262e6ae7081d): inherit_taint()
    inherit_taint: bool = True
    # v5.19 check_modstruct_version(): the module's __versions entry for module_layout is checked
    # against vmlinux's before anything else ("disagrees about version of symbol module_layout").
    modstruct_version: bool = True
    # v6.4, "module: avoid allocation if module is already present and ready": the EEXIST check moved
    # into early_mod_check(), still after check_modinfo() — the order of the log lines is unchanged.
    early_exists_check: bool = False
    # v6.12 (module_augment_kernel_taints(), called once add_unformed_module() succeeded): the
    # out-of-tree/staging/license taints move out of check_modinfo() to after the EEXIST check,
    # with the unsigned-module line, and "module license taints kernel." follows when that call
    # set TAINT_PROPRIETARY_MODULE (in 6.1 its prev_taint is sampled after set_license(): silent).
    # Seen on Debian's 6.12.117 under QEMU; the release that introduced it was not looked up.
    taints_after_unformed: bool = False
    # pr_notice_once() of the unsigned-module line, after add_unformed_module() (CONFIG_MODULE_SIG=y,
    # CONFIG_MODULE_SIG_FORCE unset: Debian's configuration)
    module_sig: bool = True
    sig_force: bool = False
    # CONFIG_MODVERSIONS: check_version(), check_modstruct_version() and the exported-CRC check of
    # check_module_license_and_versions() (check_export_symbol_versions() in 6.12) exist only with it
    modversions: bool = True
    # CONFIG_MODULE_FORCE_LOAD: try_to_force_load() taints (F) and lets the module through; without it
    # it returns -ENOEXEC (no __versions, no vermagic, exports without CRCs are then refused)
    force_load: bool = True
    # check_version(), a symbol the module's __versions does not list: refused ("no symbol version for
    # S", pr_warn each time; resolve_symbol() -> -EINVAL, check_modstruct_version() -> -ENOEXEC), as in
    # the kernel/module/version.c of Debian's 6.1.192 and 6.12.118 and seen on both under QEMU. This is
    # a Debian patch, not upstream behaviour: debian/patches/bugfix/all/
    # module-disable-matching-missing-version-crc.patch ("module: Disable matching missing version
    # CRC", Ben Hutchings, 2016-12-02, Forwarded: not-needed; listed in the series of Debian's linux
    # 6.1.176-1 source package, read with `apt-get source --download-only linux=6.1.176-1` through a
    # private apt state), which "partly reverts commit cd3caefb4663" to "fail closed if a symbol
    # version CRC is missing, as the alternative may allow subverting module signing". Mainline (from
    # v4.9's "Re-enable CONFIG_MODVERSIONS in a slightly weaker form", faaae2a58143) warns once and
    # accepts ("Broken toolchain"): a profile of an unpatched kernel sets this False.
    missing_version_refused: bool = True
    # kstrtobool() accepts t/T/f/F (since v5.3? "lib/kstrtox: ..."; checked on 6.1 only through the model)
    kstrtobool_tf: bool = True
    # symbols simplify_symbols() leaves undefined on x86 (ignore_undef_symbol)
    ignore_undef: tuple[str, ...] = ("_GLOBAL_OFFSET_TABLE_",)
    # the memory layout behind /proc/modules sizes: kmodsim.footprint.PROFILES key
    footprint: str = "6.1"


PROFILES: dict[str, Profile] = {
    "6.1": Profile(
        series="6.1", verified=True,
        notes=("kernel/module/{main,version}.c and kernel/params.c of v6.1 (Debian 6.1.192); "
               "every scenario of tests/scenarios run on linux-image-6.1.0-*-amd64 under QEMU "
               "(6.1.0-56: scenarios 01-24; 6.1.0-57: 01-34)",)),
}
PROFILES["6.12"] = replace(
    PROFILES["6.1"], series="6.12", verified=True, early_exists_check=True, footprint="6.4",
    taints_after_unformed=True,
    notes=("v6.12 sources: early_mod_check() (v6.4) runs check_modinfo() then the EEXIST check; the "
           "taints follow add_unformed_module() in module_augment_kernel_taints(); every scenario of "
           "tests/scenarios run on linux-image-6.12.*+deb12-amd64 under QEMU (fixtures built "
           "against its headers; 6.12.117: 01-24, 6.12.118: 01-34)",))


# .config options the model reads from the target (``--kernel`` headers) when it has them: field -> option
CONFIG_FIELDS = {
    "modversions": "CONFIG_MODVERSIONS",
    "force_load": "CONFIG_MODULE_FORCE_LOAD",
    "module_sig": "CONFIG_MODULE_SIG",
    "sig_force": "CONFIG_MODULE_SIG_FORCE",
    "allow_missing_ns_imports": "CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS",
}


def with_config(profile: Profile, config: dict[str, str]) -> Profile:
    """The profile with its configuration fields taken from the target's ``.config`` (an option unset
    or absent there is off); unchanged without a ``.config`` (the profile's defaults are Debian's)."""
    if not config:
        return profile
    values: dict[str, Any] = {f: config.get(opt) == "y" for f, opt in CONFIG_FIELDS.items()}
    return replace(profile, **values)


def profile_for(release: str) -> Profile:
    """The profile of a kernel release string (``6.1.0-56-amd64`` -> 6.1); the nearest older series
    when there is no exact one, 6.1 for anything older or unknown (with its ``verified`` flag off)."""
    parts = release.split(".")
    try:
        key = (int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0))
    except (IndexError, ValueError):
        return replace(PROFILES["6.1"], verified=False)
    best = None
    for name in PROFILES:
        mj, mn = map(int, name.split("."))
        if (mj, mn) <= key and (best is None or (mj, mn) > best[0]):
            best = ((mj, mn), name)
    if best is None:
        return replace(PROFILES["6.1"], verified=False)
    p = PROFILES[best[1]]
    return p if best[0] == key else replace(p, verified=False)
