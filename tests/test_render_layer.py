"""The rendering layer (``kmodsim.render``) stands above the library: results flow up into it, and
nothing below imports it. Its modules neither read files nor write streams, and the JSON schemas
are theirs, not the model's (no ``to_json`` on the result types)."""

from __future__ import annotations

import ast
from pathlib import Path

import kmodsim

SRC = Path(kmodsim.__file__).parent
ABOVE = ("commands/", "render/", "ops/cli.py")  # where a renderer may be imported from


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names; relative imports resolved against its package)."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1])  # a module's package; an __init__'s is its own package
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_nothing_below_the_renderers_imports_them():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 40
    users = {str(f.relative_to(SRC)) for f in files
             if any(m == "kmodsim.render" or m.startswith("kmodsim.render.") for m in _imports(f))}
    assert {"commands/check.py", "commands/ldd.py", "commands/inspect.py"} <= users  # the check can see them
    assert sorted(u for u in users if not u.startswith(ABOVE)) == []


def test_renderers_read_and_write_nothing():
    mods = sorted((SRC / "render").glob("*.py"))
    assert {m.stem for m in mods} >= {"modules", "ldd", "check", "footprint", "loader", "fetch"}
    for m in mods:
        calls = {n.func.id for n in ast.walk(ast.parse(m.read_text())) if isinstance(n, ast.Call)
                 and isinstance(n.func, ast.Name)}
        assert not calls & {"open", "print", "input"}, m.name
        assert "sys" not in {x.split(".")[0] for x in _imports(m)}, m.name


def test_result_types_carry_no_json_schema():
    from kmodsim.checks import Finding
    from kmodsim.loader.result import Run, StepResult
    from kmodsim.memory_layout import Footprint, MergeReport
    from kmodsim.messages import DepmodMessage
    from kmodsim.module import Module

    types = (Module, Finding, Footprint, MergeReport, Run, StepResult, DepmodMessage)
    assert [t.__name__ for t in types if hasattr(t, "to_json") or hasattr(t, "from_json")] == []


def test_depmod_messages_all_have_kmods_words():
    """Every message code the library emits has its words in render.depmod (the test reads the
    codes from the source, so a new message without words fails here, not on a user's terminal),
    and no library module spells depmod's words itself."""
    import re

    from kmodsim.render.depmod import DEPMOD_WORDS

    used = set()
    for f in SRC.rglob("*.py"):
        text = f.read_text()
        used |= set(re.findall(r'DepmodMessage\(\s*"([a-z-]+)"', text))
        if not str(f.relative_to(SRC)).startswith("render/"):
            assert not re.search(r'f?"depmod: (WARNING|ERROR|FATAL): ', text), f
    assert len(used) >= 30 and sorted(used - set(DEPMOD_WORDS)) == []
