"""The seeds' vault flow: a token stored for a project, and ``POST /execute`` for that project
gets it at call time, in this process and from a separate ``puraify serve vault`` over HTTP; no
token stored: the seed's failure envelope, "Missing token or insufficient scope"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from puraify.testing import RecordingSink
from tests.api.conftest import Api
from tests.api.test_rel06_control import Process

SEED_REASON = "Missing token or insufficient scope"


def call(url: str, credential: str) -> dict[str, object]:
    """Seed 000's request shape, for an http step that sends a vault credential."""
    return {
        "action": "http",
        "parameters": {
            "url": url,
            "method": "POST",
            "json": {"text": "hello"},
            "credential": credential,
        },
    }


async def test_a_stored_token_reaches_the_action_and_nothing_else(
    api: Api, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    canary = "tok-" + os.urandom(12).hex()
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    put = await api.client.put(
        "/vault/credentials/a/slack", json={"type": "token", "value": canary}, headers=owner
    )
    assert put.status_code == 200
    done = await api.client.post("/execute", json=call(f"{url}/hook", "slack"), headers=owner)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "success"
    assert receiver.requests[-1].headers["authorization"] == f"Bearer {canary}"
    assert canary not in done.text

    # project b stored nothing: the seed's failure envelope
    other = {"Authorization": f"Bearer {await api.token('b', 'vault', 'execute')}"}
    missing = await api.client.post(
        "/execute", json={**call(f"{url}/hook", "slack"), "platform": "slack"}, headers=other
    )
    body = missing.json()
    assert missing.status_code == 403
    assert body["status"] == "fail" and body["reason"] == SEED_REASON
    assert body["platform"] == "slack" and body["action"] == "http"
    assert body["error"]["code"] == "credential_missing"
    assert len(receiver.requests) == 1  # nothing was sent without it


async def test_insufficient_scope_answers_the_seed_sentence(
    api: Api, sink: tuple[RecordingSink, str]
) -> None:
    from puraify.actions.base import ActionContext
    from puraify.actions.core import Noop

    class Post(Noop):  # an action that needs a scope of its platform's credential
        name = "scoped_post"
        aliases = ()
        platform = "chat"
        required_scopes = ("chat:write",)
        credential = "required"

        async def run(self, params: object, ctx: ActionContext) -> dict[str, object]:
            return {"type": ctx.credentials["chat"]["type"]}

    api.app.state.registry.register(Post())
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    await api.client.put(
        "/vault/credentials/a/chat",
        json={"type": "token", "value": "t-" + "z" * 12, "scopes": ["chat:read"]},
        headers=owner,
    )
    refused = await api.client.post("/execute", json={"action": "scoped_post"}, headers=owner)
    assert refused.json()["reason"] == SEED_REASON
    assert refused.json()["error"]["code"] == "insufficient_scope"
    assert "chat:write" in refused.json()["error"]["message"]
    await api.client.put(
        "/vault/credentials/a/chat",
        json={"type": "token", "value": "t-" + "z" * 12, "scopes": ["chat:read", "chat:write"]},
        headers=owner,
    )
    ok = await api.client.post("/execute", json={"action": "scoped_post"}, headers=owner)
    assert ok.status_code == 200 and ok.json()["result"] == {"type": "token"}


@pytest.mark.slow
def test_the_seed_flow_with_the_vault_in_a_separate_process(
    tmp_path: Path, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    canary = "tok-" + os.urandom(12).hex()
    (tmp_path / "vault").mkdir()
    (tmp_path / "execution").mkdir()
    vault = Process(tmp_path / "vault" / "home", "vault", {})
    try:
        vault.cli("init")
        key = vault.cli("engines", "rotate-key", "puraify-execution")["engine_key"]
        stored = subprocess.run(
            [sys.executable, "-m", "puraify", "vault", "set", "p", "slack", "--type", "token"],
            env=vault.env,
            input=canary,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stored.returncode == 0, stored.stderr
        assert canary not in stored.stdout + stored.stderr
        execution = Process(
            tmp_path / "execution" / "home",
            "execution",
            {
                "PURAIFY_VAULT_URL": vault.url,
                "PURAIFY_CONTROL_ENGINE_KEY": key,
                "PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]',
            },
        )
        try:
            token = execution.cli("tokens", "create", "--project", "p", "--scope", "execute")
            auth = {"Authorization": f"Bearer {token['token']}"}
            done = httpx.post(
                f"{execution.url}/execute", json=call(f"{url}/x", "slack"), headers=auth, timeout=30
            )
            assert done.status_code == 200, done.text
            assert receiver.requests[-1].headers["authorization"] == f"Bearer {canary}"
            missing = httpx.post(
                f"{execution.url}/execute", json=call(f"{url}/x", "gmail"), headers=auth, timeout=30
            )
            assert missing.json()["reason"] == SEED_REASON
            # the vault is the only one that knows the value: the execution store never held it
            assert (
                canary.encode() not in (tmp_path / "execution" / "home" / "puraify.db").read_bytes()
            )
        finally:
            execution.stop()
        # the vault audited the read, and its log holds no value
        events = vault.cli("audit", "list", "--kind", "vault")
        assert any(e["allowed"] and e["engine_id"] == "puraify-execution" for e in events)
    finally:
        vault.stop()
    logs = (tmp_path / "vault" / "vault.log").read_text()
    logs += (tmp_path / "execution" / "execution.log").read_text()
    assert canary not in logs and key not in logs
