"""The vault's routes: a project's credentials by a token with the vault scope (its own project
only); values only to an engine holding vault:read, every read audited; never a value in a
metadata answer; a server refuses to start with a key that does not open its credentials."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from puraify.api import create_app
from puraify.errors import VaultError
from puraify.testing import Lifespan
from tests.api.conftest import Api, ApiFactory, api_settings
from tests.conftest import TEST_ENV


async def engine_headers(api: Api, engine_id: str, permissions: Any) -> dict[str, str]:
    control = api.app.state.application.control
    key = await control.register(engine_id, permissions, by="test")
    return {"X-Engine-ID": engine_id, "X-Engine-Key": key}


async def test_the_seed_flow_store_then_an_engine_reads_it(api: Api) -> None:
    token = await api.token("a", "vault")
    owner = {"Authorization": f"Bearer {token}"}
    canary = "xoxb-canary-" + os.urandom(4).hex()
    stored = await api.client.put(
        "/vault/credentials/a/slack",
        json={"type": "token", "value": canary, "scopes": ["chat:write"]},
        headers=owner,
    )
    assert stored.status_code == 200, stored.text
    assert canary not in stored.text and stored.json()["scopes"] == ["chat:write"]
    meta = await api.client.get("/vault/credentials/a/slack", headers=owner)
    assert meta.json()["type"] == "token" and canary not in meta.text
    reader = await engine_headers(api, "reader", {"vault": {"read": []}})
    got = await api.client.get("/vault/token/a/slack", headers=reader)
    assert got.status_code == 200 and got.json()["token"] == canary
    assert got.json()["scopes"] == ["chat:write"]
    nobody = await engine_headers(api, "nobody", {"slack": {"*": []}})
    refused = await api.client.get("/vault/token/a/slack", headers=nobody)
    assert refused.status_code == 403 and canary not in refused.text
    missing = await api.client.get("/vault/token/a/gmail", headers=reader)
    assert missing.status_code == 404
    control = api.app.state.application.control
    events = await control.events(kind="vault")
    assert [(e["engine_id"], e["allowed"]) for e in reversed(events)] == [
        ("reader", True),
        ("nobody", False),
        ("reader", False),
    ]
    assert canary not in repr(events)


async def test_a_project_reaches_only_its_own_credentials(api: Api) -> None:
    mine = {"Authorization": f"Bearer {await api.token('a', 'vault')}"}
    theirs = {"Authorization": f"Bearer {await api.token('b', 'vault')}"}
    body = {"type": "api_key", "value": "k-" + os.urandom(4).hex()}
    assert (
        await api.client.put("/vault/credentials/a/x", json=body, headers=mine)
    ).status_code == 200
    for method in ("GET", "DELETE"):
        answer = await api.client.request(method, "/vault/credentials/a/x", headers=theirs)
        assert answer.status_code == 404
    put = await api.client.put("/vault/credentials/a/x", json=body, headers=theirs)
    assert put.status_code == 404
    no_scope = await api.client.get("/vault/credentials/a/x", headers=api.auth("a"))
    assert no_scope.status_code == 403
    bad = await api.client.put(
        "/vault/credentials/a/x", json={"type": "nope", "value": "v"}, headers=mine
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_credential"
    gone = await api.client.delete("/vault/credentials/a/x", headers=mine)
    assert gone.json() == {"deleted": True}
    # a secret field is text: not a number (it would go unredacted), not a list of thousands
    for value in (
        {"username": "ops", "password": 98765432},
        {"token": ["t" * 10] * 2500},
        {"hunter2-pasted-secret": "x"},
        "hunter2-as-a-username",  # a basic credential's text would be its username
    ):
        kind = "basic" if "username" in value or isinstance(value, str) else "token"
        refused = await api.client.put(
            "/vault/credentials/a/y", json={"type": kind, "value": value}, headers=mine
        )
        assert refused.status_code == 422, refused.text
        assert "hunter2" not in refused.text


async def test_a_server_with_the_wrong_key_does_not_start(
    make_api: ApiFactory, tmp_path: Path
) -> None:
    api = await make_api()
    mine = {"Authorization": f"Bearer {await api.token('a', 'vault')}"}
    body = {"type": "token", "value": "t"}
    assert (
        await api.client.put("/vault/credentials/a/x", json=body, headers=mine)
    ).status_code == 200
    key_file = tmp_path / "home" / "vault.key"
    key_file.unlink()  # lost: a new server must not start with an empty vault
    app = create_app(api_settings(tmp_path), environ=TEST_ENV)
    with pytest.raises(VaultError) as caught:
        async with Lifespan(app):
            pass
    assert caught.value.code == "vault_key_missing"
    assert not key_file.exists()  # no new key was made in its place
