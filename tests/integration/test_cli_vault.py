"""`puraify vault`: values from standard input only, metadata out, never a value; the key file
made with mode 0600; rotation re-seals every credential; a mission run with `--project` uses
that project's credential."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.helpers import cli


def test_vault_commands_and_a_run_that_uses_a_credential(tmp_path: Path) -> None:
    env = {"PURAIFY_HOME": str(tmp_path / "home")}
    token = "tok-" + os.urandom(10).hex()
    stored = cli(
        "vault",
        "set",
        "acme",
        "echo",
        "--type",
        "token",
        "--scopes",
        "a,b",
        "--json",
        cwd=tmp_path,
        env=env,
        input=token,
    )
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["scopes"] == ["a", "b"] and token not in stored.stdout
    key_file = tmp_path / "home" / "vault.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    basic = cli(
        "vault",
        "set",
        "acme",
        "mail",
        "--type",
        "basic",
        cwd=tmp_path,
        env=env,
        input='{"username": "ops", "password": "pw-123456"}',
    )
    assert basic.returncode == 0, basic.stderr
    listed = cli("vault", "list", "--json", cwd=tmp_path, env=env)
    shown = cli("vault", "show", "acme", "echo", "--json", cwd=tmp_path, env=env)
    assert {c["platform"] for c in json.loads(listed.stdout)} == {"echo", "mail"}
    assert token not in listed.stdout + shown.stdout and "pw-123456" not in listed.stdout

    mission = {
        "name": "uses",
        "steps": [
            {
                "id": "say",
                "step_type": "log_message",
                "parameters": {"message": "{{ secrets.echo }}"},
            }
        ],
    }
    (tmp_path / "m.json").write_text(json.dumps(mission))
    run = cli("run", "m.json", "--project", "acme", "--json", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["step_results"]["say"]["output"]["message"] == "[redacted]"
    other = cli("run", "m.json", "--json", cwd=tmp_path, env=env)  # project `default`: none
    assert json.loads(other.stdout)["step_results"]["say"]["error"]["code"] == "credential_missing"

    rotated = cli("vault", "rotate", "--drop-old", "--json", cwd=tmp_path, env=env)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    again = cli("run", "m.json", "--project", "acme", "--json", cwd=tmp_path, env=env)
    assert json.loads(again.stdout)["status"] == "completed"
    gone = cli("vault", "delete", "acme", "echo", "--json", cwd=tmp_path, env=env)
    assert gone.returncode == 0
    assert token not in run.stderr + other.stderr + rotated.stdout + gone.stdout
