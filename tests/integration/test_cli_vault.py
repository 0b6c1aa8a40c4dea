"""A mission run from the command line reads the vault of the project it names (`--project`,
default `default`); a value set from standard input never comes back out. (The vault's own
commands: tests/integration/test_cli.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.helpers import cli


def test_a_run_uses_its_projects_credential(tmp_path: Path) -> None:
    env = {"PURAIFY_HOME": str(tmp_path / "home")}
    token = "tok-" + os.urandom(10).hex()
    stored = cli(
        "vault", "set", "acme", "echo", "--type", "token", "--json",
        cwd=tmp_path, env=env, input=token,
    )  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    mission = {
        "name": "uses",
        "steps": [{"id": "say", "step_type": "log_message", "parameters": {"message": "{{ secrets.echo }}"}}],
    }  # fmt: skip
    (tmp_path / "m.json").write_text(json.dumps(mission))
    run = cli("run", "m.json", "--project", "acme", "--json", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["step_results"]["say"]["output"]["message"] == "[redacted]"
    other = cli("run", "m.json", "--json", cwd=tmp_path, env=env)  # project `default`: none
    assert json.loads(other.stdout)["step_results"]["say"]["error"]["code"] == "credential_missing"
    assert token not in stored.stdout + run.stdout + run.stderr + other.stdout + other.stderr
