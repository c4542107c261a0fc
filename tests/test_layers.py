"""Imports run one way: from the CLI down to the reader (docs/architecture.md, "Layers").

Every module of the package is given a layer here; a module may import from its own layer and the
ones below, never from above (imports inside functions count: they run too; imports under
``if TYPE_CHECKING:`` do not). A new module fails this test until it is given a layer, so the
picture in docs/architecture.md cannot drift from the code. Hermetic: it reads the source only.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "kmodsim"

# bottom-up; a module's layer is that of the longest prefix listed
LAYERS: list[tuple[str, list[str]]] = [
    ("foundations", ["errors", "messages", "cache"]),
    ("reader", ["elf", "module", "keys", "discovery"]),
    ("trees", ["parallel", "cluster", "scan_cache", "tree"]),
    ("target", ["kernel", "btf", "target"]),
    ("analyses", ["symbols", "link", "checks", "abi", "findings_cache", "dependencies", "memory_layout", "loader", "ops.parse", "ops.census", "ops.model",
                  "ops.plan", "ops.emit", "ops.emit_series", "ops.binary", "ops"]),
    ("oracle", ["oracle"]),
    ("inputs", ["debian", "kbuild", "kmod_build"]),
    ("workflows", ["series"]),
    ("renderers", ["render", "ops.render"]),
    ("cli", ["args", "cli", "commands", "ops.cli", "ops.__main__"]),
    ("api", ["", "api"]),  # the package itself (exactly): kmodsim.__all__, the public face
]
# what any layer may take from the package itself (they are foundations re-exported there)
ROOT_NAMES = {"__version__", "Error"}


def _rank(mod: str) -> int:
    best, rank = -1, None
    for i, (_name, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (mod == p or (p and mod.startswith(p + "."))) and len(p) > best:
                best, rank = len(p), i
    assert rank is not None, f"kmodsim.{mod} has no layer: give it one in LAYERS"
    return rank


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for f in sorted(SRC.rglob("*.py")):
        parts = f.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(mod: str, path: pathlib.Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, module imported) for every kmodsim import of ``mod`` that runs."""
    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
    if mod == "":
        pkg = []
    out: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for c in child.orelse:
                    visit(c)
                continue
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = pkg[:len(pkg) - child.level + 1] if child.level > 1 else list(pkg)
                    target = ".".join([*base, *([child.module] if child.module else [])])
                elif (child.module or "").split(".")[0] == "kmodsim":
                    target = (child.module or "").removeprefix("kmodsim").lstrip(".")
                else:
                    continue
                for a in child.names:
                    sub = f"{target}.{a.name}" if target else a.name
                    if sub in known:
                        out.append((child.lineno, sub))
                    elif target == "" and a.name in ROOT_NAMES:
                        continue
                    else:
                        out.append((child.lineno, target))
            elif isinstance(child, ast.Import):
                for a in child.names:
                    if a.name.split(".")[0] == "kmodsim":
                        out.append((child.lineno, a.name.removeprefix("kmodsim").lstrip(".")))
            visit(child)

    visit(ast.parse(path.read_text()))
    return out


def test_every_module_has_a_layer():
    for mod in _modules():
        assert _rank(mod) >= 0, mod


@pytest.mark.parametrize("mod", sorted(_modules()))
def test_imports_run_one_way(mod):
    mods = _modules()
    known = set(mods)
    mine = _rank(mod)
    up = [(line, t, LAYERS[_rank(t)][0]) for line, t in _imports(mod, mods[mod], known) if _rank(t) > mine]
    assert not up, (f"kmodsim.{mod} ({LAYERS[mine][0]}) imports from above: "
                    + ", ".join(f"line {ln}: kmodsim.{t} ({layer})" for ln, t, layer in up))


def test_reader_imports_no_fetcher_command_or_renderer():
    """The issue's words, checked directly on the reader layer."""
    mods = _modules()
    known = set(mods)
    for mod in mods:
        if LAYERS[_rank(mod)][0] not in ("foundations", "reader", "trees"):
            continue
        for _line, t in _imports(mod, mods[mod], known):
            assert LAYERS[_rank(t)][0] in ("foundations", "reader", "trees"), (mod, t)


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rule can fail: a reader module importing the fetcher, a renderer or a command is seen,
    whether at module level or inside a function, and a TYPE_CHECKING import is not."""
    f = tmp_path / "module.py"
    f.write_text("from typing import TYPE_CHECKING\nfrom .debian import fetch_deb\n"
                 "def f():\n    from .commands.check import check_cmd\n    from .render import check\n"
                 "if TYPE_CHECKING:\n    from .cli import main\n")
    known = set(_modules())
    got = _imports("module", f, known)
    assert got == [(2, "debian"), (4, "commands.check"), (5, "render.check")]
    assert all(_rank(t) > _rank("module") for _line, t in got)
