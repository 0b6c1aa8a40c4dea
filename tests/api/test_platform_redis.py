"""redis.set and redis.get against the running Redis: binary-safe values, an expiry, a missing
key, the seeds' names, SEC-01 for the server's host, only SET and GET reachable, a missing or
refused credential, bad parameters, a lost connection retried and a silent server."""

from __future__ import annotations

import base64
import os

import pytest

from tests.api.conftest import Api, ApiFactory
from tests.api.test_platform_budget import redis_or_skip
from tests.helpers import Flaky, listening, silent_server


async def redis_api(make_api: ApiFactory, url: str) -> tuple[Api, dict[str, str]]:
    api: Api = await make_api()
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    await api.client.put(
        "/vault/credentials/a/redis", json={"type": "database_url", "value": url}, headers=owner
    )
    return api, owner


async def test_set_and_get_binary_safe_with_a_ttl(make_api: ApiFactory) -> None:
    redis_or_skip()
    api, owner = await redis_api(make_api, "redis://127.0.0.1:6379/0")
    key = "puraify-test:" + os.urandom(6).hex()
    raw = bytes(range(256))
    stored = await api.client.post(
        "/execute",
        json={"action": "redis_set", "parameters": {"key": key, "value": base64.b64encode(raw).decode(),
              "encoding": "base64", "ttl_seconds": 60}},
        headers=owner,
    )  # fmt: skip
    assert stored.status_code == 200 and stored.json()["result"]["stored"] is True, stored.text
    read = await api.client.post(
        "/execute",
        json={"action": "redis_get", "parameters": {"key": key, "encoding": "base64"}},
        headers=owner,
    )
    assert base64.b64decode(read.json()["result"]["value"]) == raw
    as_text = await api.client.post(
        "/execute", json={"action": "redis.get", "parameters": {"key": key}}, headers=owner
    )
    assert as_text.json()["error"]["code"] == "invalid_parameters"  # bytes that are not UTF-8
    missing = await api.client.post(
        "/execute",
        json={"action": "redis.get", "parameters": {"key": key + ":none"}},
        headers=owner,
    )
    assert missing.json()["result"] == {"key": key + ":none", "found": False, "value": None}


@pytest.mark.parametrize("host", ["169.254.169.254", "10.0.0.7"])
async def test_sec01_the_servers_host_passes_the_egress_guard(
    make_api: ApiFactory, host: str
) -> None:
    api, owner = await redis_api(make_api, f"redis://{host}:6379/0")
    refused = await api.client.post(
        "/execute", json={"action": "redis.get", "parameters": {"key": "k"}}, headers=owner
    )
    assert refused.json()["error"]["code"] == "ssrf_blocked", refused.text


def test_sec11_no_other_redis_command_is_reachable() -> None:
    from puraify.actions import default_registry

    names = {
        a.name for a in default_registry(entry_points=False).actions() if a.platform == "redis"
    }
    assert names == {"redis.set", "redis.get"}


async def test_a_platforms_base_url_opens_its_host_to_http_only(make_api: ApiFactory) -> None:
    """slack_base_url on loopback lets Slack's requests reach it, not Redis or SMTP."""
    api: Api = await make_api(slack_base_url="http://127.0.0.1:9/api", ssrf_allow_hosts=())
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    await api.client.put(
        "/vault/credentials/a/redis",
        json={"type": "database_url", "value": "redis://127.0.0.1:6379/0"},
        headers=owner,
    )
    refused = await api.client.post(
        "/execute", json={"action": "redis.get", "parameters": {"key": "k"}}, headers=owner
    )
    assert refused.json()["error"]["code"] == "ssrf_blocked", refused.text


async def test_credentials_missing_or_refused_and_bad_parameters(make_api: ApiFactory) -> None:
    redis_or_skip()
    api: Api = await make_api()
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    get = {"action": "redis_get", "parameters": {"key": "k"}}
    missing = await api.client.post("/execute", json=get, headers=owner)
    assert missing.json()["reason"] == "Missing token or insufficient scope", missing.text
    await api.client.put(
        "/vault/credentials/a/redis",
        json={"type": "database_url", "value": "redis://nobody:wrong-pw@127.0.0.1:6379/0"},
        headers=owner,
    )
    refused = await api.client.post("/execute", json=get, headers=owner)
    assert refused.json()["error"]["code"] == "credential_invalid", refused.text
    assert "wrong-pw" not in refused.text
    bad = await api.client.post(
        "/execute", json={"action": "redis_set", "parameters": {"key": "", "value": "v"}},
        headers=owner,
    )  # fmt: skip
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_parameters"


async def test_a_dropped_connection_is_retried_and_a_silent_server_is_a_timeout(
    make_api: ApiFactory,
) -> None:
    redis_or_skip()
    key = "puraify-test:" + os.urandom(6).hex()
    flaky = Flaky(("127.0.0.1", 6379), drop=10**6)  # a server that drops every connection
    async with listening(flaky.handle) as port:
        api, owner = await redis_api(make_api, f"redis://127.0.0.1:{port}/0")
        step = {"id": "set", "step_type": "redis.set", "retry": {"attempts": 2, "delay_ms": 10},
                "parameters": {"key": key, "value": "v", "ttl_seconds": 60}}  # fmt: skip
        done = await api.client.post(
            "/missions/execute?wait=true", json={"name": "r", "steps": [step]}, headers=owner
        )
    result = done.json()["step_results"]["set"]
    assert result["status"] == "failed" and result["attempts"] == 3, result  # 1 + 2 retries
    assert result["error"]["code"] == "connection_error" and result["error"]["retryable"]
    async with silent_server() as port:
        api, owner = await redis_api(make_api, f"redis://127.0.0.1:{port}/0")
        slow = await api.client.post(
            "/execute",
            json={"action": "redis_get", "parameters": {"key": key, "timeout": 0.5}},
            headers=owner,
        )
    assert slow.json()["error"]["code"] == "timeout", slow.text


async def test_a_value_past_the_cap_is_never_read(make_api: ApiFactory) -> None:
    redis_or_skip()
    api: Api = await make_api(http_max_response_bytes=1000)
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    await api.client.put(
        "/vault/credentials/a/redis",
        json={"type": "database_url", "value": "redis://127.0.0.1:6379/0"},
        headers=owner,
    )
    key = "puraify-test:" + os.urandom(6).hex()
    stored = await api.client.post(
        "/execute",
        json={"action": "redis_set", "parameters": {"key": key, "value": "v" * 2000,
                                                    "ttl_seconds": 60}},
        headers=owner,
    )  # fmt: skip
    assert stored.json()["status"] == "success", stored.text
    big = await api.client.post(
        "/execute", json={"action": "redis_get", "parameters": {"key": key}}, headers=owner
    )
    assert big.json()["error"]["code"] == "response_too_large", big.text
