"""``kmodsim abi check`` on real inputs (issue #18): Debian 6.1.0-53's leaf modules on the
6.1.0-54 kernel (module_layout equal, thousands of CRCs not: some load, some are refused) and
6.1.0-55's on 6.1.0-57 (no export changed).

Oracles: the real kernel under QEMU (``kmodsim verify``) for every errno and call; and ``abi
check`` must agree with ``kmodsim load`` of the same modules. Known gaps of the model, seen on
these kernels and left as differences (not asserted away): the module BTF of another build fails
the new kernel's validation ("BPF: ... Invalid name", "failed to validate module [M] BTF: -22";
CONFIG_MODULE_ALLOW_BTF_MISMATCH=y, so the load goes on), and with MODULE_INIT_IGNORE_MODVERSIONS
the ``__versions`` section keeps SHF_ALLOC and is laid out in the module's memory (the footprint
model does not count it).
"""

import json
import os
import re
from pathlib import Path

import pytest

from conftest import need, run_kmodsim

pytestmark = pytest.mark.slow

SCRIPTS = Path(__file__).parent / "scenarios" / "abi"
# (modules of, kernel of): image packages, exact Debian versions
PAIRS = [("6.1.0-53-amd64", "6.1.0-54-amd64"), ("6.1.0-55-amd64", "6.1.0-57-amd64")]


def _kernel(kver):
    from kmodsim.debian import DebianError, DebianKernel

    try:
        k = DebianKernel(f"linux-image-{kver}")
        return k, k.headers()
    except DebianError as exc:
        need(f"linux-image-{kver}: {exc}")


def _run(*args):
    return run_kmodsim(*args)


def _names(script):
    return [line.split()[-1] for line in script.read_text().splitlines() if line.startswith("modprobe")]


@pytest.mark.parametrize("old, new", PAIRS)
def test_abi_check_agrees_with_load(old, new, tmp_path):
    ko, _ = _kernel(old)
    kn, headers = _kernel(new)
    names = _names(SCRIPTS / "leaf_plain.script")
    files = {}
    for root, _dirs, fs in os.walk(ko.modules_dir):
        for f in fs:
            if f.endswith(".ko") and f[:-3].replace("-", "_") in names:
                files[f[:-3].replace("-", "_")] = os.path.join(root, f)
    assert sorted(files) == sorted(names)
    p = _run("abi", "check", "--json", "--kernel", headers, "--vmlinuz", kn.vmlinuz, *[files[n] for n in names])
    assert p.returncode in (0, 1), p.stderr
    doc = json.loads(p.stdout)
    by = {m["name"]: m for m in doc["modules"]}
    for mode, opt in (("load", ""), ("force_vermagic", "--force-vermagic "), ("force", "-f ")):
        # each module alone on a fresh model, as abi check tries it
        for n in names:
            s = tmp_path / f"{n}.script"
            s.write_text(f"modprobe {opt}{n}\n")
            r = _run("load", "--json", "--kernel", headers, "--vmlinuz", kn.vmlinuz, "--modules", ko.root,
                     "--script", str(s))
            assert r.returncode == 0, r.stderr
            step = json.loads(r.stdout)["steps"][0]
            assert (step["errno"], step["messages"]) == (by[n][mode]["errno"], by[n][mode]["messages"]), (n, mode)
    verdicts = {m["verdict"] for m in doc["modules"]}
    if old.startswith("6.1.0-53"):
        assert verdicts == {"loads", "force"} and p.returncode == 1
    else:
        assert verdicts == {"loads"} and p.returncode == 0


@pytest.mark.realkernel
@pytest.mark.parametrize("script", ["leaf_plain", "leaf_force_vermagic", "leaf_force"])
@pytest.mark.parametrize("old, new", PAIRS)
def test_real_kernel_agrees(old, new, script):
    ko, _ = _kernel(old)
    kn, headers = _kernel(new)
    p = _run("verify", "--compare", "--kernel", headers, "--vmlinuz", kn.vmlinuz, "--modules", ko.root,
             "--script", str(SCRIPTS / f"{script}.script"))
    if p.returncode == 2:
        need(f"verify on {new}: {p.stderr.strip()}")
    diffs = [line for line in p.stdout.splitlines() if line.startswith("DIFF: ")]
    errno = [d for d in diffs if re.search(r"\): (errno|calls): ", d)]
    assert not errno, errno[:5]
    # every other difference is one of the two known gaps of the module docstring
    other = [d for d in diffs if not re.search(r"'(BPF: .*|failed to validate module \[\w+\] BTF: -22)'", d)
             and not re.search(r"(size|core size): model \d+, kernel \d+$", d)]
    assert not other, other[:5]
