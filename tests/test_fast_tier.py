"""The fast tier (``pytest -m fast``, every test not marked slow) runs every command of the CLI:
read from the tests' own source, each command is named by a test function that is not slow."""

from __future__ import annotations

import ast
from pathlib import Path

from kmodsim.cli import COMMANDS

TESTS = Path(__file__).parent


def _is_slow(node: ast.AST) -> bool:
    return "slow" in ast.unparse(node)


def fast_tests_naming(commands: list[str]) -> dict[str, set[str]]:
    """command -> the fast test functions that name it (a string constant equal to the command)."""
    found: dict[str, set[str]] = {c: set() for c in commands}
    for f in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(f.read_text())
        module_slow = any(isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
                          and _is_slow(n.value) for n in tree.body)
        if module_slow:
            continue
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef) or not fn.name.startswith("test_"):
                continue
            if any(_is_slow(d) for d in fn.decorator_list):
                continue
            for c in ast.walk(fn):
                if isinstance(c, ast.Constant) and c.value in found:
                    found[c.value].add(f"{f.name}::{fn.name}")
    return found


def test_fast_tier_runs_every_command():
    commands = sorted(COMMANDS)
    assert len(commands) >= 12
    found = fast_tests_naming(commands)
    assert sorted(c for c, tests in found.items() if not tests) == []
