"""slack.send_message against the fake Slack over real HTTP on loopback: the seeds' request
shapes and each seed's answer (000, 001, 002), success, a missing or invalid credential, a missing scope, rate limited then success,
5xx with retries, bad parameters refused at validation, a timeout, and the circuit breaker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from puraify.testing import FakeSlack, LocalServer
from tests.api.conftest import Api, ApiFactory

BOT = "xoxb-1111-2222-" + "a" * 24


@pytest.fixture
def slack() -> Iterator[tuple[FakeSlack, str]]:
    fake = FakeSlack({BOT: ("chat:write",)})
    with LocalServer(fake) as server:
        yield fake, f"{server.url}/api"


async def slack_api(
    make_api: ApiFactory, base: str, token: str | None = BOT, **overrides: Any
) -> tuple[Api, dict[str, str]]:
    settings: dict[str, Any] = {
        "slack_base_url": base,
        "ssrf_allow_hosts": (),  # the base URL's host is allowed because the operator set it
        "platform_rate_limits": {},
        **overrides,
    }
    api: Api = await make_api(**settings)
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute', 'runs:read')}"}
    if token is not None:
        await api.client.put(
            "/vault/credentials/a/slack",
            json={"type": "token", "value": token, "scopes": ["chat:write"]},
            headers=owner,
        )
    return api, owner


SEED_000 = {
    "platform": "slack",
    "action": "send_slack_message",
    "parameters": {"channel": "#general", "text": "Deploy finished"},
}


async def test_the_seeds_request_shapes_post_a_message(
    make_api: ApiFactory, slack: tuple[FakeSlack, str]
) -> None:
    fake, base = slack
    api, owner = await slack_api(make_api, base)
    done = await api.client.post("/execute", json=SEED_000, headers=owner)
    body = done.json()
    assert done.status_code == 200, done.text
    assert body["status"] == "success" and body["platform"] == "slack" and body["timestamp"]
    assert body["action"] == "send_slack_message"  # as the caller named it (seed 000)
    assert body["result"]["channel"] == "C0GENERAL" and body["result"]["ts"]
    assert fake.messages[-1]["text"] == "Deploy finished"
    assert BOT not in done.text
    for shape in (
        {"action": "send_message", "platform": "slack", "parameters": {"channel": "C0RANDOM", "text": "x"}},
        {"action": {"type": "send_slack", "platform": "slack", "payload": {"channel": "#random", "text": "y"}}},
    ):  # fmt: skip
        assert (await api.client.post("/execute", json=shape, headers=owner)).status_code == 200
    seed_002 = await api.client.post(
        "/perform_action",
        json={"user_id": "u", "platform": "slack", "action_type": "send_slack_message",
              "payload": {"channel": "#general", "text": "z"}},
        headers=owner,
    )  # fmt: skip
    assert seed_002.json()["status"] == "success" and seed_002.json()["result"]["ok"] is True
    assert len(fake.messages) == 4


async def test_seed_001_the_readme_shape_gets_the_readmes_answer(
    make_api: ApiFactory, slack: tuple[FakeSlack, str]
) -> None:
    fake, base = slack
    api, owner = await slack_api(make_api, base, token=None)
    readme = {"action": "send_slack_message", "project": "a",
              "params": {"channel": "#general", "text": "Deploy finished"}}  # fmt: skip
    failed = await api.client.post("/execute", json=readme, headers=owner)
    body = failed.json()
    assert failed.status_code == 403 and body["status"] == "error", failed.text
    assert body["message"] == "Missing token or insufficient scope" == body["reason"]
    await api.client.put(
        "/vault/credentials/a/slack", json={"type": "token", "value": BOT}, headers=owner
    )
    done = await api.client.post("/execute", json=readme, headers=owner)
    body = done.json()
    assert done.status_code == 200 and body["status"] == "success", done.text
    assert body["data"] == body["result"] and body["data"]["ts"] == fake.messages[-1]["ts"]
    engine_shape = await api.client.post("/execute", json=SEED_000, headers=owner)
    assert "data" not in engine_shape.json()  # seed 000's callers get seed 000's answer
    # refused before the action runs, or by the idempotency key: still in the README's words
    for bad in ({**readme, "params": "not an object"}, {**readme, "action": ""}):
        refused = await api.client.post("/execute", json=bad, headers=owner)
        assert refused.json()["status"] == "error" and refused.json()["message"], refused.text
    assert "params" in refused.text or "action" in refused.text
    keyed = {**owner, "Idempotency-Key": "k-readme"}
    await api.client.post("/execute", json=readme, headers=keyed)
    other = {**readme, "params": {"channel": "#general", "text": "another"}}
    conflict = await api.client.post("/execute", json=other, headers=keyed)
    assert conflict.status_code == 409 and conflict.json()["status"] == "error", conflict.text
    named = await api.client.post(
        "/execute", json={**readme, "params": 5}, headers=owner
    )  # the field named as the request named it
    assert "params" in named.text and "parameters" not in named.json()["message"], named.text


async def test_credentials_missing_invalid_or_short_of_a_scope(
    make_api: ApiFactory, slack: tuple[FakeSlack, str]
) -> None:
    fake, base = slack
    api, owner = await slack_api(make_api, base, token=None)
    missing = await api.client.post("/execute", json=SEED_000, headers=owner)
    assert missing.json()["reason"] == "Missing token or insufficient scope"
    assert fake.requests == 0
    await api.client.put(
        "/vault/credentials/a/slack",
        json={"type": "token", "value": "xoxb-revoked-" + "b" * 20},
        headers=owner,
    )
    invalid = await api.client.post("/execute", json=SEED_000, headers=owner)
    assert invalid.json()["error"]["code"] == "credential_invalid"
    fake.tokens["xoxb-readonly-" + "c" * 20] = ("channels:read",)
    await api.client.put(
        "/vault/credentials/a/slack",
        json={"type": "token", "value": "xoxb-readonly-" + "c" * 20},
        headers=owner,
    )
    scope = await api.client.post("/execute", json=SEED_000, headers=owner)
    assert scope.json()["reason"] == "Missing token or insufficient scope"
    assert scope.json()["error"]["code"] == "insufficient_scope"
    unknown = {**SEED_000, "parameters": {"channel": "#nowhere", "text": "x"}}
    await api.client.put(
        "/vault/credentials/a/slack", json={"type": "token", "value": BOT}, headers=owner
    )
    gone = await api.client.post("/execute", json=unknown, headers=owner)
    assert gone.json()["error"]["code"] == "not_found" and "channel_not_found" in gone.text


def mission(**step: Any) -> dict[str, Any]:
    return {
        "name": "slack",
        "steps": [
            {
                "id": "post",
                "step_type": "slack.send_message",
                "parameters": {"channel": "#general", "text": "hi", **step.pop("params", {})},
                **step,
            }
        ],
    }


async def test_rate_limited_then_success_and_5xx_with_retries(
    make_api: ApiFactory, slack: tuple[FakeSlack, str]
) -> None:
    fake, base = slack
    api, owner = await slack_api(make_api, base)
    fake.rate_limit_next(1, retry_after=0.2)
    retried = {"attempts": 3, "delay_ms": 10}
    done = await api.client.post(
        "/missions/execute?wait=true", json=mission(retry=retried), headers=owner
    )
    step = done.json()["step_results"]["post"]
    assert step["status"] == "success" and step["attempts"] == 2, step
    fake.fail_next(2, status=503)
    done = await api.client.post(
        "/missions/execute?wait=true", json=mission(retry=retried), headers=owner
    )
    step = done.json()["step_results"]["post"]
    assert step["status"] == "success" and step["attempts"] == 3, step
    assert len(fake.messages) == 2


async def test_bad_parameters_and_a_timeout(
    make_api: ApiFactory, slack: tuple[FakeSlack, str]
) -> None:
    fake, base = slack
    api, owner = await slack_api(make_api, base)
    refused = await api.client.post(
        "/missions/validate", json=mission(params={"text": None}), headers=owner
    )
    assert refused.json()["valid"] is False and "text" in refused.text
    fake.hang_next()
    done = await api.client.post(
        "/missions/execute?wait=true", json=mission(params={"timeout": 0.3}), headers=owner
    )
    assert done.json()["step_results"]["post"]["error"]["code"] == "timeout"


async def test_a_failing_platform_opens_the_credentials_circuit(
    make_api: ApiFactory, slack: tuple[FakeSlack, str]
) -> None:
    fake, base = slack
    api, owner = await slack_api(make_api, base, circuit_failures=2, circuit_reset_seconds=60)
    fake.fail_next(2, status=500)
    for _ in range(2):
        failed = await api.client.post("/execute", json=SEED_000, headers=owner)
        assert failed.json()["error"]["code"] == "upstream_error"
    before = fake.requests
    fast = await api.client.post("/execute", json=SEED_000, headers=owner)
    assert fast.json()["error"]["code"] == "circuit_open" and fast.json()["error"]["retryable"]
    assert fake.requests == before  # it never reached Slack


async def test_an_answer_past_the_cap_is_refused(make_api: ApiFactory) -> None:
    from puraify.testing import RecordingSink, Reply

    sink = RecordingSink()
    sink.script("/api/chat.postMessage", Reply(200, {"ok": True, "pad": "x" * 50_000}))
    with LocalServer(sink) as server:
        api, owner = await slack_api(make_api, f"{server.url}/api", http_max_response_bytes=10_000)
        big = await api.client.post("/execute", json=SEED_000, headers=owner)
    assert big.json()["error"]["code"] == "response_too_large", big.text
