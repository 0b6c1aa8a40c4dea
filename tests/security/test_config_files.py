"""No mission step can change the settings of a later run: the config file is read only from
``$PURAIFY_CONFIG`` or the engine's home, never from the current directory (a local run's
workspace), and the jail refuses both locations, existing or not."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from puraify.mission.loader import mission_from_data
from puraify.service import compose
from puraify.settings import Settings


async def _run(settings: Settings, cwd: Path, steps: list[dict[str, Any]]) -> dict[str, Any]:
    async with compose(settings, listen=None, environ=dict(os.environ), cwd=cwd) as app:
        loaded = mission_from_data({"config": {"fail_fast": False}, "steps": steps})
        compiled = app.preparer.validate(loaded).compiled
        run_id, _ = await app.runs.submit(compiled, project_id=None, context={})
        result = await app.runs.wait(run_id)
    assert result is not None
    return {s.step_id: s for s in result.steps}


HOSTILE = 'max_steps = 1\ncommand_allow_shell = true\nssrf_allow_hosts = ["0.0.0.0/0"]\n'


@pytest.mark.parametrize("explicit", [False, True])
async def test_a_mission_cannot_change_the_settings_of_a_later_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, explicit: bool
) -> None:
    workspace = tmp_path / "project"
    workspace.mkdir()
    home = workspace / ".puraify"  # the engine's home inside the workspace: refused by path
    monkeypatch.chdir(workspace)
    for name in list(os.environ):
        if name.startswith("PURAIFY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PURAIFY_HOME", str(home))
    config = workspace / "conf" / "puraify.toml"  # not there yet: a step must not create it
    if explicit:
        monkeypatch.setenv("PURAIFY_CONFIG", str(config))
    targets = ["puraify.toml", ".puraify/puraify.toml"] + (
        ["conf/puraify.toml"] if explicit else []
    )
    steps: list[dict[str, Any]] = [
        {
            "id": "stage",
            "step_type": "create_file",
            "parameters": {"path": "staged.toml", "content": HOSTILE},
        }
    ]
    for i, target in enumerate(targets):
        steps.append(
            {
                "id": f"create{i}",
                "step_type": "create_file",
                "parameters": {"path": target, "content": HOSTILE, "create_dirs": True},
            }
        )
        steps.append(
            {
                "id": f"move{i}",
                "step_type": "move_file",
                "depends_on": ["stage"],
                "parameters": {"source": "staged.toml", "destination": target, "overwrite": True},
            }
        )
    if explicit:  # a whole directory holding the file moved into place
        steps.append(
            {
                "id": "stage_dir",
                "step_type": "create_file",
                "parameters": {"path": "cfgdir/puraify.toml", "content": HOSTILE},
            }
        )
        steps.append(
            {
                "id": "move_dir",
                "step_type": "move_file",
                "depends_on": ["stage_dir"],
                "parameters": {"source": "cfgdir", "destination": "conf"},
            }
        )
    before = Settings()
    results = await _run(before, workspace, steps)
    # the places the engine reads its configuration from are refused, existing or not
    for i, target in enumerate(targets[1:], start=1):
        assert results[f"create{i}"].error is not None, target
        assert results[f"create{i}"].error.code == "path_outside_jail", target
    if explicit:
        assert results["move_dir"].error is not None
        assert results["move_dir"].error.code == "path_outside_jail"
    after = Settings()
    assert after.max_steps == before.max_steps == Settings.model_fields["max_steps"].default
    assert not after.command_allow_shell and after.ssrf_allow_hosts == ()
    assert after.config_file is not None and not after.config_file.exists()
    two = [{"id": "a", "step_type": "noop"}, {"id": "b", "step_type": "noop", "depends_on": ["a"]}]
    assert {s.status.value for s in (await _run(after, workspace, two)).values()} == {"success"}
