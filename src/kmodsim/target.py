"""The target kernel as data: what depends on its release, its configuration, its BTF.

One :class:`Target` describes the kernel that check, the loader model, footprint and ldd reason
about. It holds

* the :class:`~kmodsim.kernel.Kernel` read from ``--kernel`` (exports, release, vermagic,
  ``.config``);
* the release-dependent behaviour: :data:`BEHAVIOUR` is the one table of every fact that changed
  between releases, each with the first release that has it and the upstream commit that
  introduced it (or, for a distribution's patch, the patch file). :meth:`Target.has` answers a
  fact at the target's own release;
* the Kconfig options the models read (:data:`KCONFIG`), taken from the target's ``.config``
  when it has one (an option unset or absent there is off) and from Debian's amd64 configuration,
  the documented default, only when it has none (a Module.symvers or a vmlinux);
* the BTF of vmlinux where the target ships one (``--kernel`` a vmlinux or a vmlinuz, or the
  image given beside a headers directory: ``--vmlinuz``, :meth:`kmodsim.kernel.Kernel.image_keys`),
  read on first use (:attr:`Target.btf`, :meth:`Target.struct_layout`; the loader checks module
  BTF against it).

Verified profiles and the fallback rule. :data:`VERIFIED` lists the series on which every
scenario of tests/scenarios ran on the real kernel under QEMU with no difference from the model.
A target of one of those series is verified. Any other release — an unknown series, or no
readable release at all — gets the *nearest verified profile*: the newest verified series at or
below its release, else (older than all of them, or no release) the lowest one; and a warning that
says so (:attr:`Target.warnings`; the library never prints, the CLI writes each as one line on
stderr). The facts of :data:`BEHAVIOUR` are still read at the target's own release when it has
one: the table knows what changed after the nearest verified series (``module:`` namespaces from
6.16, the 6.4 layout on a 6.6 kernel) and says it, unverified; without a release they are read at
the profile's series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .btf import Btf
    from .kernel import Kernel

Version = tuple[int, int]


class Fact(NamedTuple):
    """One release-dependent behaviour: on from release ``since`` (major, minor)."""

    name: str
    since: Version
    cite: str  # upstream commit (12 hex digits) or, for a distribution patch, the patch file
    title: str  # the commit's or the patch's subject
    used_by: str  # where the model reads it
    origin: str = "upstream"  # "upstream" or the distribution that carries the patch ("debian")


# The one table of release-dependent behaviour. A fact is on for a release >= ``since``.
BEHAVIOUR: tuple[Fact, ...] = (
    # verify_namespace_is_imported(): a namespaced export needs MODULE_IMPORT_NS
    Fact("namespaces", (5, 4), "8651ec01daed", "module: add support for symbol namespaces.",
         "loader: verify_namespace_is_imported()"),
    # inherit_taint(): a module using a proprietary module's exports inherits TAINT_PROPRIETARY_MODULE
    Fact("inherit_taint", (5, 13), "262e6ae7081d", "modules: inherit TAINT_PROPRIETARY_MODULE",
         "loader: resolve_symbol() -> inherit_taint()"),
    # __kcrctab holds CRC data; before, __crc_<S> symbols were absolute (their value the CRC)
    Fact("kcrctab_data", (5, 19), "f292d875d0dc", "modpost: extract symbol versions from *.cmd files",
         "kernel: vmlinux and module CRCs (__kcrctab or __crc_ symbols, both read)"),
    # kstrtobool() takes "true"/"false" by their first letter: t/T and f/F (param_set_bool())
    Fact("kstrtobool_tf", (5, 19), "0d6ea3ac94ca", 'lib/kstrtox.c: add "false"/"true" support to kstrtobool()',
         "loader: parse_args() -> param_set_bool()"),
    # the core/init layouts become mod_mem[] types, each allocated and page-aligned on its own
    # (module_memory_alloc()); no strict_align() between passes; kallsyms' core copy in MOD_DATA
    Fact("mod_mem", (6, 4), "ac3b43283923", "module: replace module_layout with module_memory",
         "footprint: layout_sections(), layout_symtab(); the loader's /proc/modules sizes"),
    # early_mod_check(): check_modinfo() then the EEXIST check, before the memory is allocated
    # (the order of the log lines is unchanged: the model needs no branch for it)
    Fact("early_exists_check", (6, 4), "064f4536d139",
         "module: avoid allocation if module is already present and ready", "loader: documentation only"),
    # the out-of-tree/staging/license taints and the unsigned-module line move after
    # add_unformed_module() (module_augment_kernel_taints(), later "converge taint work together"),
    # and "module license taints kernel." follows when that call set TAINT_PROPRIETARY_MODULE
    Fact("taints_after_unformed", (6, 4), "a12b94511cf3",
         "module: move tainting until after a module hits our linked list",
         "loader: module_augment_kernel_taints()"),
    # "module:<names>" namespaces: only the named modules may use the symbol; importing them is
    # forbidden. Before it, "module:kvm" is an ordinary namespace (Debian's 6.12 exports
    # anon_inode_make_secure_inode so, and its modpost asks for MODULE_IMPORT_NS(module:kvm)).
    # btf_module_notify(): a module's BTF that fails btf_parse_module() while
    # CONFIG_MODULE_ALLOW_BTF_MISMATCH lets the load go on no longer logs the verifier's type and
    # member messages nor "failed to validate module [M] BTF: -E"; one pr_warn_once instead
    Fact("btf_mismatch_quiet", (6, 3), "9cb61e50bf6b", "bpf: btf: limit logging of ignored BTF mismatches",
         "loader: btf_module_notify()"),
    Fact("module_namespaces", (6, 16), "8f945479021a", "module: Add module specific symbol namespace support",
         "check: namespace"),
    # check_version(), a symbol the module's __versions does not list: refused ("no symbol version
    # for S", pr_warn each time; resolve_symbol() -> -EINVAL, check_modstruct_version() -> -ENOEXEC),
    # as in the kernel/module/version.c of Debian's 6.1.192 and 6.12.118 and seen on both under
    # QEMU. A Debian patch, not upstream behaviour ("module: Disable matching missing version CRC",
    # Ben Hutchings, 2016-12-02, Forwarded: not-needed; in the series of Debian's linux 6.1.176-1
    # source package, read with `apt-get source --download-only linux=6.1.176-1` through a private
    # apt state), which "partly reverts commit cd3caefb4663" to "fail closed if a symbol version CRC
    # is missing, as the alternative may allow subverting module signing". Mainline (from v4.9's
    # faaae2a58143, "Re-enable CONFIG_MODVERSIONS in a slightly weaker form") warns once and accepts
    # ("Broken toolchain"). Debian has carried it since its 4.9 kernels; kmodsim's targets are
    # Debian's, so it is taken for every target.
    Fact("missing_version_refused", (4, 9),
         "debian/patches/bugfix/all/module-disable-matching-missing-version-crc.patch",
         "module: Disable matching missing version CRC", "loader: check_version(); check: crc", origin="debian"),
)

FACTS: dict[str, Fact] = {f.name: f for f in BEHAVIOUR}


class Option(NamedTuple):
    """A Kconfig option a model reads, and its value in Debian's amd64 configuration (the default
    when the target has no ``.config``)."""

    option: str
    debian: bool
    used_by: str


# field -> the .config option (read from the target's .config when it has one)
KCONFIG: dict[str, Option] = {
    # check_version(), check_modstruct_version() and the exported-CRC check exist only with it
    "modversions": Option("CONFIG_MODVERSIONS", True, "loader"),
    # try_to_force_load(): taint F and go on; without it -ENOEXEC
    "force_load": Option("CONFIG_MODULE_FORCE_LOAD", True, "loader"),
    # the unsigned-module line and TAINT_UNSIGNED_MODULE
    "module_sig": Option("CONFIG_MODULE_SIG", True, "loader"),
    # module_sig_check(): unsigned modules refused
    "sig_force": Option("CONFIG_MODULE_SIG_FORCE", False, "loader"),
    # verify_namespace_is_imported() warns instead of refusing
    "allow_missing_ns_imports": Option("CONFIG_MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS", False, "loader"),
    # btf_module_notify(): module BTF is parsed (btf_parse_module()) when a module comes
    "btf_modules": Option("CONFIG_DEBUG_INFO_BTF_MODULES", True, "loader"),
    # btf_module_notify(): module BTF that fails btf_parse_module() does not fail the load
    "allow_btf_mismatch": Option("CONFIG_MODULE_ALLOW_BTF_MISMATCH", True, "loader"),
    # strict_align() between layout passes (6.1)
    "strict_module_rwx": Option("CONFIG_STRICT_MODULE_RWX", True, "footprint"),
    # layout_symtab(): the core kallsyms copy
    "kallsyms": Option("CONFIG_KALLSYMS", True, "footprint"),
    # is_core_symbol(): data symbols too, not only text
    "kallsyms_all": Option("CONFIG_KALLSYMS_ALL", True, "footprint"),
    # module_init_layout_section(): .exit sections go to init without it
    "module_unload": Option("CONFIG_MODULE_UNLOAD", True, "footprint"),
}


class Verified(NamedTuple):
    series: Version
    evidence: str


# The series on which every scenario ran on the real kernel with no difference from the model
# (loader, /proc/modules sizes included; footprint checked against /proc/modules too).
VERIFIED: tuple[Verified, ...] = (
    Verified((6, 1), "kernel/module/{main,version}.c and kernel/params.c of v6.1 (Debian 6.1.192); "
                     "every scenario of tests/scenarios run on linux-image-6.1.0-*-amd64 under QEMU "
                     "(6.1.0-56: scenarios 01-24; 6.1.0-57: 01-34)"),
    Verified((6, 12), "v6.12 sources: early_mod_check() (v6.4) runs check_modinfo() then the EEXIST check; the "
                      "taints follow add_unformed_module() in module_augment_kernel_taints(); every scenario of "
                      "tests/scenarios run on linux-image-6.12.*+deb12-amd64 under QEMU (fixtures built "
                      "against its headers; 6.12.117: 01-24, 6.12.118: 01-34)"),
)


def series_name(v: Version) -> str:
    return f"{v[0]}.{v[1]}"


def release_version(release: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) from a release string such as 6.12.117+deb12-amd64 or 6.1.0-56-amd64."""
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release or "")
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def has(name: str, version: Version | tuple[int, int, int]) -> bool:
    """Whether a kernel of ``version`` has the behaviour ``name`` of :data:`BEHAVIOUR`."""
    return version[:2] >= FACTS[name].since


class Profile(NamedTuple):
    """The verified profile a release gets: its series, whether the release is of it, and why."""

    series: Version
    verified: bool
    relation: str  # "exact", "nearest below", "lowest" (older than every verified series), "no release"


def profile_for(release: str | None) -> Profile:
    """The one lookup: the verified series of ``release``, else the nearest verified one at or
    below it, else the lowest (see the module's docstring)."""
    v = release_version(release)
    lowest = min(p.series for p in VERIFIED)
    if v is None:
        return Profile(lowest, False, "no release")
    below = [p.series for p in VERIFIED if p.series <= v[:2]]
    if not below:
        return Profile(lowest, False, "lowest")
    best = max(below)
    return Profile(best, best == v[:2], "exact" if best == v[:2] else "nearest below")


def profile_warning(release: str | None, profile: Profile) -> str | None:
    """The warning an unverified profile carries (without the ``kmodsim: warning:`` prefix)."""
    if profile.verified:
        return None
    name = series_name(profile.series)
    if profile.relation == "no release":
        return f"the kernel's release is unknown: using {name}'s profile (the lowest verified)"
    v = release_version(release)
    assert v is not None
    how = "nearest below" if profile.relation == "nearest below" else "the lowest; none is older"
    return (f"no verified profile for {release}: using {name}'s ({how}), with the behaviour table "
            f"read at {series_name(v[:2])}")


@dataclass
class Target:
    """A target kernel: release behaviour (one table), its ``.config``, its BTF."""

    kernel: Kernel | None
    release: str = ""
    profile: Profile = field(default_factory=lambda: profile_for(None))
    warnings: list[str] = field(default_factory=list)
    btf_source: str | None = None  # a vmlinux or vmlinuz that may carry .BTF
    _btf: Btf | None = field(default=None, repr=False)
    _btf_error: str | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str) -> Target:
        """The target of ``--kernel PATH`` (headers directory, Module.symvers, vmlinux, vmlinuz).
        Raises :class:`kmodsim.kernel.KernelError`."""
        from .kernel import Kernel

        return cls.of(Kernel.load(path))

    @classmethod
    def of(cls, kernel: Kernel | None, release: str | None = None) -> Target:
        """The target of a :class:`Kernel`; ``release`` when the kernel has none (check takes the
        modules' vermagic). With neither, the lowest verified profile, with a warning."""
        rel = kernel.release if kernel is not None else ""
        if release_version(rel) is None and release:  # e.g. a Module.symvers: no release of its own
            rel = release
        prof = profile_for(rel)
        warning = profile_warning(rel, prof)
        btf = None
        if kernel is not None and not _is_dir(kernel.source) and kernel.machine is not None:
            btf = kernel.source  # a vmlinux or vmlinuz (a Module.symvers has no machine)
        elif kernel is not None and kernel.image is not None:
            btf = kernel.image  # the image given beside a headers directory (Kernel.image_keys())
        return cls(kernel, rel, prof, [warning] if warning else [], btf)

    # -- release behaviour --------------------------------------------------------------------------
    @property
    def verified(self) -> bool:
        return self.profile.verified

    @property
    def series(self) -> str:
        """The verified profile's series ("6.1", "6.12")."""
        return series_name(self.profile.series)

    @property
    def version(self) -> Version:
        """The release the behaviour table is read at: the target's, else its profile's series."""
        v = release_version(self.release)
        return v[:2] if v is not None else self.profile.series

    def has(self, name: str) -> bool:
        """Whether the target has the behaviour ``name`` of :data:`BEHAVIOUR`."""
        return has(name, self.version)

    # -- configuration ------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, str]:
        return self.kernel.config if self.kernel is not None else {}

    def kconfig(self, name: str) -> bool:
        """A :data:`KCONFIG` field: the target's ``.config`` when it has one, else Debian's value."""
        opt = KCONFIG[name]
        config = self.config
        if not config:
            return opt.debian
        return config.get(opt.option) == "y"

    # -- BTF ----------------------------------------------------------------------------------------
    @property
    def btf(self) -> Btf | None:
        """vmlinux's BTF, read on first use; None when the target ships none (a headers directory
        or a Module.symvers, or an image without .BTF: :attr:`btf_error` says why)."""
        if self._btf is None and self._btf_error is None and self.btf_source is not None:
            from .btf import BtfError, vmlinux_btf

            try:
                self._btf = vmlinux_btf(self.btf_source)
            except (BtfError, OSError) as exc:
                self._btf_error = str(exc)
        return self._btf

    @property
    def btf_error(self) -> str | None:
        return self._btf_error

    def struct_layout(self, name: str, fields: list[str]) -> dict[str, tuple[int, int]] | None:
        """(offset, size) in bytes of each member path of ``struct name`` (``"mem[0].size"``,
        ``"core_layout.size"``) present in the target's BTF; None without BTF."""
        btf = self.btf
        if btf is None:
            return None
        return {f: btf.offset_of(name, f) for f in fields if btf.has_field(name, f)}


def _is_dir(path: str) -> bool:
    import os

    return os.path.isdir(path)
