#!/usr/bin/env bash
# The KVM monolithic experiment on Debian's own 6.1 KVM, in one command (see README.md).
# Sets kmodsim up on a fresh machine first (scripts/setup.sh), then runs the Python driver.
set -euo pipefail
cd "$(dirname "$0")/../.."
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
if [ ! -x .venv/bin/kmodsim ] || ! installed linux-headers-amd64 || ! installed qemu-system-x86 \
        || ! installed busybox-static; then
    bash scripts/setup.sh
fi
exec .venv/bin/python examples/kvm-monolithic/kvm_monolithic.py "$@"
