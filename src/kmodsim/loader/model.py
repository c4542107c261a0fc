"""A model of the kernel's module loader: ``load_module()`` and ``delete_module()``
(kernel/module/main.c, version.c; kernel/params.c) for one target kernel.

Each rule is a method named after the kernel function it mirrors and runs in the kernel's order.
A step returns the errno the system call returns and the kernel's log lines, exactly, in order.
What the model cannot know from the files — what a module's own ``init`` returns (it depends on
its code and the hardware) — is given by the caller (``init_ret``, from a script's ``# init=...``).
``/proc/modules`` sizes come from :mod:`kmodsim.memory_layout` (the profile's memory layout). What
depends on the release or the configuration is the :class:`kmodsim.target.Target`'s
(:mod:`kmodsim.loader.profiles` is the loader's view of it).
"""

from __future__ import annotations

import errno as E
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..kernel import Kernel, license_is_gpl_compatible, same_magic
from ..memory_layout import Layout, layout_of
from ..symbols import LOADER, Provider, namespace_problem
from ..target import Target
from .image import ModuleImage
from .params import parse_args
from .profiles import Profile, configured, profile_of
from .result import Formed, ModuleState
from .script import MODULE_INIT_IGNORE_MODVERSIONS, MODULE_INIT_IGNORE_VERMAGIC

# include/linux/panic.h: taint bits, and the letters module_flags() prints (kernel/panic.c taint_flags)
TAINT_PROPRIETARY_MODULE, TAINT_FORCED_MODULE, TAINT_CRAP, TAINT_OOT_MODULE, TAINT_UNSIGNED_MODULE = 0, 1, 10, 12, 13
MODULE_TAINT_LETTERS = [(0, "P"), (1, "F"), (10, "C"), (12, "O"), (13, "E"), (15, "K"), (16, "X"), (17, "T")]


@dataclass
class LoadedModule:
    name: str
    image: ModuleImage | None  # None: a module taken as loaded for its exports alone (assume_loaded)
    exports: dict[str, tuple]  # name -> (gpl, namespace, crc)
    taints: int = 0
    users: list[str] = field(default_factory=list)  # source_list: newest user first
    uses: list[str] = field(default_factory=list)  # target_list
    refcnt: int = 0
    params: dict = field(default_factory=dict)
    state: str = "Live"
    versions_kept: bool = False  # loaded with MODULE_INIT_IGNORE_MODVERSIONS: __versions in memory

    @property
    def permanent(self) -> bool:
        return self.image is not None and self.image.has_init and not self.image.has_exit

    def taint_letters(self) -> str:
        return "".join(c for bit, c in MODULE_TAINT_LETTERS if self.taints & (1 << bit))

    def proc_entry(self, layout: Layout) -> ModuleState:
        users = list(self.users) + (["[permanent]"] if self.permanent else [])
        size = None if self.image is None else self.image.size(layout, self.versions_kept)
        return ModuleState(self.name, size, self.refcnt, users, self.state, self.taint_letters())


@dataclass
class Call:
    """One system call's outcome."""
    module: str
    errno: int
    messages: list[str]


class _Fail(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


class KernelModel:
    """The loader state of one booted kernel: vmlinux's exports, the loaded modules (newest first,
    as the kernel's ``modules`` list), the taint mask and the print-once flags."""

    def __init__(self, kernel: Kernel, profile: Profile | None = None) -> None:
        self.kernel = kernel
        self.target = Target.of(kernel)
        # a given profile (``--profile``) takes the place of the target's release behaviour; the
        # configuration options come from the target's .config either way
        self.profile = configured(profile, self.target) if profile is not None else profile_of(self.target)
        # the memory layout behind /proc/modules sizes: the profile's, with the target's .config
        self.layout = layout_of(self.target, self.profile.footprint)
        self.vmlinux = kernel.exports
        # v6.16 (8f945479021a): "module:<names>" namespaces admit the listed modules only
        self.module_namespaces = self.target.has("module_namespaces")
        self.modules: list[LoadedModule] = []
        self.tainted = 0
        self.debug_locks = True
        self.once: set[str] = set()
        self.log: list[str] = []
        # modules that reached do_init_module(), with their sizes: what the oracle's kprobe sees
        self.formed: list[Formed] = []

    # -- helpers -----------------------------------------------------------------------------------
    def find_module(self, name: str) -> LoadedModule | None:
        for m in self.modules:
            if m.name == name:
                return m
        return None

    def add_taint(self, flag: int, lockdep_unreliable: bool) -> None:
        """kernel/panic.c:add_taint()."""
        if lockdep_unreliable and self.debug_locks:
            self.debug_locks = False
            self.log.append("Disabling lock debugging due to kernel taint")
        self.tainted |= 1 << flag

    def add_taint_module(self, mod: _Loading, flag: int, lockdep_unreliable: bool) -> None:
        """kernel/module/main.c:add_taint_module()."""
        self.add_taint(flag, lockdep_unreliable)
        mod.taints |= 1 << flag

    def test_taint(self, flag: int) -> bool:
        return bool(self.tainted & (1 << flag))

    def proc_modules(self) -> list[ModuleState]:
        return [m.proc_entry(self.layout) for m in self.modules]

    def assume_loaded(self, name: str, exports: dict[str, tuple]) -> None:
        """A module of the target taken as loaded and live, known by its exports alone
        (``name -> (gpl, namespace, crc)``): what modprobe would have inserted before a module that
        uses it (``kmodsim abi check``: the owners of a module's imports in the new kernel's
        Module.symvers). Its /proc/modules line has no size."""
        self.modules.insert(0, LoadedModule(name, None, dict(exports)))

    # -- finit_module(2) ---------------------------------------------------------------------------
    def load_module(self, image: ModuleImage, args: str = "", init_ret: int = 0,
                    init_log: tuple[str, ...] | list[str] = (), flags: int = 0) -> Call:
        """kernel/module/main.c:load_module(), then do_init_module() with ``init_ret`` as the
        module's init result (and ``init_log`` as the lines its init logs). ``flags``: finit_module()'s
        (MODULE_INIT_IGNORE_MODVERSIONS, MODULE_INIT_IGNORE_VERMAGIC). Returns the errno (0 on
        success) and the log lines of the call."""
        self.log = []
        mod = _Loading(image, flags=flags)
        try:
            self._load(mod, args, init_ret, init_log)
            err = 0
        except _Fail as f:
            err = f.err
            self._unwind(mod)
        return Call(image.name, err, self.log)

    def _load(self, mod: _Loading, args: str, init_ret: int, init_log=()) -> None:
        # module_sig_check(): unsigned modules pass unless enforced (CONFIG_MODULE_SIG_FORCE)
        mod.sig_ok = self.module_sig_check(mod)
        if self.profile.sig_force and not mod.sig_ok:
            self.log.append("Loading of unsigned module is rejected")
            raise _Fail(E.EKEYREJECTED)
        # load_module(): "Check module struct version now, before we try to use module."
        if self.profile.modstruct_version and not self.check_modstruct_version(mod):
            raise _Fail(E.ENOEXEC)
        # <6.4: layout_and_allocate() -> check_modinfo(), then add_unformed_module();
        # 6.4+ (profile.early_exists_check): early_mod_check() -> check_modinfo(), then the EEXIST
        # check. Either way the vermagic/taint lines come before -EEXIST.
        self.check_modinfo(mod)
        self.add_unformed_module(mod)
        mod.unformed = True
        if self.profile.taints_after_unformed:
            self.module_augment_kernel_taints(mod)
        else:
            self.module_sig_taint(mod)
        err = self.check_module_license_and_versions(mod)
        if err:
            raise _Fail(-err)
        self.simplify_symbols(mod)
        self.verify_exported_symbols(mod)  # complete_formation()
        mod.coming = True
        self.btf_module_notify(mod)  # prepare_coming_module(): the MODULE_STATE_COMING notifiers
        err, lines, values = parse_args(mod.name, args, mod.image.params, self.profile.kstrtobool_tf)
        self.log.extend(lines)
        if err:
            raise _Fail(err)
        mod.params = values
        self.do_init_module(mod, init_ret, init_log)

    def module_sig_check(self, mod: _Loading) -> bool:
        """kernel/module/signing.c:module_sig_check(): ``info->sig_ok``. A forced load (either
        MODULE_INIT_IGNORE_* flag) is a "mangled module" whose signature is not looked at ("Do not
        allow mangled modules as a module with version information removed is no longer the
        module that was signed"): -ENODATA, an unsigned module. Otherwise a signature is good when
        the kernel holds its key (the certificates built into vmlinux, :mod:`kmodsim.keys`); a
        key it lacks is -ENOKEY, "module with unavailable key", tainted as unsigned. Where the
        kernel's keys are unknown (a headers directory), or the signature names its key by
        subjectKeyIdentifier, a signature is taken as good."""
        info = mod.image
        if not info.signed or mod.flags & (MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC):
            return False
        keys = self.kernel.trusted_keys
        return keys is None or info.signer is None or info.signer in keys

    def check_modstruct_version(self, mod: _Loading) -> bool:
        """kernel/module/version.c:check_modstruct_version(): check_version() of ``module_layout``
        against vmlinux's CRC, before anything else (no-op without CONFIG_MODVERSIONS: internal.h)."""
        if not self.profile.modversions:
            return True
        e = self.vmlinux.get("module_layout")
        return self.check_version(mod, "module_layout", e.crc if e is not None else None)

    def check_version(self, mod: _Loading, symname: str, crc: int | None) -> bool:
        """kernel/module/version.c:check_version(), branch by branch:

        * the exporter supplied no CRC (``crc`` None: its table has no ``__kcrctab``): accepted
          ("OK, we're already tainted": such an exporter was forced in by
          :meth:`check_module_license_and_versions`);
        * no ``__versions`` at all (``info->index.vers == 0``, find_sec(): an SHF_ALLOC section):
          :meth:`try_to_force_load` with the symbol's name as the reason;
        * the first of the ``sh_size / 64`` records whose name is ``symname`` decides: its CRC, an
          unsigned long, equal to the exporter's u32 -> accepted, else "disagrees about version of
          symbol" and refused;
        * no record of that name: "no symbol version for" (pr_warn, every time) and refused
          (profile ``missing_version_refused``; warned once and accepted from v4.9's faaae2a58143
          on mainline: the Debian patch cited in kmodsim.target.BEHAVIOUR).
        Without CONFIG_MODVERSIONS the kernel has no check_version(): everything is accepted."""
        info = mod.image
        if not self.profile.modversions or crc is None:
            return True
        if not mod.has_versions:  # "No versions at all?  modprobe --force does this."
            return self.try_to_force_load(mod, symname) == 0
        for name, mine in info.versions:
            if name != symname:
                continue
            if mine == crc:
                return True
            self.log.append(f"{info.name}: disagrees about version of symbol {symname}")
            return False
        if self.profile.missing_version_refused:
            self.log.append(f"{info.name}: no symbol version for {symname}")
            return False
        if "no-version" not in self.once:  # pr_warn_once (v4.9 .. : "Broken toolchain")
            self.once.add("no-version")
            self.log.append(f"{info.name}: no symbol version for {symname}")
        return True

    def try_to_force_load(self, mod: _Loading, reason: str) -> int:
        """kernel/module/main.c:try_to_force_load(): with CONFIG_MODULE_FORCE_LOAD the first forced
        module prints "<mod>: <reason>: kernel tainted." (while TAINT_FORCED_MODULE is unset), the
        module and kernel take taint F and the load goes on (0); without it, -ENOEXEC, silently."""
        if not self.profile.force_load:
            return -E.ENOEXEC
        if not self.test_taint(TAINT_FORCED_MODULE):
            self.log.append(f"{mod.name}: {reason}: kernel tainted.")
        self.add_taint_module(mod, TAINT_FORCED_MODULE, True)
        return 0

    def check_module_license_and_versions(self, mod: _Loading) -> int:
        """kernel/module/main.c:check_module_license_and_versions() (6.1; its CRC half is
        check_export_symbol_versions() in 6.12, at the same point: after find_module_sections(),
        before simplify_symbols()): with CONFIG_MODVERSIONS, a module exporting symbols from a table
        without CRCs (``__ksymtab`` without ``__kcrctab``, or the GPL pair) goes through
        try_to_force_load("no versions for exported symbols"). Returns 0 or -errno. (The name-based
        taints of 6.1's version — ndiswrapper, driverloader, lve — are not modelled.)"""
        info = mod.image
        if not self.profile.modversions:
            return 0
        has_syms = any(not e.gpl for e in info.exports)
        has_gpl = any(e.gpl for e in info.exports)
        if (has_syms and not info.syms_crcs) or (has_gpl and not info.gpl_syms_crcs):
            return self.try_to_force_load(mod, "no versions for exported symbols")
        return 0

    def module_sig_taint(self, mod: _Loading) -> None:
        """The unsigned-module line (pr_notice_once) and TAINT_UNSIGNED_MODULE (CONFIG_MODULE_SIG)."""
        if self.profile.module_sig and not mod.sig_ok and "sig" not in self.once:
            self.once.add("sig")
            self.log.append(f"{mod.name}: module verification failed: signature and/or required key "
                            f"missing - tainting kernel")
        if self.profile.module_sig and not mod.sig_ok:
            self.add_taint_module(mod, TAINT_UNSIGNED_MODULE, False)

    def module_augment_kernel_taints(self, mod: _Loading) -> None:
        """kernel/module/main.c:module_augment_kernel_taints() (v6.12; the profile's
        ``taints_after_unformed``): once the module is unique, the out-of-tree, staging and license
        taints, the unsigned-module line, and "module license taints kernel." when this call is
        what set TAINT_PROPRIETARY_MODULE (its prev_taint test)."""
        prev = self.test_taint(TAINT_PROPRIETARY_MODULE)
        self.modinfo_taints(mod)
        self.module_sig_taint(mod)
        if not prev and self.test_taint(TAINT_PROPRIETARY_MODULE):
            self.log.append(f"{mod.name}: module license taints kernel.")

    def check_modinfo(self, mod: _Loading) -> None:
        """kernel/module/main.c:check_modinfo(): vermagic (same_magic), then (up to the profile's
        ``taints_after_unformed``) the out-of-tree and staging taints and the license. With
        MODULE_INIT_IGNORE_VERMAGIC the module's vermagic is taken as absent ("This is allowed:
        modprobe --force will invalidate it."): try_to_force_load("bad vermagic")."""
        info = mod.image
        ours = self.kernel.vermagic or ""
        modmagic = None if mod.flags & MODULE_INIT_IGNORE_VERMAGIC else info.vermagic
        if modmagic is None:
            err = self.try_to_force_load(mod, "bad vermagic")
            if err:
                raise _Fail(-err)
        elif not same_magic(modmagic, ours, mod.has_versions):
            self.log.append(f"{info.name}: version magic '{modmagic}' should be '{ours}'")
            raise _Fail(E.ENOEXEC)
        if not self.profile.taints_after_unformed:
            self.modinfo_taints(mod)

    def modinfo_taints(self, mod: _Loading) -> None:
        """The out-of-tree and staging taints, then the license (set_license() up to 6.3,
        module_license_taint_check() after)."""
        info = mod.image
        if not info.intree:
            if not self.test_taint(TAINT_OOT_MODULE):
                self.log.append(f"{mod.name}: loading out-of-tree module taints kernel.")
            self.add_taint_module(mod, TAINT_OOT_MODULE, False)
        if info.staging:
            self.add_taint_module(mod, TAINT_CRAP, False)
            self.log.append(f"{mod.name}: module is from the staging directory, the quality is unknown, "
                            f"you have been warned.")
        self.set_license(mod, info.license)

    def set_license(self, mod: _Loading, license: str | None) -> None:
        """kernel/module/main.c:set_license() (module_license_taint_check() in later kernels)."""
        if license is None:
            license = "unspecified"
        if not license_is_gpl_compatible(license):
            if not self.test_taint(TAINT_PROPRIETARY_MODULE):
                self.log.append(f"{mod.name}: module license '{license}' taints kernel.")
            self.add_taint_module(mod, TAINT_PROPRIETARY_MODULE, True)

    def add_unformed_module(self, mod: _Loading) -> None:
        """kernel/module/main.c:add_unformed_module(): a module of that name is loaded: -EEXIST."""
        if self.find_module(mod.name) is not None:
            raise _Fail(E.EEXIST)

    def find_symbol(self, name: str, gplok: bool) -> tuple[str | None, tuple] | None:
        """kernel/module/main.c:find_symbol(): vmlinux's tables, then every formed module (newest
        first, the ``modules`` list); a GPL-only export is invisible to a module that may not use
        it (find_exported_symbol_in_section()). The owner policy is :data:`kmodsim.symbols.LOADER`
        over that search order. Returns (owner or None for vmlinux, (gpl, namespace, crc)) or None."""
        p = LOADER.pick(self._providers(name), gplok)
        if p is None:
            return None
        return (None if p.owner == "vmlinux" else p.owner), (p.gpl, p.namespace, p.crc)

    def _providers(self, name: str) -> Iterator[Provider]:
        """The exporters of ``name`` in find_symbol()'s search order, produced as it goes."""
        e = self.vmlinux.get(name)
        if e is not None:
            yield Provider("vmlinux", "", e.gpl, e.namespace, e.crc)
        for m in self.modules:
            x = m.exports.get(name)
            if x is not None:
                yield Provider(m.name, "", *x)

    def resolve_symbol(self, mod: _Loading, name: str) -> int | None:
        """kernel/module/main.c:resolve_symbol(): find, inherit_taint, check_version,
        verify_namespace_is_imported, ref_module. Returns None (resolved), 0 (not found) or -errno."""
        found = self.find_symbol(name, gplok=not (mod.taints & (1 << TAINT_PROPRIETARY_MODULE)))
        if found is None:
            return 0
        owner, (gpl, ns, crc) = found
        if gpl:
            mod.using_gplonly_symbols = True
        if self.profile.inherit_taint and not self.inherit_taint(mod, owner, name):
            return 0
        if not self.check_version(mod, name, crc):
            return -E.EINVAL
        err = self.verify_namespace_is_imported(mod, name, ns)
        if err:
            return err
        self.ref_module(mod, owner)
        return None

    def inherit_taint(self, mod: _Loading, owner: str | None, name: str) -> bool:
        """kernel/module/main.c:inherit_taint() (v5.13)."""
        o = self.find_module(owner) if owner else None
        if o is None or not o.taints & (1 << TAINT_PROPRIETARY_MODULE):
            return True
        if mod.using_gplonly_symbols:
            self.log.append(f"{mod.name}: module using GPL-only symbols uses symbols {name} from proprietary "
                            f"module {owner}.")
            return False
        if not mod.taints & (1 << TAINT_PROPRIETARY_MODULE):
            self.log.append(f"{mod.name}: module uses symbols {name} from proprietary module {owner}, "
                            f"inheriting taint.")
            self.add_taint_module(mod, TAINT_PROPRIETARY_MODULE, True)
        return True

    def verify_namespace_is_imported(self, mod: _Loading, name: str, ns: str) -> int:
        """kernel/module/main.c:verify_namespace_is_imported(): a ``module:`` namespace that lists
        the module (6.16+, verify_module_namespace()), else one the module imports; the rule is
        :func:`kmodsim.symbols.namespace_problem`'s, the target's release decides ``module:``."""
        if not self.profile.namespaces or not namespace_problem(ns, mod.name, mod.image.import_ns,
                                                                self.module_namespaces):
            return 0
        self.log.append(f"{mod.name}: module uses symbol ({name}) from namespace {ns}, but does not import it.")
        return 0 if self.profile.allow_missing_ns_imports else -E.EINVAL

    def ref_module(self, mod: _Loading, owner: str | None) -> None:
        """kernel/module/main.c:ref_module(): one use (and one reference) per owning module."""
        if owner is not None and owner not in mod.uses:
            mod.uses.append(owner)
            o = self.find_module(owner)
            assert o is not None, owner  # resolve_symbol() found its export in a loaded module
            o.users.insert(0, mod.name)
            o.refcnt += 1

    def simplify_symbols(self, mod: _Loading) -> None:
        """kernel/module/main.c:simplify_symbols(): every undefined symbol in symbol-table order;
        all failures are reported, the last one's error is returned."""
        ret = 0
        for name, weak in mod.image.imports:
            r = self.resolve_symbol(mod, name)
            if r is None:
                continue
            if r == 0 and (weak or name in self.profile.ignore_undef):
                continue
            ret = r or -E.ENOENT
            self.log.append(f"{mod.name}: Unknown symbol {name} (err {ret})")
        if ret:
            raise _Fail(-ret)

    def verify_exported_symbols(self, mod: _Loading) -> None:
        """kernel/module/main.c:verify_exported_symbols(): one name, one owner, whatever the GPL
        flag or namespace; the first clash is reported (owner ``kernel`` for vmlinux)."""
        for e in mod.image.exports:
            owner: str | None
            if e.name in self.vmlinux:
                owner = "kernel"
            else:
                owner = next((m.name for m in self.modules if e.name in m.exports), None)
            if owner is not None:
                self.log.append(f"{mod.name}: exports duplicate symbol {e.name} (owned by {owner})")
                raise _Fail(E.ENOEXEC)

    def btf_module_notify(self, mod: _Loading) -> None:
        """kernel/bpf/btf.c:btf_module_notify() at MODULE_STATE_COMING (with
        CONFIG_DEBUG_INFO_BTF_MODULES): a module with a ``.BTF`` has it parsed on the running
        kernel's vmlinux BTF (:func:`kmodsim.loader.btf_check.btf_parse_module`: a module built for
        another kernel usually fails it). On failure: "failed to validate module [M] BTF: -E" and,
        unless CONFIG_MODULE_ALLOW_BTF_MISMATCH, the load fails with that error
        (prepare_coming_module()); from v6.3 (profile ``btf_mismatch_quiet``) an allowed mismatch
        logs neither the verifier's lines nor that one, but once "Kernel module BTF mismatch
        detected, ...". Not modelled where the target's vmlinux BTF is unknown (a headers
        directory without its image: ``kmodsim load --vmlinuz`` gives it)."""
        data = mod.image.btf
        if not self.profile.btf_modules or not data:
            return
        base = self.target.btf
        if base is None:
            return
        from .btf_check import btf_parse_module

        quiet = self.profile.btf_mismatch_quiet and self.profile.allow_btf_mismatch
        err, lines = btf_parse_module(data, base, quiet)
        if not err:
            return
        self.log.extend(lines)
        if not quiet:
            self.log.append(f"failed to validate module [{mod.name}] BTF: {err}")
        elif "btf-mismatch" not in self.once:
            self.once.add("btf-mismatch")
            self.log.append("Kernel module BTF mismatch detected, BTF debug info may be unavailable for some modules")
        if not self.profile.allow_btf_mismatch:
            raise _Fail(-err)

    def do_init_module(self, mod: _Loading, init_ret: int, init_log=()) -> None:
        """kernel/module/main.c:do_init_module(): the init result and the lines the init logs are the
        caller's (``init_ret``, ``init_log``). The module is formed by now, its memory laid out:
        recorded in :attr:`formed` with the footprint model's core and init sizes."""
        kept = bool(mod.flags & MODULE_INIT_IGNORE_MODVERSIONS)
        fp = mod.image.footprint(self.layout, kept)
        self.formed.append(Formed(mod.name, None if fp is None else fp.size, None if fp is None else fp.init_size))
        self.log.extend(init_log)
        if init_ret < 0:
            raise _Fail(-init_ret)
        m = LoadedModule(mod.name, mod.image, {e.name: (e.gpl, e.namespace, e.crc) for e in mod.image.exports},
                         taints=mod.taints, uses=mod.uses, params=mod.params, versions_kept=kept)
        self.modules.insert(0, m)
        mod.uses = []  # now owned by the live module

    def _unwind(self, mod: _Loading) -> None:
        """The error path of load_module(): module_unload_free() drops the uses taken."""
        for owner in mod.uses:
            o = self.find_module(owner)
            if o is not None:
                o.users.remove(mod.name)
                o.refcnt -= 1
        mod.uses = []

    # -- delete_module(2) --------------------------------------------------------------------------
    def delete_module(self, name: str) -> Call:
        """kernel/module/main.c:delete_module() with O_NONBLOCK (what rmmod passes)."""
        self.log = []
        m = self.find_module(name)
        if m is None:
            return Call(name, E.ENOENT, self.log)
        if m.users:  # other modules depend on us: -EWOULDBLOCK
            return Call(name, E.EAGAIN, self.log)
        if m.state != "Live":
            return Call(name, E.EBUSY, self.log)
        if m.permanent:  # an init without an exit: try_force_unload() is false without O_TRUNC
            return Call(name, E.EBUSY, self.log)
        if m.refcnt:  # try_stop_module()
            return Call(name, E.EAGAIN, self.log)
        self.modules.remove(m)
        for owner in m.uses:  # module_unload_free()
            o = self.find_module(owner)
            if o is not None:
                o.users.remove(m.name)
                o.refcnt -= 1
        return Call(name, 0, self.log)


@dataclass
class _Loading:
    """The ``struct module`` being loaded, with the ``load_info`` facts the flags change."""
    image: ModuleImage
    flags: int = 0  # finit_module()'s
    sig_ok: bool = False  # info->sig_ok: KernelModel.module_sig_check()
    taints: int = 0
    uses: list[str] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    using_gplonly_symbols: bool = False
    unformed: bool = False
    coming: bool = False

    @property
    def name(self) -> str:
        return self.image.name

    @property
    def has_versions(self) -> bool:
        """``info->index.vers != 0``: the module has ``__versions`` and the load does not ignore it
        (MODULE_INIT_IGNORE_MODVERSIONS: "Pretend no __versions section!", setup_load_info() in 6.1,
        elf_validity_cache_index() in 6.12)."""
        return self.image.has_versions and not self.flags & MODULE_INIT_IGNORE_MODVERSIONS

