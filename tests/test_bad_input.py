"""Bad input: one line on stderr naming the file and the problem, exit 2, no traceback, no hang,
and the other inputs of the same run still processed. Malformed inputs are derived from a real
kbuild-built module (truncation, corruption) or are foreign files that exist on the system."""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess

import pytest

from conftest import run_kmodsim

pytestmark = pytest.mark.kbuild


def _one_line_per_bad_file(stderr: str, bad: list[str]) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr
    assert len(lines) == len(bad), stderr
    for path in bad:
        assert sum(1 for ln in lines if ln.startswith(f"kmodsim: {path}: ")) == 1, (path, stderr)


def test_truncated_at_every_4k_boundary(basic_build, tmp_path):
    good = basic_build / "kms_a.ko"
    data = good.read_bytes()
    d = tmp_path / "tree"
    d.mkdir()
    shutil.copy(good, d / "good.ko")
    bad = []
    for cut in range(0, len(data), 4096):
        p = d / f"cut{cut:08d}.ko"
        p.write_bytes(data[:cut])
        bad.append(str(p))
    assert len(bad) >= 10
    p = run_kmodsim("scan", "--no-cache", "-j", "2", d)
    assert p.returncode == 2
    _one_line_per_bad_file(p.stderr, bad)
    assert p.stdout.startswith("1 modules, 4 exports,")  # good.ko still read
    # and through inspect, one file at a time, with the good one in the same run
    p = run_kmodsim("inspect", bad[3], d / "good.ko", bad[-1])
    assert p.returncode == 2 and "exports (4):" in p.stdout
    _one_line_per_bad_file(p.stderr, [bad[3], bad[-1]])


def test_foreign_and_corrupt_files(basic_build, tmp_path):
    good = (basic_build / "kms_a.ko").read_bytes()
    d = tmp_path
    cases = {}
    (d / "random.ko").write_bytes(os.urandom(70000))
    cases["random.ko"] = "not an ELF file"
    shutil.copy("/bin/true", d / "exe.ko")
    cases["exe.ko"] = "not a kernel module: ELF type ET_DYN"
    xz = bytearray(lzma.compress(good, format=lzma.FORMAT_XZ))
    xz[len(xz) // 2] ^= 0xFF
    (d / "corrupt.ko.xz").write_bytes(bytes(xz))
    cases["corrupt.ko.xz"] = "corrupt xz data"
    (d / "short.ko.xz").write_bytes(lzma.compress(good)[:-100])
    cases["short.ko.xz"] = "corrupt xz data"
    (d / "big.ko.xz").write_bytes(lzma.compress(good + b"\0" * (2 << 20)))
    cases["big.ko.xz"] = "xz data expands past the 2097152-byte limit"
    os.mkfifo(d / "fifo.ko")
    cases["fifo.ko"] = "not a regular file"
    os.symlink(d / "missing-target.ko", d / "dangling.ko")
    cases["dangling.ko"] = "No such file or directory"
    shutil.copy(basic_build / "kms_b.ko", d / "fine.ko")
    p = run_kmodsim("scan", "--no-cache", "--max-decompressed", "2M", d)
    assert p.returncode == 2
    _one_line_per_bad_file(p.stderr, [str(d / n) for n in cases])
    for name, problem in cases.items():
        assert f"kmodsim: {d / name}: {problem}" in p.stderr, (name, p.stderr)
    assert p.stdout.startswith("1 modules,")


def test_wrong_machine_against_kernel(basic_build, headers61, tmp_path):
    data = bytearray((basic_build / "kms_a.ko").read_bytes())
    data[18:20] = (183).to_bytes(2, "little")  # e_machine = EM_AARCH64
    p = tmp_path / "arm.ko"
    p.write_bytes(bytes(data))
    r = run_kmodsim("ldd", p, "--kernel", headers61)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"kmodsim: {p}: ELF machine AArch64 does not match the kernel's (x86-64)"


def test_missing_file_and_bad_kernel(tmp_path):
    r = run_kmodsim("inspect", tmp_path / "nope.ko")
    assert r.returncode == 2 and r.stderr.strip() == f"kmodsim: {tmp_path / 'nope.ko'}: No such file or directory"
    bogus = tmp_path / "Module.symvers"
    bogus.write_text("0x1234\tfoo\n")
    r = run_kmodsim("ldd", "/bin/true", "--kernel", bogus)
    assert r.returncode == 2
    assert r.stderr.strip().startswith(f"kmodsim: {bogus}:1: not a Module.symvers line")


def test_decompression_bomb_default_limit(tmp_path):
    """The default limit (128 MiB, said in --help) stops an xz that expands further, by its index;
    the same stream without its index is stopped while it is decompressed. See also
    test_bad_input_sweep.py (all formats, under a 1 GiB address-space limit)."""
    bomb = tmp_path / "bomb.ko.xz"
    with open(bomb, "wb") as f:
        subprocess.run("head -c 200M /dev/zero | xz -0 -T1", shell=True, stdout=f, check=True)
    cut = tmp_path / "cut.ko.xz"
    cut.write_bytes(bomb.read_bytes()[:-64])
    for p in (bomb, cut):
        r = run_kmodsim("inspect", p)
        assert r.returncode == 2
        assert r.stderr.strip() == f"kmodsim: {p}: xz data expands past the 134217728-byte limit"
    assert r.stdout == ""
    r = run_kmodsim("inspect", "--help")
    assert "--max-decompressed SIZE" in r.stdout and "(default: 128M)" in " ".join(r.stdout.split())


def test_unreadable_directory_inside_tree(basic_build, tmp_path):
    d = tmp_path / "t"
    (d / "sub").mkdir(parents=True)
    shutil.copy(basic_build / "kms_a.ko", d / "a.ko")
    os.symlink(d / "gone", d / "sub" / "loop")  # dangling dir link: not a module, ignored
    os.symlink(d, d / "sub" / "back")  # a symlink loop must not hang discovery
    r = run_kmodsim("scan", "--no-cache", d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("1 modules,")


@pytest.mark.parametrize("command", ["load", "verify"])
def test_script_naming_a_bad_module(command, basic_build, headers61, tmp_path):
    """A script's insmod (or a modprobe through --modules) of a non-ELF or truncated file: one line
    naming the script line and the file, exit 2 — not a traceback and exit 1 ("findings")."""
    data = (basic_build / "kms_b.ko").read_bytes()
    (tmp_path / "trunc.ko").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.ko").write_text("not a module\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(basic_build / "kms_a.ko", tree / "kms_a.ko")
    (tree / "kms_b.ko").write_bytes(data[:100])  # modprobe kms_b: its own file is bad
    cases = {"insmod trunc.ko": f"trunc.ko: section header table at {int.from_bytes(data[0x28:0x30], 'little'):#x} "
                                f"is past the end of the file ({len(data) // 2:#x} bytes)",
             "insmod text.ko": "text.ko: not an ELF file (bad magic)",
             "insmod /bin/true": "/bin/true: not a kernel module: ELF type ET_DYN, expected ET_REL",
             # modprobe resolves through depmod's model of the tree, whose reader words it as libkmod
             "modprobe kms_b": f"{tree / 'kms_b.ko'}: file too short to hold its section headers"}
    for i, (line, problem) in enumerate(cases.items()):
        script = tmp_path / f"s{i}.txt"
        script.write_text(f"insmod {basic_build / 'kms_c.ko'}\n{line}\n")
        r = run_kmodsim(command, "--kernel", headers61, "--modules", tree, "--script", script, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, (line, r.returncode, r.stderr[-2000:])
        assert r.stderr.startswith(f"kmodsim: {script}:2: {problem}") and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.parametrize("argv", [["--help"], ["inspect", "{ko}"], ["check", "--format", "json", "{ko}"]])
def test_output_to_a_full_device(argv, basic_build):
    """stdout on a full disk (``/dev/full``): one line saying so, exit 2 — not a traceback, and
    not exit 0 for output that never arrived."""
    if not os.path.exists("/dev/full"):
        pytest.fail("/dev/full is missing: this Linux test needs it")
    args = [a.format(ko=basic_build / "kms_a.ko") for a in argv]
    with open("/dev/full", "w") as full:
        p = subprocess.run(["kmodsim", *args], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == ["kmodsim: error writing output: No space left on device"]
