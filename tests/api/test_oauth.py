"""OAuth2 against the fake authorization server over real HTTP: connect with PKCE and a
single-use state, tokens stored elsewhere, refresh before expiry, and REL-07 (one refresh for
fifty steps; invalid_grant makes the credential invalid with no refresh storm)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from puraify.settings import OAuthProvider
from puraify.store.tables import oauth_states
from puraify.testing import FakeOAuthServer, LocalServer
from tests.api.conftest import Api, ApiFactory
from tests.helpers import poll

REDIRECT = "https://app.example/oauth/done"


@pytest.fixture
def fake() -> Iterator[tuple[FakeOAuthServer, str]]:
    server = FakeOAuthServer(scope="chat:write,channels:read")
    with LocalServer(server) as local:
        yield server, local.url


async def oauth_api(make_api: ApiFactory, url: str, **overrides: Any) -> Api:
    provider = OAuthProvider(
        client_id="puraify-client",
        client_secret="puraify-secret",
        authorize_url=f"{url}/authorize",
        token_url=f"{url}/token",
        scopes=["chat:write", "channels:read"],
        scope_separator=",",
    )
    return await make_api(oauth_providers={"fake": provider}, **overrides)  # type: ignore[no-any-return]


async def setup(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str], **overrides: Any
) -> tuple[FakeOAuthServer, Api, dict[str, str]]:
    """The fake provider, an API configured for it, and a vault-scoped token's headers."""
    server, url = fake
    api = await oauth_api(make_api, url, **overrides)
    return server, api, await vault_headers(api)


async def vault_headers(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute', 'runs:read')}"}


_READERS: dict[int, dict[str, str]] = {}


async def reader(api: Api) -> dict[str, str]:
    """An engine holding vault:read (one per app)."""
    if id(api.app) not in _READERS:
        key = await api.app.state.application.control.register(
            "reader", {"vault": {"read": []}}, by="test"
        )
        _READERS[id(api.app)] = {"X-Engine-ID": "reader", "X-Engine-Key": key}
    return _READERS[id(api.app)]


async def connect(api: Api, owner: dict[str, str], **extra: Any) -> httpx.Response:
    started = await api.client.post(
        "/auth/start",
        json={"platform": "fake", "redirect_uri": REDIRECT, **extra},
        headers=owner,
    )
    assert started.status_code == 200, started.text
    body = started.json()
    # the user's browser at the provider, which sends it back with a code
    back = httpx.get(body["authorization_url"], follow_redirects=False, timeout=10)
    assert back.status_code == 302
    location = httpx.URL(back.headers["location"])
    assert str(location).startswith(REDIRECT)
    assert location.params["state"] == body["state"]
    return await api.client.get("/auth/callback", params=dict(location.params))


async def test_connect_with_pkce_and_a_state_used_once(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    server, api, owner = await setup(make_api, fake)
    started = await api.client.post(
        "/auth/start", json={"platform": "fake", "redirect_uri": REDIRECT}, headers=owner
    )
    query = httpx.URL(started.json()["authorization_url"]).params
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["client_id"] == "puraify-client" and query["scope"] == "chat:write,channels:read"
    async with api.app.state.db.engine.connect() as conn:
        kept = (await conn.execute(select(oauth_states))).all()
    state = started.json()["state"]
    assert kept and all(state not in repr(tuple(r)) for r in kept)  # hashed, verifier sealed

    done = await connect(api, owner)
    assert done.status_code == 200, done.text
    credential = done.json()["credential"]
    assert credential["type"] == "oauth2" and credential["project_id"] == "a"
    assert credential["scopes"] == ["channels:read", "chat:write"]
    assert credential["expires_at"] is not None and "access_token" not in done.text
    got = await api.client.get("/vault/token/a/fake", headers=await reader(api))
    token = got.json()["token"]
    assert "refresh_token" not in got.json()["credential"]  # it never leaves the vault
    resource = f"{fake[1]}/resource"
    assert httpx.get(resource, headers={"Authorization": f"Bearer {token}"}).is_success

    # a state comes back once: a replay, an unknown one, a missing one are all refused
    again = httpx.get(
        (
            await api.client.post(
                "/auth/start", json={"platform": "fake", "redirect_uri": REDIRECT}, headers=owner
            )
        ).json()["authorization_url"],
        follow_redirects=False,
    )
    params = dict(httpx.URL(again.headers["location"]).params)
    first = await api.client.get("/auth/callback", params=params)
    replay = await api.client.get("/auth/callback", params=params)
    assert first.status_code == 200
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "oauth_state_invalid"
    forged = await api.client.get("/auth/callback", params={"state": "x" * 43, "code": "c"})
    assert forged.status_code == 401
    assert (await api.client.get("/auth/callback")).status_code == 401
    assert server.token_requests == 2  # refused states never reached the provider


async def test_a_refused_authorization_and_an_unknown_provider(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    server, api, owner = await setup(make_api, fake)
    server.deny_next()
    denied = await connect(api, owner)
    assert denied.status_code == 502 and denied.json()["error"]["code"] == "oauth_error"
    assert "access_denied" in denied.json()["reason"]
    unknown = await api.client.post(
        "/auth/start", json={"platform": "nope", "redirect_uri": REDIRECT}, headers=owner
    )
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "oauth_provider_unknown"
    bad_uri = await api.client.post(
        "/auth/start", json={"platform": "fake", "redirect_uri": "javascript:x"}, headers=owner
    )
    assert bad_uri.status_code == 422
    theirs = await api.client.post(
        "/auth/start",
        json={"platform": "fake", "redirect_uri": REDIRECT, "project_id": "b"},
        headers=owner,
    )
    assert theirs.status_code == 404


async def test_tokens_obtained_elsewhere_for_a_user(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    _, api, owner = await setup(make_api, fake)
    stored = await api.client.post(
        "/auth/token",
        json={
            "user_id": "u1",
            "platform": "fake",
            "access_token": "at-" + "x" * 20,
            "expires_in": 3600,
            "scopes": ["chat:write"],
        },
        headers=owner,
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["credential"]["user_id"] == "u1" and "at-x" not in stored.text
    got = await api.client.get("/vault/token/a/fake?user_id=u1", headers=await reader(api))
    assert got.json()["token"] == "at-" + "x" * 20
    project = await api.client.get("/vault/token/a/fake", headers=await reader(api))
    assert project.status_code == 404  # the user's credential is not the project's


async def expired_credential(api: Api, server: FakeOAuthServer) -> str:
    """An oauth2 credential of project a for `fake` whose access token has expired."""
    tokens = server.issue()
    await api.app.state.application.vault.put(
        "a",
        "fake",
        "oauth2",
        {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"]},
        scopes=["chat:write"],
        expires_at=datetime.now(UTC) - timedelta(seconds=5),
    )
    return str(tokens["access_token"])


FIFTY = {
    "name": "fifty",
    "config": {"max_concurrent_steps": 50},
    "steps": [
        {
            "id": f"s{i}",
            "step_type": "log_message",
            "parameters": {"message": "token {{ secrets.fake }}"},
        }
        for i in range(50)
    ],
}


async def test_rel07_one_refresh_for_fifty_steps(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    server, api, owner = await setup(make_api, fake)
    old = await expired_credential(api, server)
    server.hold_refresh()  # the refresh stays in flight while the fifty steps ask
    started = await api.client.post("/missions/execute", json=FIFTY, headers=owner)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def refreshes() -> int:
        return server.refreshes

    await poll(refreshes, lambda n: n >= 1, what="the refresh request")
    server.release()

    async def read() -> Any:
        return (await api.client.get(f"/runs/{run_id}", headers=owner)).json()

    run = await poll(read, lambda r: r["status"] in ("completed", "failed"), what="the run's end")
    assert run["status"] == "completed", run["status"]
    assert server.refreshes == 1
    new = (await api.client.get("/vault/token/a/fake", headers=await reader(api))).json()
    assert new["token"] != old and new["status"] == "valid"
    messages = {s["output"]["message"] for s in run["steps"]}
    assert messages == {"token [redacted]"}  # what a step read is never shown


async def test_rel07_invalid_grant_is_credential_invalid_without_a_storm(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    server, api, owner = await setup(make_api, fake)
    await expired_credential(api, server)
    server.revoke()
    for round_ in range(2):
        done = await api.client.post("/missions/execute?wait=true", json=FIFTY, headers=owner)
        run = done.json()
        codes = {s["error"]["code"] for s in run["step_results"].values()}
        assert codes == {"credential_invalid"}, (round_, run)
        assert server.refreshes == 1  # one refused refresh, then none at all
    token = await api.client.get("/vault/token/a/fake", headers=await reader(api))
    assert token.status_code == 403 and token.json()["error"]["code"] == "credential_invalid"
    meta = await api.client.get("/vault/credentials/a/fake", headers=owner)
    assert meta.json()["status"] == "invalid"
    # connecting again makes it valid
    await api.client.post(
        "/auth/token",
        json={"platform": "fake", "access_token": server.issue()["access_token"]},
        headers=owner,
    )
    assert (await api.client.get("/vault/credentials/a/fake", headers=owner)).json()[
        "status"
    ] == "valid"


async def test_a_refresh_the_provider_could_not_answer_is_retried_with_the_step(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    server, api, owner = await setup(make_api, fake)
    await expired_credential(api, server)
    server.fail_refresh(1)
    mission = {
        "name": "retried",
        "steps": [
            {
                "id": "s",
                "step_type": "log_message",
                "parameters": {"message": "{{ secrets.fake }}"},
                "retry": {"attempts": 2, "delay_ms": 10},
            }
        ],
    }
    done = await api.client.post("/missions/execute?wait=true", json=mission, headers=owner)
    step = done.json()["step_results"]["s"]
    assert step["status"] == "success" and step["attempts"] == 2, step
    assert server.refreshes == 2
    # a provider that quotes the refresh token back in its error: never shown
    refresh = (await api.app.state.application.vault.value("a", "fake")).value["refresh_token"]
    await expired_credential(api, server)
    server.fail_refresh(1, status=400, echo=True)
    refused = await api.client.post("/missions/execute?wait=true", json=FIFTY, headers=owner)
    assert refused.json()["step_results"]["s0"]["error"]["code"] == "oauth_error"
    assert "refresh_token [redacted] is malformed" in refused.text
    assert refresh not in refused.text


async def test_what_a_provider_or_a_caller_gets_wrong_is_refused_cleanly(
    make_api: ApiFactory, fake: tuple[FakeOAuthServer, str]
) -> None:
    fake[0].expires_in = 10**12  # "expires in 31,000 years": taken as no expiry, no crash
    _, api, owner = await setup(make_api, fake, oauth_redirect_uris=["https://app.example/oauth"])
    done = await connect(api, owner)
    assert done.status_code == 200, done.text
    assert done.json()["credential"]["expires_at"] is None
    elsewhere = await api.client.post(
        "/auth/start",
        json={"platform": "fake", "redirect_uri": "https://evil.example/oauth/done"},
        headers=owner,
    )
    assert elsewhere.status_code == 400, elsewhere.text
    assert elsewhere.json()["error"]["field"] == "redirect_uri"
