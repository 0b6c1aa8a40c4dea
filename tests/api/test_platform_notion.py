"""notion.create_task and notion.create_page through Notion's SDK against the fake Notion over
real HTTP: the seed name create_task, properties mapped, an invalid or missing token, a database
not shared, Notion's validation_error, rate limited then success; and the SDK never touches the
engine's shared client (another step's request carries no Notion token)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from puraify.testing import FakeNotion, LocalServer, RecordingSink
from tests.api.conftest import Api, ApiFactory

TOKEN = "secret_" + "n" * 43


@pytest.fixture
def notion() -> Iterator[tuple[FakeNotion, str]]:
    fake = FakeNotion({TOKEN})
    with LocalServer(fake) as server:
        yield fake, server.url


async def notion_api(
    make_api: ApiFactory, base: str, token: str | None = TOKEN
) -> tuple[Api, dict[str, str]]:
    api: Api = await make_api(notion_base_url=base, platform_rate_limits={})
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    if token is not None:
        await api.client.put(
            "/vault/credentials/a/notion", json={"type": "token", "value": token}, headers=owner
        )
    return api, owner


def task(database: str, **extra: Any) -> dict[str, Any]:
    return {"action": "create_task", "platform": "notion",
            "parameters": {"database_id": database, "title": "Review the plan", **extra}}  # fmt: skip


async def test_a_task_lands_in_the_database(
    make_api: ApiFactory, notion: tuple[FakeNotion, str]
) -> None:
    fake, base = notion
    api, owner = await notion_api(make_api, base)
    database = fake.add_database()
    done = await api.client.post(
        "/execute",
        json=task(database, status="Not started", due="2026-12-24", assignee="u-1"),
        headers=owner,
    )
    assert done.status_code == 200, done.text
    page = fake.pages[-1]
    assert done.json()["result"]["id"] == page["id"] and done.json()["result"]["url"]
    assert page["properties"]["Name"]["title"][0]["text"]["content"] == "Review the plan"
    assert page["properties"]["Status"] == {"status": {"name": "Not started"}}
    assert page["properties"]["Due"] == {"date": {"start": "2026-12-24"}}
    assert page["properties"]["Assignee"] == {"people": [{"id": "u-1"}]}
    raw = await api.client.post(
        "/execute",
        json={"action": "notion.create_page", "parameters": {
            "database_id": database, "properties": {"Name": {"title": [{"text": {"content": "x"}}]}}}},
        headers=owner,
    )  # fmt: skip
    assert raw.status_code == 200, raw.text
    assert TOKEN not in done.text + raw.text


async def test_notions_refusals_map_to_stable_codes(
    make_api: ApiFactory, notion: tuple[FakeNotion, str]
) -> None:
    fake, base = notion
    api, owner = await notion_api(make_api, base, token="secret_" + "x" * 43)
    database = fake.add_database()
    invalid = await api.client.post("/execute", json=task(database), headers=owner)
    assert invalid.json()["error"]["code"] == "credential_invalid"
    await api.client.put(
        "/vault/credentials/a/notion", json={"type": "token", "value": TOKEN}, headers=owner
    )
    unshared = await api.client.post("/execute", json=task("0" * 32), headers=owner)
    assert unshared.json()["error"]["code"] == "not_found"
    wrong = await api.client.post(
        "/execute", json=task(database, status_property="Stage", status="x"), headers=owner
    )
    assert wrong.json()["error"]["code"] == "invalid_parameters"
    assert "Stage is not a property that exists" in wrong.json()["reason"]
    fake.rate_limit_next(1, retry_after=0)
    mission = {"name": "t", "steps": [{"id": "t", "step_type": "notion.create_task",
               "parameters": task(database)["parameters"], "retry": {"attempts": 2, "delay_ms": 10}}]}  # fmt: skip
    done = await api.client.post("/missions/execute?wait=true", json=mission, headers=owner)
    step = done.json()["step_results"]["t"]
    assert step["status"] == "success" and step["attempts"] == 2, step
    await api.client.delete("/vault/credentials/a/notion", headers=owner)
    missing = await api.client.post("/execute", json=task(database), headers=owner)
    assert missing.json()["reason"] == "Missing token or insufficient scope"


async def test_the_sdk_never_touches_the_shared_client(
    make_api: ApiFactory, notion: tuple[FakeNotion, str]
) -> None:
    fake, base = notion
    api, owner = await notion_api(make_api, base)
    await api.client.post("/execute", json=task(fake.add_database()), headers=owner)
    sink = RecordingSink()
    with LocalServer(sink) as server:
        after = await api.client.post(
            "/execute", json={"action": "http", "parameters": {"url": f"{server.url}/x"}},
            headers=owner,
        )  # fmt: skip
    assert after.status_code == 200, after.text
    seen = sink.requests[-1]
    assert "authorization" not in seen.headers and "notion-version" not in seen.headers


async def test_an_answer_past_the_cap_is_refused_through_the_sdk(make_api: ApiFactory) -> None:
    from puraify.testing import Reply

    sink = RecordingSink()
    sink.script("/v1/pages", Reply(200, {"object": "page", "id": "p", "pad": "x" * 50_000}))
    with LocalServer(sink) as server:
        api: Api = await make_api(
            notion_base_url=server.url, platform_rate_limits={}, http_max_response_bytes=10_000
        )
        owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
        await api.client.put(
            "/vault/credentials/a/notion", json={"type": "token", "value": TOKEN}, headers=owner
        )
        big = await api.client.post("/execute", json=task("d" * 32), headers=owner)
    assert big.json()["error"]["code"] == "response_too_large", big.text
