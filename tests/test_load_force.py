"""Script lines that force a load (issue #18): kmod's options as finit_module() flags."""

import pytest

from kmodsim.loader.script import (
    MODULE_INIT_IGNORE_MODVERSIONS,
    MODULE_INIT_IGNORE_VERMAGIC,
    ScriptError,
    parse_script,
)

BOTH = MODULE_INIT_IGNORE_VERMAGIC | MODULE_INIT_IGNORE_MODVERSIONS


def test_uapi_values():
    """include/uapi/linux/module.h: MODULE_INIT_IGNORE_MODVERSIONS 1, MODULE_INIT_IGNORE_VERMAGIC 2."""
    assert (MODULE_INIT_IGNORE_MODVERSIONS, MODULE_INIT_IGNORE_VERMAGIC) == (1, 2)


@pytest.mark.parametrize("line, op, target, args, flags", [
    ("modprobe m", "modprobe", "m", "", 0),
    ("modprobe --force-vermagic m", "modprobe", "m", "", MODULE_INIT_IGNORE_VERMAGIC),
    ("modprobe --force-modversion m a=1", "modprobe", "m", "a=1", MODULE_INIT_IGNORE_MODVERSIONS),
    ("modprobe --force-vermagic --force-modversion m", "modprobe", "m", "", BOTH),
    ("modprobe -f m", "modprobe", "m", "", BOTH),
    ("modprobe --force m x=y z=1", "modprobe", "m", "x=y z=1", BOTH),
    ("insmod -f x.ko", "insmod", "x.ko", "", BOTH),
    ("insmod --force x.ko p=1", "insmod", "x.ko", "p=1", BOTH),
    ("insmod x.ko", "insmod", "x.ko", "", 0),
])
def test_force_options_parse(line, op, target, args, flags):
    (s,) = parse_script(line + "  # init=-19\n")
    assert (s.op, s.target, s.args, s.flags, s.cmd, s.init) == (op, target, args, flags, line, -19)


@pytest.mark.parametrize("line, words", [
    ("insmod --force-vermagic x.ko", "insmod: unknown option '--force-vermagic' (known: -f, --force)"),
    ("modprobe --bogus m", "modprobe: unknown option '--bogus'"),
    ("rmmod -f m", "rmmod: unknown option '-f'"),
    ("modprobe -f", "modprobe needs a module name"),
    ("insmod -f", "insmod needs a path"),
])
def test_bad_force_lines(line, words):
    with pytest.raises(ScriptError) as exc:
        parse_script(line + "\n", "s.script")
    assert str(exc.value).startswith("s.script:1: ") and words in str(exc.value)
