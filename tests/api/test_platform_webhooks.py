"""webhook.call (signed with the project's webhook secret, keyed, SSRF-guarded) and
zapier.trigger_zap (a Catch Hook POST) against real receivers on loopback."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import Any

import pytest

from puraify.testing import LocalServer, RecordingSink, Reply
from tests.api.conftest import Api, ApiFactory


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingSink, str]]:
    sink = RecordingSink()
    with LocalServer(sink) as server:
        yield sink, server.url


async def test_a_webhook_signed_with_the_projects_secret(
    api: Api, receiver: tuple[RecordingSink, str]
) -> None:
    sink, url = receiver
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    call = {
        "action": "call_webhook",
        "parameters": {"url": f"{url}/orders", "method": "POST", "json": {"order": 42}},
    }
    unsigned = await api.client.post("/execute", json=call, headers=owner)
    assert unsigned.status_code == 200, unsigned.text
    first = sink.requests[-1]
    assert "x-puraify-signature-256" not in first.headers and first.headers["idempotency-key"]
    secret = "whsec-" + os.urandom(16).hex()
    await api.client.put(
        "/vault/credentials/a/webhook",
        json={"type": "webhook_secret", "value": secret},
        headers=owner,
    )
    signed = await api.client.post("/execute", json=call, headers=owner)
    assert signed.status_code == 200, signed.text
    seen = sink.requests[-1]
    stamp = seen.headers["x-puraify-timestamp"]
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + seen.body, hashlib.sha256)
    assert seen.headers["x-puraify-signature-256"] == "sha256=" + expected.hexdigest()
    assert seen.json() == {"order": 42} and secret not in signed.text
    # a call to any URL (http_request, the http action) never carries the project's signature
    plain = await api.client.post(
        "/execute", json={**call, "action": "http_request", "platform": "webhook"}, headers=owner
    )
    assert plain.status_code == 200, plain.text
    assert "x-puraify-signature-256" not in sink.requests[-1].headers


async def test_sec01_a_webhook_to_an_internal_address_is_refused(
    api: Api, receiver: tuple[RecordingSink, str]
) -> None:
    sink, _ = receiver
    for url in ("http://169.254.169.254/latest", "http://[::ffff:10.0.0.1]/", "http://0x7f000001/"):
        refused = await api.client.post(
            "/execute", json={"action": "webhook.call", "parameters": {"url": url}},
            headers=api.auth(),
        )  # fmt: skip
        assert refused.json()["error"]["code"] == "ssrf_blocked", (url, refused.text)
    assert sink.count() == 0


async def test_trigger_a_zap_through_its_catch_hook(
    make_api: ApiFactory, receiver: tuple[RecordingSink, str]
) -> None:
    sink, url = receiver
    api: Api = await make_api(zapier_base_url=url, ssrf_allow_hosts=())
    hook = "/hooks/catch/123456/abcdef/"
    sink.script(
        hook, Reply(200, {"status": "success", "id": "z-1", "request_id": "r-1", "attempt": "a-1"})
    )
    done = await api.client.post(
        "/execute",
        json={"action": "trigger_zap", "platform": "zapier",
              "parameters": {"hook": "123456/abcdef", "payload": {"order": 42}}},
        headers=api.auth(),
    )  # fmt: skip
    assert done.status_code == 200, done.text
    assert done.json()["result"]["id"] == "z-1"
    assert sink.requests[-1].path == hook and sink.requests[-1].json() == {"order": 42}
    sink.script(hook, Reply(404, {"status": "error"}))
    gone = await api.client.post(
        "/execute",
        json={"action": "zapier.trigger_zap", "parameters": {"hook": "123456/abcdef"}},
        headers=api.auth(),
    )
    assert gone.json()["error"]["code"] == "not_found"
    bad = await api.client.post(
        "/execute",
        json={"action": "zapier.trigger_zap", "parameters": {"hook": "../../admin"}},
        headers=api.auth(),
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_parameters"


async def test_one_failing_receiver_never_pauses_calls_to_another(make_api: ApiFactory) -> None:
    api: Api = await make_api(circuit_failures=2, circuit_reset_seconds=60)
    failing, healthy = RecordingSink(), RecordingSink()
    failing.fail_next(10, status=503, path="/hook")
    with LocalServer(failing) as bad, LocalServer(healthy) as good:

        async def call(url: str) -> dict[str, Any]:
            answer = await api.client.post(
                "/execute",
                json={"action": "call_webhook", "parameters": {"url": f"{url}/hook",
                                                                "method": "POST"}},
                headers=api.auth(),
            )  # fmt: skip
            return answer.json()  # type: ignore[no-any-return]

        for _ in range(2):
            assert (await call(bad.url))["error"]["code"] == "http_error"
        assert (await call(bad.url))["error"]["code"] == "circuit_open"
        assert (await call(good.url))["status"] == "success"  # its own breaker, closed
    assert healthy.count("/hook") == 1
