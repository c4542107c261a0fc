#!/usr/bin/env bash
# Set up kmodsim, then run it on real inputs: Debian's own 6.1 kernel package (fetched with
# apt-get download into ~/.cache/kmodsim, never installed) and the bundled fixture modules built
# by Debian's kbuild.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
KM=.venv/bin/kmodsim

eval "$($KM fetch-kernel --shell)"   # sets KMODSIM_KVER, KMODSIM_MODULES, KMODSIM_HEADERS, ...
KVM="$KMODSIM_MODULES/kernel/arch/x86/kvm"

echo "== kmodsim scan: every module of Debian's $KMODSIM_KVER"
$KM scan "$KMODSIM_MODULES"

echo; echo "== kmodsim inspect kvm.ko (first lines)"
$KM inspect "$KVM/kvm.ko" | head -n 12

echo; echo "== kmodsim ldd kvm-amd.ko: who provides each of its imports (first lines)"
$KM ldd "$KVM/kvm-amd.ko" --kernel "$KMODSIM_HEADERS" --modules "$KMODSIM_MODULES" | head -n 8

echo; echo "== the bundled fixture modules (tests/kbuild/basic), built by kbuild"
BUILD=$(.venv/bin/python -c "from kmodsim.kbuild import build; print(build('tests/kbuild/basic', '$KMODSIM_HEADERS'))")
$KM inspect "$BUILD/kms_a.ko" | sed -n '/^exports/,$p'
$KM ldd "$BUILD/kms_b.ko" --kernel "$KMODSIM_HEADERS" --modules "$BUILD" | grep kms_a
