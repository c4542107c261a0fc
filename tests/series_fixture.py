"""The series tests/test_series.py checks, written here: a git repository made in a temporary
directory from tests/kbuild/series (kss_lib of two objects, kss_drv using it), and five commits
that each do one thing ``kmodsim series`` must see:

1. add ``kss_mul`` to kss_lib_util.c (a one-file step: one object recompiles);
2. move ``kss_scale`` from kss_lib to kss_drv (an export moved; its hunk's context holds
   ``kss_mul``, so the patch does not apply before step 1);
3. kss_drv exports its own ``kss_version`` (kss_lib exports it too: a duplicate export);
4. kss_lib drops ``kss_version`` and loses a semicolon (the build breaks);
5. the semicolon back (it builds again; the duplicate is gone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BASE = Path(__file__).parent / "kbuild" / "series"

GIT_ENV = {"GIT_AUTHOR_NAME": "kmodsim tests", "GIT_AUTHOR_EMAIL": "tests@kmodsim.invalid",
           "GIT_COMMITTER_NAME": "kmodsim tests", "GIT_COMMITTER_EMAIL": "tests@kmodsim.invalid",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new))


KSS_MUL = """
int kss_mul(int a, int b)
{
	return a * b;
}
EXPORT_SYMBOL_GPL(kss_mul);
"""

KSS_SCALE = """static int kss_factor = 3;

int kss_scale(int x)
{
	return x * kss_factor;
}
EXPORT_SYMBOL_GPL(kss_scale);
"""

DRV_VERSION = """int kss_version(void)
{
	return 2;
}
EXPORT_SYMBOL(kss_version);

"""

LIB_VERSION = """int kss_version(void)
{
	return 1;
}
EXPORT_SYMBOL(kss_version);

"""


def step1(d: Path) -> str:
    _edit(d / "kss_lib_util.c", "EXPORT_SYMBOL_GPL(kss_scale);\n", "EXPORT_SYMBOL_GPL(kss_scale);\n" + KSS_MUL)
    return "kss_lib: add kss_mul"


def step2(d: Path) -> str:
    _edit(d / "kss_lib_util.c", KSS_SCALE, "")
    _edit(d / "kss_drv.c", "static int kss_drv_state[16];\n", "static int kss_drv_state[16];\n\n" + KSS_SCALE)
    return "kss: move kss_scale from kss_lib to kss_drv"


def step3(d: Path) -> str:
    _edit(d / "kss_drv.c", "static int __init kss_drv_init", DRV_VERSION + "static int __init kss_drv_init")
    return "kss_drv: export its own kss_version"


def step4(d: Path) -> str:
    _edit(d / "kss_lib_main.c", LIB_VERSION, "")
    _edit(d / "kss_lib_main.c", "return a + b;", "return a + b")
    return "kss_lib: drop kss_version"


def step5(d: Path) -> str:
    _edit(d / "kss_lib_main.c", "return a + b", "return a + b;")
    return "kss_lib: restore the semicolon kss_add lost"


STEPS = [step1, step2, step3, step4, step5]


def make_repo(where: Path) -> tuple[Path, list[str]]:
    """The repository (base commit, then the five steps); (its path, [base sha, step shas...])."""
    repo = where / "kss"
    shutil.copytree(BASE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "kss: base")
    shas = [git(repo, "rev-parse", "HEAD").strip()]
    for step in STEPS:
        subject = step(repo)
        git(repo, "commit", "-q", "-a", "-m", subject, "-m", "Written by kmodsim's tests.")
        shas.append(git(repo, "rev-parse", "HEAD").strip())
    return repo, shas


def export_patches(repo: Path, base: str, out: Path) -> dict[str, Path]:
    """The series as patch files the three ways users have them: git format-patch files in a
    directory, one mbox (git format-patch --stdout), a quilt directory (the same files and a
    ``series`` file)."""
    fp = out / "format-patch"
    git(repo, "format-patch", "-q", "-o", str(fp), f"{base}..HEAD")
    mbox = out / "series.mbox"
    mbox.write_text(git(repo, "format-patch", "--stdout", f"{base}..HEAD"))
    quilt = out / "quilt" / "patches"
    quilt.mkdir(parents=True)
    names = sorted(p.name for p in fp.iterdir())
    for n in names:
        shutil.copy(fp / n, quilt / n)
    (quilt / "series").write_text("# written by kmodsim's tests\n" + "".join(f"{n} -p1\n" for n in names))
    return {"format-patch": fp, "mbox": mbox, "quilt": quilt}


KSO_BASE = """// SPDX-License-Identifier: GPL-2.0
/* kmodsim fixture: calls through an ops table, made direct one step at a time. */
#include <linux/module.h>

struct kso_ops {
	int (*add)(int a, int b);
	int (*neg)(int a);
	void (*reset)(void);
};

static int kso_add(int a, int b)
{
	return a + b;
}

static int kso_neg(int a)
{
	return -a;
}

static struct kso_ops kso_impl = {
	.add = kso_add,
	.neg = kso_neg,
};

static struct kso_ops *kso_cur = &kso_impl;

int kso_run(int x)
{
	int r = kso_cur->add(x, 1);

	if (kso_cur->neg)
		r = kso_cur->neg(r);
	if (kso_cur->reset)
		kso_cur->reset();
	return r;
}
EXPORT_SYMBOL(kso_run);

static int __init kso_init(void)
{
	kso_impl.reset = NULL;
	return 0;
}

module_init(kso_init);
MODULE_LICENSE("GPL");
"""

OPS_STEPS = [
    ("kso: call kso_add directly", "int r = kso_cur->add(x, 1);", "int r = kso_add(x, 1);"),
    ("kso: neg is always set: call it directly", "\tif (kso_cur->neg)\n\t\tr = kso_cur->neg(r);\n",
     "\tr = kso_neg(r);\n"),
    ("kso: reset is never set: drop its call and its store",
     "\tif (kso_cur->reset)\n\t\tkso_cur->reset();\n", ""),
]


def make_ops_repo(where: Path) -> tuple[Path, list[str]]:
    """A module (kso) whose calls through ``struct kso_ops`` are made direct in three commits."""
    repo = where / "kso"
    repo.mkdir()
    (repo / "Kbuild").write_text("# kmodsim fixture: an ops table made direct (tests/test_series.py)\nobj-m += kso.o\n")
    (repo / "kso.c").write_text(KSO_BASE)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "kso: base")
    shas = [git(repo, "rev-parse", "HEAD").strip()]
    for i, (subject, old, new) in enumerate(OPS_STEPS):
        _edit(repo / "kso.c", old, new)
        if i == 2:
            _edit(repo / "kso.c", "\tkso_impl.reset = NULL;\n", "")
        git(repo, "commit", "-q", "-a", "-m", subject)
        shas.append(git(repo, "rev-parse", "HEAD").strip())
    return repo, shas


# ---------------------------------------------------------------------------------------------
# Pairs for --reorder: patches over tests/kbuild/series, each written against the tree it needs
# ---------------------------------------------------------------------------------------------

def add_drv_version(d: Path) -> str:
    _edit(d / "kss_drv.c", "static int __init kss_drv_init", DRV_VERSION + "static int __init kss_drv_init")
    return "kss_drv: export its own kss_version"


def drop_lib_version(d: Path) -> str:
    _edit(d / "kss_lib_main.c", LIB_VERSION, "")
    return "kss_lib: drop kss_version"


def drop_lib_version_keep_drv(d: Path) -> str:
    """Needs add_drv_version: its kss_drv.c hunk changes a line that patch adds."""
    _edit(d / "kss_lib_main.c", LIB_VERSION, "")
    _edit(d / "kss_drv.c", "\treturn 2;\n", "\treturn 1;\n")
    return "kss: kss_version is kss_drv's now, and returns 1 as kss_lib's did"


def write_patch(where: Path, name: str, steps: list) -> Path:
    """``git format-patch`` of the last of ``steps`` (each a function editing a tree) over the ones
    before it, all over tests/kbuild/series; written to ``where/<name>.patch``."""
    repo = where / f"repo-{name}"
    shutil.copytree(BASE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "kss: base")
    for step in steps:
        subject = step(repo)
        git(repo, "commit", "-q", "-a", "-m", subject, "-m", "Written by kmodsim's tests.")
    out = where / f"{name}.patch"
    out.write_text(git(repo, "format-patch", "--stdout", "HEAD~1..HEAD"))
    shutil.rmtree(repo)
    return out
