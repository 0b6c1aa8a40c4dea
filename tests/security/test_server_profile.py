"""Safe by construction: ``puraify serve`` with nothing configured runs the server profile, and
a run keeps the profile it was created under whoever resumes it.

Both tests start real processes with an environment that holds nothing of an operator's (no
``PURAIFY_*``, no config file) and listen on 0.0.0.0, as a new user would."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from puraify.testing import CanaryListener, LocalServer, RecordingSink
from tests.api.test_server import Server
from tests.helpers import wait_for

SSRF_SPELLINGS = (
    "http://127.0.0.1:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://127.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://localhost:{port}/",
    "http://localhost.:{port}/",
    "http://user@127.0.0.1:{port}/",
    "http://[::1]:{port}/",
    "http://10.0.0.1:{port}/",
    "http://192.168.1.10:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1:{port}/",
)


def _execute(server: Server, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/execute",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_serve_with_nothing_configured_runs_the_server_profile(tmp_path: Path) -> None:
    secret = secrets.token_hex(16)
    server = Server(tmp_path / ".puraify", {"CANARY_SECRET": secret}, clean=True)
    token = server.token("p", ("execute", "runs:read"))
    with CanaryListener("127.0.0.1") as canary:
        server.start(host="0.0.0.0")
        try:
            answer = _execute(server, token, {"action": "command", "parameters": {"command": "id"}})
            assert answer.status_code == 403, answer.text
            # dangerous actions are behind feature flags, off in the server profile
            assert answer.json()["error"]["code"] == "policy_denied"
            assert "flag_off" in answer.json()["reason"]

            answer = _execute(
                server,
                token,
                {"action": "log_message", "parameters": {"message": "{{ env.CANARY_SECRET }}"}},
            )
            assert answer.json()["status"] == "fail", answer.text
            assert answer.json()["error"]["code"].startswith("template")
            assert secret not in answer.text

            for spelling in SSRF_SPELLINGS:
                url = spelling.format(port=canary.port)
                answer = _execute(server, token, {"action": "http", "parameters": {"url": url}})
                assert answer.json()["error"]["code"] == "ssrf_blocked", (url, answer.text)
            assert canary.connections == 0
        finally:
            log = server.stop()
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    for line in lines:  # not a terminal: JSON lines only
        assert isinstance(json.loads(line), dict), line
    assert secret not in log
    assert "local_profile_listening" not in log


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_runs_resume_all_from_a_shell_keeps_the_server_profile(tmp_path: Path) -> None:
    """A run the API created is resumed by ``puraify runs resume --all`` typed in a shell (the
    local profile's edge): its steps still run under the server profile."""
    secret = secrets.token_hex(16)
    sink = RecordingSink()
    sink.hold("/slow")
    with LocalServer(sink, host="127.0.0.2") as upstream, CanaryListener("127.0.0.1") as canary:
        env = {"CANARY_SECRET": secret, "PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.2"]'}
        server = Server(tmp_path / ".puraify", env, clean=True)
        token = server.token("p", ("execute", "runs:read"))
        server.start(host="0.0.0.0")
        after = ["slow"]
        mission = {
            "config": {"fail_fast": False},
            "steps": [
                {"id": "slow", "step_type": "http", "parameters": {"url": f"{upstream.url}/slow"}},
                {
                    "id": "cmd",
                    "step_type": "command",
                    "depends_on": after,
                    "parameters": {"command": "id"},
                },
                {
                    "id": "leak",
                    "step_type": "create_file",
                    "depends_on": after,
                    "parameters": {"path": "leak.txt", "content": "{{ env.CANARY_SECRET }}"},
                },
                {
                    "id": "loop",
                    "step_type": "http",
                    "depends_on": after,
                    "parameters": {"url": f"http://127.1:{canary.port}/"},
                },
            ],
        }
        try:
            created = httpx.post(
                f"{server.url}/missions/execute",
                json=mission,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )
            assert created.status_code == 202, created.text
            run_id = created.json()["run_id"]
            wait_for(lambda: sink.count("/slow") == 1, what="the first step in flight")
        finally:
            server.stop(signal.SIGKILL)  # the engine dies mid-run; the run stays running
        sink.release()
        resumed = subprocess.run(
            [sys.executable, "-m", "puraify", "runs", "resume", "--all", "--json"],
            cwd=tmp_path,
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert canary.connections == 0
    assert secret not in resumed.stdout + resumed.stderr
    assert resumed.returncode == 1, resumed.stderr
    result = json.loads(resumed.stdout)
    assert result["run_id"] == run_id
    status = {s["step_id"]: s for s in result["steps"]}
    assert status["slow"]["status"] == "success"
    assert status["cmd"]["error"]["code"] == "policy_denied"  # the command flag: off here
    assert status["leak"]["status"] == "failed"
    assert status["leak"]["error"]["code"].startswith("template")
    assert status["loop"]["error"]["code"] == "ssrf_blocked"
    assert not list(tmp_path.rglob("leak.txt"))
