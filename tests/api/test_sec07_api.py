"""SEC-07 through the API: vault canaries used by a mission and a single action, error paths
included, appear in no answer, run, event stream, log line or the database file (the command
line's half is tests/security/test_sec07_canaries.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.conftest import Api
from tests.security.test_sec07_canaries import (  # noqa: F401 (echo_server: a fixture)
    assert_no_leaks,
    database_bytes,
    echo_server,
    mission,
    store_canaries,
)


async def test_sec07_canaries_through_the_api(
    api: Api, echo: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    secrets = await store_canaries(api.app.state.application, "a")
    body = mission(echo, commands=False)
    done = await api.client.post("/missions/execute?wait=true", json=body, headers=api.auth())
    assert done.status_code == 200, done.text
    run_id = done.json()["run_id"]
    assert done.json()["step_results"]["bearer"]["output"]["body"]["auth"] == "Bearer [redacted]"
    single = await api.client.post(
        "/execute",
        json={"action": "http", "parameters": {"url": f"{echo}/fail", "credential": "echo"}},
        headers=api.auth(),
    )
    assert single.json()["status"] == "fail"
    read = await api.client.get(f"/runs/{run_id}", headers=api.auth())
    events = await api.client.get(f"/runs/{run_id}/events", headers=api.auth())
    listed = await api.client.get("/runs", headers=api.auth())
    logs = capfd.readouterr()
    texts = {
        "mission answer": done.text,
        "single action answer": single.text,
        "run": read.text,
        "events": events.text,
        "runs": listed.text,
        "logs": logs.out + logs.err,
        "database file": database_bytes(tmp_path / "home"),
    }
    assert_no_leaks(texts, secrets)


async def test_a_run_is_redacted_of_its_own_secrets_only(api: Api) -> None:
    """One project's secrets never change what another project's runs show: no run learns
    whether a text is someone else's secret by watching it disappear."""
    mine = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    secret = "Summer2024!-" + "q" * 6
    await api.client.put(
        "/vault/credentials/a/pw", json={"type": "token", "value": secret}, headers=mine
    )
    say = {"action": "log_message", "parameters": {"message": "is it {{ secrets.pw }}?"}}
    own = await api.client.post("/execute", json=say, headers=mine)
    assert own.json()["result"]["message"] == "is it [redacted]?"
    guess = {"action": "log_message", "parameters": {"message": f"is it {secret}?"}}
    theirs = await api.client.post("/execute", json=guess, headers=api.auth("b"))
    assert theirs.json()["result"]["message"] == f"is it {secret}?"  # b's own text, as it is


async def test_a_secret_a_run_wrote_stays_hidden_from_the_projects_next_runs(api: Api) -> None:
    mine = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    secret = "pg-pass-" + "Zx81Qw72Er63"
    await api.client.put(
        "/vault/credentials/a/db", json={"type": "token", "value": secret}, headers=mine
    )
    write = {
        "action": "create_file",
        "parameters": {"path": "conf.txt", "content": "pw={{ secrets.db }}", "overwrite": True},
    }
    assert (await api.client.post("/execute", json=write, headers=mine)).status_code == 200
    read = {"action": "read_file", "parameters": {"path": "conf.txt"}}
    later = await api.client.post("/execute", json=read, headers=mine)
    assert later.json()["result"]["content"] == "pw=[redacted]"
