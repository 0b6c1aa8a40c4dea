"""The public surface is what ``puraify.__all__`` lists, and every name in it resolves.

The layering of the packages is checked by ``lint-imports`` in scripts/lint (the contracts in
pyproject.toml), not here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import puraify


def test_all_names_resolve() -> None:
    for name in puraify.__all__:
        assert getattr(puraify, name) is not None, name


def test_all_is_exactly_the_lazily_exported_names_sorted() -> None:
    assert puraify.__all__ == sorted({*puraify._LAZY, "__version__"})
    assert list(puraify._LAZY) == sorted(puraify._LAZY)


def test_type_checking_imports_match_the_lazy_table() -> None:
    """Type checkers see each exported name from the module it is loaded from at run time."""
    tree = ast.parse(Path(puraify.__file__).read_text())
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    imported = {
        alias.name: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == puraify._LAZY


def test_all_is_complete_for_the_main_types() -> None:
    expected = {
        "Engine",
        "Mission",
        "MissionStep",
        "MissionConfig",
        "MissionResult",
        "StepResult",
        "Action",
        "ActionContext",
        "ActionRegistry",
        "PuraifyError",
        "load_mission",
        "Settings",
    }
    assert expected <= set(puraify.__all__)


def test_import_is_light() -> None:
    code = "import sys, puraify; print('httpx' in sys.modules, 'jinja2' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]
