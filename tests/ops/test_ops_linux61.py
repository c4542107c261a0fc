"""Acceptance on Debian's linux-source-6.1 (arch/x86/kvm, arch/x86/include, virt/kvm, include/linux).

Every expected value is computed here from the kernel text by regular expressions written for this
test (comments stripped, line numbers kept), independently of kmodsim's tree-sitter passes:

* members and their class: the KVM_X86_OP* lines of arch/x86/include/asm/kvm-x86-ops.h, and the
  ``(*name)(`` declarators of ``struct kvm_x86_ops``;
* implementations: the ``.member = function,`` lines of the vmx_x86_ops / svm_x86_ops initializers;
* call sites: ``static_call(kvm_x86_<m>)(``, ``static_call_cond(kvm_x86_<m>)(`` and
  ``<table>.<m>(`` / ``<table>-><m>(`` anywhere in the four directories, macro bodies included;
* non-call uses (NULL tests, stores, reads): ``<table>.<m>`` / ``<table>-><m>`` not followed by ``(``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .conftest import SOURCE_DIRS

pytestmark = pytest.mark.realkernel

CLASS = {"KVM_X86_OP": "mandatory", "KVM_X86_OP_OPTIONAL": "optional", "KVM_X86_OP_OPTIONAL_RET0": "ret0"}
# identifiers the source declares with type struct kvm_x86_ops (found by grep, see test below)
TABLES = ("kvm_x86_ops", "vmx_x86_ops", "svm_x86_ops", "x86_ops")


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


@pytest.fixture(scope="module")
def src(linux61_source) -> Path:
    return linux61_source


@pytest.fixture(scope="module")
def header(src) -> list[tuple[str, str]]:
    text = (src / "arch/x86/include/asm/kvm-x86-ops.h").read_text()
    return re.findall(r"^(KVM_X86_OP(?:_OPTIONAL(?:_RET0)?)?)\((\w+)\);?$", text, re.M)


@pytest.fixture(scope="module")
def texts(src) -> dict[str, str]:
    out = {}
    for d in SOURCE_DIRS:
        for f in sorted((src / d).rglob("*")):
            if f.suffix in (".c", ".h") and f.is_file():
                out[str(f.relative_to(src))] = _strip_comments(f.read_text(errors="replace"))
    return out


@pytest.fixture(scope="module")
def run(src):
    from .conftest import run_ops

    r = run_ops(*SOURCE_DIRS, "--struct", "kvm_x86_ops", "--json", cwd=src)
    assert "Traceback" not in r.stderr
    return r


@pytest.fixture(scope="module")
def doc(run) -> dict:
    return json.loads(run.stdout)


def test_members_equal_the_xmacro_list(doc, header, src):
    assert len(header) > 100
    assert [m["name"] for m in doc["members"]] == [name for _, name in header]
    text = _strip_comments((src / "arch/x86/include/asm/kvm_host.h").read_text())
    body = text[text.index("struct kvm_x86_ops {"):]
    body = body[: body.index("\n};")]
    assert [m["name"] for m in doc["members"]] == re.findall(r"\(\*(\w+)\)\s*\(", body)
    assert doc["xmacro"]["file"] == "arch/x86/include/asm/kvm-x86-ops.h"
    assert [(e["macro"], e["name"]) for e in doc["xmacro"]["entries"]] == header


def test_classification_equals_the_header_except_flagged_mismatches(doc, header, texts, run):
    declared = {name: CLASS[macro] for macro, name in header}
    derived = {m["name"]: m["derived_class"] for m in doc["members"]}
    assert {m["name"]: m["xmacro_class"] for m in doc["members"]} == declared
    # the classification reported is the header's (the kernel's declaration) for every member ...
    assert {m["name"]: m["class"] for m in doc["members"]} == declared
    for m in doc["members"]:
        assert m["optional"] == (declared[m["name"]] != "mandatory")
        assert m["ret0"] == (declared[m["name"]] == "ret0")
    differ = {n for n in declared if declared[n] != derived[n]}
    flagged = {m["member"] for m in doc["mismatches"]}
    assert differ == flagged  # every disagreement is reported, nothing else is
    assert all(m["problem"] == "classification" for m in doc["mismatches"])
    assert run.returncode == 1  # findings
    # ... and the code-derived one agrees with it on all but one member ...
    assert len(differ) == 1
    (member,) = differ
    assert (declared[member], derived[member]) == ("optional", "mandatory")
    # ... and the disagreement is real: the header calls it optional, yet every vendor implements it,
    # no caller NULL-tests it and none uses static_call_cond (checked here on the raw text)
    all_text = "\n".join(texts.values())
    for vendor in ("vmx", "svm"):
        assert re.search(rf"^\s*\.{member}\s*=\s*\w+,", texts[f"arch/x86/kvm/{vendor}/{vendor}.c"], re.M)
    assert not re.search(rf"static_call_cond\(kvm_x86_{member}\)", all_text)
    assert not re.search(rf"\b(?:{'|'.join(TABLES)})\s*(?:\.|->)\s*{member}\b", all_text)


def _initializer(text: str, name: str) -> dict[str, str]:
    start = re.search(rf"struct kvm_x86_ops {name}\b[^=;]*=\s*\{{", text)
    block = text[start.end(): text.index("\n};", start.end())]
    return {k: v.strip() for k, v in re.findall(r"^\s*\.(\w+)\s*=\s*([^,\n]+),", block, re.M)}


def test_implementations_equal_the_designated_initializers(doc, header, texts):
    members = {name for _, name in header}
    for vendor in ("vmx", "svm"):
        inst = f"{vendor}_x86_ops"
        init = _initializer(texts[f"arch/x86/kvm/{vendor}/{vendor}.c"], inst)
        expected = {k: v for k, v in init.items() if k in members and v != "NULL"}
        got = {m["name"]: m["implementations"][inst] for m in doc["members"] if inst in m["implementations"]}
        assert got == expected
        assert len(expected) > 90
        unset = {m["name"] for m in doc["members"] if inst in m["unset_in"]}
        assert unset == members - set(expected)


def _oracle_calls(texts: dict[str, str], members: set[str]) -> Counter:
    found: Counter = Counter()
    rx_sc = re.compile(r"\bstatic_call(?:_cond)?\s*\(\s*kvm_x86_(\w+)\s*\)\s*\(")
    rx_tab = re.compile(rf"\b(?:{'|'.join(TABLES)})\s*(?:\.|->)\s*(\w+)\s*\(")
    for name, text in texts.items():
        for rx in (rx_sc, rx_tab):
            for m in rx.finditer(text):
                if m.group(1) in members:
                    found[(name, _line(text, m.start()), m.group(1))] += 1
    return found


def test_every_call_site_is_found(doc, header, texts):
    members = {name for _, name in header}
    expected = _oracle_calls(texts, members)
    got = Counter((c["file"], c["line"], m["name"]) for m in doc["members"] for c in m["call_sites"])
    assert got == expected
    idioms = Counter(c["idiom"] for m in doc["members"] for c in m["call_sites"])
    assert set(idioms) <= {"static_call()", "static_call_cond()"}
    assert idioms["static_call_cond()"] > 20 and idioms["static_call()"] > 150
    assert sum(1 for m in doc["members"] for c in m["call_sites"] if c["in_macro"]) >= 1  # trace.h


def test_every_non_call_use_is_classified(doc, header, texts):
    """NULL tests, stores and other reads of members: all found, each in one category."""
    members = {name for _, name in header}
    rx = re.compile(rf"\b(?:{'|'.join(TABLES)})\s*(?:\.|->)\s*(\w+)\b(?!\s*\()")
    expected = Counter()
    for name, text in texts.items():
        # uses inside #define bodies are macro text (their member is a macro parameter here)
        body = re.sub(r"^[ \t]*#(?:\\\n|[^\n])*", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.M)
        for m in rx.finditer(body):
            if m.group(1) in members:
                expected[(name, _line(body, m.start()), m.group(1))] += 1
    got = Counter()
    for m in doc["members"]:
        for key in ("null_checks", "assignments", "reads"):
            for u in m[key]:
                got[(u["file"], u["line"], m["name"])] += 1
    assert got == expected
    by = {m["name"]: m for m in doc["members"]}
    # spot checks of the idioms in 6.1's x86.c / lapic.c / kvm_host.h
    assert any(n["idiom"] == "if (!x.m)" and n["fallback"] == "error" for n in by["mem_enc_ioctl"]["null_checks"])
    assert any(n["idiom"] == "if (x.m)" for n in by["sync_pir_to_irr"]["null_checks"])
    assert any(n["predicate"] for n in by["set_hv_timer"]["null_checks"])
    assert any(a["target"] == "svm_x86_ops.vcpu_get_apicv_inhibit_reasons" and a["value"] == "NULL"
               for a in by["vcpu_get_apicv_inhibit_reasons"]["assignments"])
    assert [(c["function"], c["target"]) for c in doc["copies"]] == [("kvm_ops_update", "kvm_x86_ops")]


def test_static_call_prefix_and_parse_error_report(doc):
    assert doc["static_call_prefix"] == "kvm_x86_"
    assert doc["definition"] == {"file": "arch/x86/include/asm/kvm_host.h", "line": doc["definition"]["line"]}
    # tree-sitter cannot read everything unpreprocessed (asm goto, TRACE_EVENT, ...): it is reported
    assert doc["parse_errors"]
    assert all(e["file"] in doc["files_parsed"] for e in doc["parse_errors"])
    assert "arch/x86/kvm/x86.c" in doc["files_parsed"]


def test_patch_applies_to_the_source_it_was_made_from(src, doc):
    from .conftest import run_ops

    r = run_ops(*SOURCE_DIRS, "--struct", "kvm_x86_ops", "--emit", "patch", "--instance", "vmx_x86_ops", cwd=src)
    assert r.returncode == 1, r.stderr  # the mismatch is still a finding; the patch is printed
    diff = r.stdout
    removed = len(re.findall(r"^-.*\b(?:static_call(?:_cond)?\(kvm_x86_\w+\))", diff, re.M))
    assert removed > 100
    dry = subprocess.run(["patch", "--dry-run", "-p1", "-d", str(src)], input=diff, capture_output=True,
                         text=True)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr


def test_patch_puts_a_headers_prototypes_inside_its_include_guard_after_its_includes(src, tmp_path):
    """A header the patch makes call vmx's functions (x86.h's is_64_bit_mode(), mmu.h, lapic.h, ...)
    gets their prototypes inside its include guard, after its #includes (which declare the types
    they name: before them, ``struct kvm_vcpu`` in a parameter list is a new type, and kbuild's
    -Werror fails every object including x86.h), and before the first call."""
    from .conftest import run_ops

    r = run_ops(*SOURCE_DIRS, "--struct", "kvm_x86_ops", "--emit", "patch", "--instance", "vmx_x86_ops", cwd=src)
    assert r.returncode == 1, r.stderr
    headers = sorted(set(re.findall(r"^\+\+\+ b/(\S+\.h)$", r.stdout, re.M)))
    assert "arch/x86/kvm/x86.h" in headers
    checked = []
    for h in headers:
        (tmp_path / h).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / h).write_bytes((src / h).read_bytes())
        subprocess.run(["git", "apply", f"--include={h}", "-"], input=r.stdout, text=True, cwd=tmp_path, check=True)
        lines = (tmp_path / h).read_text().splitlines()
        block = [i for i, ln in enumerate(lines) if ln.startswith("/* direct calls replacing kvm_x86_ops")]
        if not block:
            continue
        text = "\n".join(lines)
        guard = re.search(r"^#if(?:ndef\s+(\w+)|\s+!defined\((\w+)\)[^\n]*)\n#define\s+(\w+)", text, re.M)
        assert guard is not None and guard.group(3) in (guard.group(1), guard.group(2)), h
        first_call = min(i for i, ln in enumerate(lines) if re.search(r"\b(?:vmx|vt)_\w+\(", ln)
                         and not ln.startswith(("void", "int", "bool", "u64", "u8", "unsigned", "static")))
        includes = [i for i, ln in enumerate(lines[:first_call]) if ln.startswith("#include")]
        assert block[0] > _line(text, guard.end()) - 1, (h, block[0], "before the include guard")
        assert block[0] > max(includes, default=-1), (h, block[0], includes)
        assert block[0] < first_call, (h, block[0], first_call)
        checked.append(h)
    assert "arch/x86/kvm/x86.h" in checked


def test_patch_includes_the_header_of_a_static_inline_target_instead_of_a_prototype(src, texts):
    """vmx_x86_ops.has_wbinvd_exit is cpu_has_vmx_wbinvd_exit(), a ``static inline`` of
    vmx/capabilities.h: no symbol, so a prototype in x86.c made modpost say it is undefined (the
    whole direct-call series' step 71). The calling .c file includes the defining header instead,
    in its first block of #includes, after its last quoted one; no prototype of it is added."""
    from .conftest import run_ops

    init = _initializer(texts["arch/x86/kvm/vmx/vmx.c"], "vmx_x86_ops")
    inline = {}  # target -> the header that defines it static inline (found by regex here)
    for func in set(init.values()):
        rx = re.compile(rf"^static\s+(?:__always_)?inline\b[^;{{]*\b{re.escape(func)}\s*\([^;{{]*\)\s*\{{", re.M)
        homes = [name for name, text in texts.items() if name.endswith(".h") and rx.search(text)]
        if homes:
            assert len(homes) == 1, (func, homes)
            inline[func] = homes[0]
    assert inline == {"cpu_has_vmx_wbinvd_exit": "arch/x86/kvm/vmx/capabilities.h"}

    r = run_ops(*SOURCE_DIRS, "--struct", "kvm_x86_ops", "--emit", "patch", "--instance", "vmx_x86_ops", cwd=src)
    assert r.returncode == 1, r.stderr
    per_file = dict(re.findall(r"^\+\+\+ b/(\S+)\n(.*?)(?=^diff |^--- a/|\Z)", r.stdout, re.M | re.S))
    for func, home in inline.items():
        assert not re.search(rf"^\+.*\b{func}\s*\([^)]*\)\s*;", r.stdout, re.M), "a prototype of " + func
        callers = [f for f, hunk in per_file.items() if re.search(rf"^\+.*\b{func}\(", hunk, re.M)]
        assert callers == ["arch/x86/kvm/x86.c"], callers
        for caller in callers:
            spec = '"' + str(Path(home).relative_to(Path(caller).parent)) + '"'
            assert re.search(rf"^\+#include {re.escape(spec)}$", per_file[caller], re.M), (caller, spec)
            lines = subprocess.run(["patch", "-s", "-o", "-", str(src / caller)], input=_only(r.stdout, caller),
                                   capture_output=True, text=True, check=True).stdout.splitlines()
            at = lines.index(f"#include {spec}")
            original = (src / caller).read_text().splitlines()
            first_code = next(i for i, ln in enumerate(original)
                              if ln.strip() and not ln.startswith(("#include", "//", "/*", " *")))
            quoted = [i for i, ln in enumerate(original[:first_code]) if ln.startswith('#include "')]
            assert lines[at - 1] == original[quoted[-1]], (caller, lines[at - 1])
            assert at < min(i for i, ln in enumerate(lines) if f"{func}(" in ln)


def _only(diff: str, name: str) -> str:
    """The part of a unified diff that patches ``name``."""
    m = re.search(rf"^--- a/{re.escape(name)}\n.*?(?=^--- a/|\Z)", diff, re.M | re.S)
    assert m is not None, name
    return m.group(0)
