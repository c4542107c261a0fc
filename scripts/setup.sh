#!/usr/bin/env bash
# Set up kmodsim on Debian 12: the Debian packages it and its tests use, then the package itself
# (with its pinned dependencies) in ./.venv. Safe to run again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# python3-venv: the virtualenv; gcc-12 + make: Debian's kbuild (linux-headers-amd64 pulls
# linux-kbuild-6.1); binutils: readelf (a test oracle); bpftool: BTF dumps (the oracle of abi's causes);
# kmod: depmod/modinfo (oracles, benchmark);
# xz-utils/zstd: compressed modules; dpkg-dev is not needed (dpkg-deb is in dpkg); e2fsprogs + mount:
# the racy-timestamp tests loop-mount an ext4 with one-second timestamps; meson ... pkgconf: kmod 34
# built from Debian 13's source into ~/.cache/kmodsim/kmod-34.2 at test time (kmodsim.kmod_build).
APT_PKGS=(python3 python3-venv python3-pip gcc-12 gcc make binutils kmod xz-utils zstd qemu-system-x86 libc6-dev bpftool
          linux-headers-amd64 busybox-static e2fsprogs mount
          meson ninja-build pkgconf libzstd-dev liblzma-dev zlib1g-dev libssl-dev)

need=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
# apt-get download (real kernel packages for tests and examples) needs fresh package lists too.
$SUDO apt-get update -qq
if [ "${#need[@]}" -gt 0 ]; then
    echo "setup: installing ${need[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test]'
# Byte-compile once: where PYTHONDONTWRITEBYTECODE is set, Python reads .pyc but never writes them,
# and every kmodsim start would otherwise recompile the package (~50 ms).
.venv/bin/python -m compileall -q src >/dev/null
echo "setup: ready (.venv/bin/kmodsim)" >&2
