"""The public surface is what ``puraify.__all__`` lists, and every name in it resolves."""

from __future__ import annotations

import subprocess
import sys

import puraify


def test_all_names_resolve() -> None:
    for name in puraify.__all__:
        assert getattr(puraify, name) is not None, name


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


def test_core_layers_do_not_import_io_or_frameworks() -> None:
    code = (
        "import sys, puraify.mission, puraify.templating; "
        "print(sorted(m for m in ('httpx', 'typer', 'fastapi', 'subprocess_helpers', 'sqlalchemy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
