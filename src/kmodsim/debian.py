"""Debian kernel packages as inputs: fetched with ``apt-get download``, unpacked with ``dpkg-deb -x``
into kmodsim's cache (never installed into /), reused across runs.

Used by the tests (real kernels as fixtures), by ``kmodsim verify`` (the kernel image matching a
headers directory) and by the examples.

Packages of a foreign architecture (``arch="s390x"``, ``"i386"``, ...) are fetched by the same
ordinary apt client, but against a private apt state under ``cache_root()/apt-<arch>/``: its own
package lists, archive cache and (empty) dpkg status, selected with ``APT_CONFIG``. The system's
``sources.list(.d)`` and keyrings are read; nothing under /etc, /var/lib/apt or /var/lib/dpkg is
written, and no ``dpkg --add-architecture`` is needed.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import tempfile

from .cache import cache_root, cached_dir
from .errors import Error


class DebianError(Error):
    pass



def _run(cmd: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise DebianError(f"{cmd[0]}: not installed (this needs a Debian system)") from None
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["failed"])[-1]
        raise DebianError(f"{' '.join(cmd)}: {last}")
    return p.stdout


# ---------------------------------------------------------------------------------------------
# A private apt state for a foreign architecture
# ---------------------------------------------------------------------------------------------

@functools.cache
def native_arch() -> str:
    return _run(["dpkg", "--print-architecture"]).strip()


def _is_foreign(arch: str | None) -> bool:
    if arch is None:
        return False
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", arch):
        raise DebianError(f"{arch!r}: not a Debian architecture name")
    return arch != native_arch()


def _private(arch: str | None, suite: str | None) -> bool:
    """Whether packages come through a private apt state: another architecture, or another
    Debian release than the system's (``suite``, e.g. "bullseye")."""
    if suite is not None and not re.fullmatch(r"[a-z][a-z0-9-]*", suite):
        raise DebianError(f"{suite!r}: not a Debian suite name")
    return suite is not None or _is_foreign(arch)


# Other Debian releases come from this mirror (the system's sources name it too), signed by the keys
# of debian-archive-keyring (which carries the previous releases' keys).
OTHER_SUITE_MIRROR = "http://deb.debian.org/debian"
ARCHIVE_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


# Settings of the system's Acquire tree worth keeping (proxies, date checks, retries); the rest —
# notably apt.conf.d's APT::Update::Post-Invoke* hooks and extra index targets — is left out.
_KEEP_ACQUIRE = re.compile(r"^Acquire::(https?|ftp|Check-Valid-Until|Check-Date|Retries|ForceIPv[46]"
                           r"|Max-ValidTime|Min-ValidTime|AllowInsecure|AllowWeak|AllowDowngrade)")


def apt_root(arch: str, suite: str | None = None, source: bool = False) -> str:
    return os.path.join(cache_root(), f"apt-{arch}" + (f"-{suite}" if suite else "") + ("-src" if source else ""))


def _apt_env(arch: str, suite: str | None = None, source: bool = False) -> dict[str, str]:
    """Environment that points apt at the private state of ``arch`` (created on first use).

    ``APT_CONFIG`` is read before apt.conf.d, so it can replace the parts directory with an empty
    one: the system's hooks never run. APT::Architectures is that one architecture, so only its
    Packages lists (and arch: all) are downloaded. With ``suite`` the sources are that release's
    main component on :data:`OTHER_SUITE_MIRROR` instead of the system's sources; with ``source``
    too, that release's ``deb-src`` line alone (a state of its own, for ``apt-get source``).
    """
    root = apt_root(arch, suite, source)
    for d in ("lists/partial", "cache/archives/partial", "parts", "log", "state", "debs"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    status = os.path.join(root, "status")
    if not os.path.exists(status):
        open(status, "w").close()
    try:
        dump = _run(["apt-config", "dump"])
    except DebianError:
        dump = ""
    kept = [ln for ln in dump.splitlines() if _KEEP_ACQUIRE.match(ln)]
    conf = "\n".join([
        f'Dir::Etc::parts "{root}/parts";',
        f'Dir::Etc::main "{root}/apt.conf.main";',  # never created: no second main file
        f'Dir::Etc::preferencesparts "{root}/parts";',
        f'Dir::Etc::preferences "{root}/preferences";',
        f'Dir::State "{root}/state";',
        f'Dir::State::lists "{root}/lists";',
        f'Dir::State::status "{status}";',
        f'Dir::Cache "{root}/cache";',
        f'Dir::Log "{root}/log";',
        *([f'Dir::Etc::sourcelist "{root}/sources.list";', f'Dir::Etc::sourceparts "{root}/parts";']
          if suite else []),
        f'APT::Architecture "{arch}";',
        f'APT::Architectures {{ "{arch}"; }};',
        *kept,
        'Acquire::Languages "none";',
        'Acquire::GzipIndexes "true";',
        "",
    ])
    if suite:
        with open(os.path.join(root, "sources.list"), "w", encoding="utf-8") as f:
            kind = "deb-src" if source else "deb"
            f.write(f"{kind} [signed-by={ARCHIVE_KEYRING}] {OTHER_SUITE_MIRROR} {suite} main\n")
    path = os.path.join(root, "apt.conf")
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else None
    if old != conf:
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".apt.conf.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(conf)
        os.replace(tmp, path)
    env = dict(os.environ, APT_CONFIG=path, LC_ALL="C")
    if not _lists(root):
        _update(env, root)
    return env


def _lists(root: str) -> list[str]:
    return glob.glob(os.path.join(root, "lists", "*_Packages*")) + glob.glob(os.path.join(root, "lists", "*_Sources*"))


def _update(env: dict[str, str], root: str) -> None:
    """``apt-get update`` of a private state. Like apt itself, an index that fails to download is
    ignored when others succeeded (a mirror may lack an architecture in one suite, or serve an index
    that does not match its Release file): the packages of the remaining suites stay usable."""
    try:
        _run(["apt-get", "-q", "update"], env=env)
    except DebianError:
        if not _lists(root):
            raise


def apt_update(arch: str, suite: str | None = None) -> None:
    """Refresh the private package lists of ``arch`` (of ``suite``)."""
    _update(_apt_env(arch, suite), apt_root(arch, suite))


def _apt(cmd: list[str], arch: str | None, cwd: str | None = None, suite: str | None = None,
         source: bool = False) -> str:
    """Run an apt command for ``arch`` and ``suite`` (None, None: the system's own apt; ``source``:
    the ``deb-src`` state of ``suite``). A private lookup that fails is retried once after
    refreshing the private lists (a stale list names superseded versions)."""
    if not _private(arch, suite):
        return _run(cmd, cwd=cwd)
    arch = arch or native_arch()
    env = _apt_env(arch, suite, source)
    try:
        return _run(cmd, cwd=cwd, env=env)
    except DebianError:
        _update(env, apt_root(arch, suite, source))
        return _run(cmd, cwd=cwd, env=env)


# ---------------------------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------------------------

def depends_of(meta: str, arch: str | None = None, suite: str | None = None) -> list[str]:
    """Direct dependencies of a (meta-)package, as ``apt-cache depends`` lists them."""
    out = _apt(["apt-cache", "depends", meta], arch, suite=suite)
    return re.findall(r"^\s+Depends: (\S+)", out, re.M)


# Debian bookworm's amd64 kernel series, each with the meta-package that points at its newest image
SERIES_METAPACKAGES = {"6.1": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}


def series_kernel(series: str) -> DebianKernel:
    """The newest Debian image of a kernel series ("6.1", "6.12"), fetched and unpacked."""
    if series not in SERIES_METAPACKAGES:
        raise DebianError(f"{series}: unknown kernel series (one of {', '.join(SERIES_METAPACKAGES)})")
    return DebianKernel(image_package(SERIES_METAPACKAGES[series]))


# Debian architecture -> the flavour of its default image meta-package (linux-image-<flavour>)
ARCH_FLAVOURS = {None: "amd64", "amd64": "amd64", "i386": "686", "armhf": "armmp", "arm64": "arm64",
                 "s390x": "s390x", "ppc64el": "powerpc64le", "mips64el": "5kc-malta", "mipsel": "4kc-malta"}


def fetch_kernel(package: str | None = None, meta: str | None = None,
                 arch: str | None = None) -> tuple[DebianKernel, str]:
    """``kmodsim fetch-kernel``: the image ``package`` (default: what ``meta`` depends on; default
    meta: linux-image-<flavour> of ``arch``), downloaded and unpacked, and its headers directory."""
    if not package and not meta:
        if arch not in ARCH_FLAVOURS:
            raise DebianError(f"--arch {arch}: name the image with --package or --meta")
        meta = f"linux-image-{ARCH_FLAVOURS[arch]}"
    k = DebianKernel(package or image_package(meta or "", arch), arch)
    return k, k.headers()


def image_package(meta: str = "linux-image-amd64", arch: str | None = None, suite: str | None = None) -> str:
    """The versioned image package a meta-package points at, e.g. linux-image-6.1.0-56-amd64."""
    for dep in depends_of(meta, arch, suite):
        if dep.startswith("linux-image-"):
            return dep
    raise DebianError(f"{meta}: depends on no linux-image package")


def fetch_deb(package: str, arch: str | None = None, suite: str | None = None) -> str:
    """The .deb of ``package`` (``name``, or ``name=version`` for an exact version) in the cache,
    downloading it if needed. A foreign ``arch`` or another ``suite`` has its own directory
    (``apt-<arch>[-<suite>]/debs``): same-named packages of two architectures never mix."""
    private = _private(arch, suite)
    d = os.path.join(apt_root(arch or native_arch(), suite), "debs") if private else os.path.join(cache_root(), "debs")
    os.makedirs(d, exist_ok=True)
    name, _, version = package.split(":")[0].partition("=")
    # .deb file names spell the version's epoch colon as %3a
    pattern = f"{glob.escape(name)}_{glob.escape(version.replace(':', '%3a')) if version else '*'}_*.deb"
    have = sorted(glob.glob(os.path.join(d, pattern)))
    if have:
        return have[-1]
    tmp = tempfile.mkdtemp(prefix=".dl-", dir=d)
    try:
        _apt(["apt-get", "download", package], arch, cwd=tmp, suite=suite)
        debs = glob.glob(os.path.join(tmp, "*.deb"))
        if len(debs) != 1:
            raise DebianError(f"apt-get download {package}: expected one .deb, got {len(debs)}")
        dest = os.path.join(d, os.path.basename(debs[0]))
        os.replace(debs[0], dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unpack(debs: list[str], key: str) -> str:
    """``dpkg-deb -x`` every .deb into one directory of the cache named ``key``; atomic."""

    def fill(tmp: str) -> None:
        for deb in debs:
            _run(["dpkg-deb", "-x", deb, tmp])

    return cached_dir(os.path.join(cache_root(), "roots", key), fill)


class DebianKernel:
    """An unpacked Debian kernel image package (of a foreign architecture with ``arch``)."""

    def __init__(self, package: str, arch: str | None = None, suite: str | None = None) -> None:
        """``package``: ``linux-image-<kver>``, or ``linux-image-<kver>=<version>`` for that exact
        Debian version (a :class:`DebianError` when neither the cache nor the archive has it)."""
        self.package = package
        self.version = package.partition("=")[2] or None  # the exact version asked for, if any
        self.arch = arch
        self.suite = suite
        self.deb = fetch_deb(package, arch, suite)
        self.root = unpack([self.deb], os.path.basename(self.deb)[:-4])
        mods = glob.glob(os.path.join(self.root, "lib", "modules", "*"))
        if len(mods) != 1:
            raise DebianError(f"{self.deb}: expected one lib/modules/<kver>, found {len(mods)}")
        self.modules_dir = mods[0]
        self.kver = os.path.basename(mods[0])
        # the kernel image: vmlinuz-<kver>, or vmlinux-<kver> where Debian ships an ELF (ppc64el)
        self.vmlinuz = os.path.join(self.root, "boot", f"vmlinuz-{self.kver}")
        elf_image = os.path.join(self.root, "boot", f"vmlinux-{self.kver}")
        if not os.path.exists(self.vmlinuz) and os.path.exists(elf_image):
            self.vmlinuz = elf_image

    def headers(self) -> str:
        """The matching headers directory: installed under /usr/src if there (native packages only),
        else unpacked from ``linux-headers-<kver>``, its ``-common`` and ``linux-kbuild-*`` into the
        cache (with the arch Makefile's include repointed at the unpacked common tree). A kernel
        asked for at an exact version gets the headers of that version, unpacked apart."""
        if self.version:
            return unpacked_headers(self.kver, self.arch, self.suite, self.version)
        if not _private(self.arch, self.suite):
            installed = f"/usr/src/linux-headers-{self.kver}"
            if os.path.isfile(os.path.join(installed, "Module.symvers")):
                return installed
        return unpacked_headers(self.kver, self.arch, self.suite)


def kernel_image(release: str) -> str:
    """The kernel image of Debian's ``linux-image-<release>`` (fetched, unpacked and cached): what
    ``verify`` boots when not given one. Raises :class:`DebianError`."""
    return DebianKernel(f"linux-image-{release}").vmlinuz


def unpacked_headers(kver: str, arch: str | None = None, suite: str | None = None,
                     version: str | None = None) -> str:
    """``linux-headers-<kver>`` and what it needs, unpacked into the cache. For a foreign ``arch``
    the ``linux-kbuild-*`` tools (built for that architecture, unusable here) are left out. With
    ``version``, that exact Debian version of the headers and of their ``-common`` package."""
    pkg = f"linux-headers-{kver}"
    at = f"={version}" if version else ""
    debs = [fetch_deb(pkg + at, arch, suite)]
    deps = depends_of(pkg + at, arch, suite)
    if version and not deps:  # apt-cache names no version it does not know, and says nothing
        raise DebianError(f"{pkg}={version}: the archive does not serve this version")
    common = [d for d in deps if d.startswith("linux-headers-") and d.endswith("-common")]
    kbuild = [] if _is_foreign(arch) else [d for d in deps if d.startswith("linux-kbuild-")]
    debs += [fetch_deb(p + at, arch, suite) for p in common] + [fetch_deb(p, arch, suite) for p in kbuild]
    root = unpack(debs, f"headers-{kver}" + (f"_{version}" if version else ""))
    hdir = os.path.join(root, "usr", "src", pkg)
    mk = os.path.join(hdir, "Makefile")
    text = open(mk, encoding="utf-8").read()
    fixed = re.sub(r"^include /usr/src/", f"include {root}/usr/src/", text, count=1, flags=re.M)
    if fixed != text:
        with open(mk, "w", encoding="utf-8") as f:
            f.write(fixed)
    return hdir


# ---------------------------------------------------------------------------------------------
# Source packages
# ---------------------------------------------------------------------------------------------

def source_version(package: str, suite: str) -> str:
    """The version of source package ``package`` in ``suite`` (its private ``deb-src`` state)."""
    out = _apt(["apt-cache", "showsrc", "--only-source", package], None, suite=suite, source=True)
    m = re.search(r"^Version: (\S+)", out, re.M)
    if m is None:
        raise DebianError(f"{package}: no source package in {suite}")
    return m.group(1)


def upstream_source(package: str, suite: str) -> str:
    """The upstream tree of source package ``package`` of ``suite`` (e.g. bookworm's ``kmod``):
    ``apt-get source --download-only`` through a private apt state with that release's
    ``deb-src`` line, then the ``.orig.tar.*`` unpacked — the upstream code, without Debian's
    patches — into ``cache_root()/src/<package>_<version>/``; returns its top directory. apt may
    stop after the tarballs arrived (a ``.dsc`` it cannot verify): the tarball is what counts."""
    version = source_version(package, suite)
    dest = os.path.join(cache_root(), "src", f"{package}_{version}")

    def fill(tmp: str) -> None:
        dl = os.path.join(tmp, "dl")
        os.mkdir(dl)
        try:
            _apt(["apt-get", "-q", "source", "--download-only", f"{package}={version}"], None, cwd=dl,
                 suite=suite, source=True)
        except DebianError:
            pass  # judged by the tarball below
        upstream = version.split(":")[-1].rsplit("-", 1)[0]
        origs = glob.glob(os.path.join(dl, f"{glob.escape(package)}_{glob.escape(upstream)}.orig.tar.*"))
        if len(origs) != 1:
            raise DebianError(f"apt-get source {package}={version}: expected one .orig.tar.*, got {len(origs)}")
        tree = os.path.join(tmp, "tree")
        os.mkdir(tree)
        _run(["tar", "-xf", origs[0], "-C", tree, "--no-same-owner"])
        shutil.rmtree(dl)

    cached_dir(dest, fill)
    tops = [d for d in os.listdir(os.path.join(dest, "tree")) if not d.startswith(".")]
    if len(tops) != 1:
        raise DebianError(f"{dest}/tree: expected one top directory, found {len(tops)}")
    return os.path.join(dest, "tree", tops[0])


# ---------------------------------------------------------------------------------------------
# Inputs named by package
# ---------------------------------------------------------------------------------------------

PACKAGE_PREFIX = "debian:"


def resolve_input(spec: str) -> str:
    """A path for an input named by its Debian package, fetched and unpacked into the cache:

    * ``debian:linux-image-<kver>`` (or ``...=<version>``): the unpacked package, a root file
      system (``boot/vmlinuz-<kver>``, ``lib/modules/<kver>``);
    * ``debian:linux-headers-<kver>`` (no ``=<version>``): its headers directory (the installed one under /usr/src
      when there, else unpacked with what it needs, as :func:`unpacked_headers`).

    Anything else is a path and comes back as it is. Naming inputs this way lets a task on a
    cluster worker (:mod:`kmodsim.cluster`) fetch its own kernel instead of needing a shared file
    system."""
    if not spec.startswith(PACKAGE_PREFIX):
        return spec
    package = spec[len(PACKAGE_PREFIX):]
    name = package.partition("=")[0]
    if name.startswith("linux-image-") and not name.endswith("-dbg"):
        return DebianKernel(package).root
    if name.startswith("linux-headers-") and name == package:  # the ABI name is its version
        kver = name[len("linux-headers-"):]
        installed = f"/usr/src/linux-headers-{kver}"
        if os.path.isfile(os.path.join(installed, "Module.symvers")):
            return installed
        return unpacked_headers(kver)
    raise DebianError(f"{spec}: expected debian:linux-image-<kver> or debian:linux-headers-<kver>")
