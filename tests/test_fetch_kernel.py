"""``kmodsim fetch-kernel``: the package linux-image-amd64 points at, unpacked, with its headers —
checked against apt's own answer and the unpacked files themselves."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest

from conftest import run_kmodsim

pytestmark = pytest.mark.realkernel


def test_fetch_kernel_json_and_shell(debian61):
    doc = json.loads(run_kmodsim("fetch-kernel", "--json", check=0).stdout)
    # apt's answer: the image package the metapackage depends on (from the local package lists)
    deps = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    images = re.findall(r"Depends: (linux-image-[\d.]+-\d+-amd64)\b", deps)
    assert doc["package"] in images
    assert doc["package"] == f"linux-image-{doc['kver']}" and doc["kver"] == debian61.kver
    # the unpacked package: its module tree, its bzImage, and headers of the same release
    assert os.path.basename(doc["modules"]) == doc["kver"] and os.path.isfile(os.path.join(doc["modules"], "modules.order"))
    with open(doc["vmlinuz"], "rb") as f:
        f.seek(0x202)
        assert f.read(4) == b"HdrS"  # x86 boot protocol header
    uts = open(os.path.join(doc["headers"], "include/generated/utsrelease.h")).read()
    assert f'"{doc["kver"]}"' in uts and os.path.isfile(os.path.join(doc["headers"], "Module.symvers"))
    # --shell: the same values, as assignments a shell can eval
    sh = run_kmodsim("fetch-kernel", "--shell", check=0).stdout
    env = dict(shlex.split(line)[0].split("=", 1) for line in sh.splitlines())
    assert {k: env[f"KMODSIM_{k.upper()}"] for k in doc} == doc
