"""google_calendar.create_event and google_sheets.append_row against the fake Google APIs over
real HTTP: the seeds' create_event and create_sheet, Google's error bodies mapped (invalid
token, a scope missing, not found, rate limited then success)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from puraify.testing import FakeGoogle, LocalServer
from puraify.testing.fakes.google import CALENDAR, SHEETS
from tests.api.conftest import Api, ApiFactory

TOKEN = "ya29." + "g" * 40


@pytest.fixture
def google() -> Iterator[tuple[FakeGoogle, str]]:
    fake = FakeGoogle({TOKEN: (CALENDAR, SHEETS)})
    with LocalServer(fake) as server:
        yield fake, server.url


async def google_api(
    make_api: ApiFactory, url: str, token: str = TOKEN
) -> tuple[Api, dict[str, str]]:
    api: Api = await make_api(
        google_calendar_base_url=url, google_sheets_base_url=url, platform_rate_limits={}
    )
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    await api.client.put(
        "/vault/credentials/a/google",
        json={"type": "oauth2", "value": {"access_token": token}, "scopes": [CALENDAR, SHEETS]},
        headers=owner,
    )
    return api, owner


EVENT = {"action": "create_event", "platform": "google_calendar",
         "parameters": {"title": "Launch review", "start": "2026-12-24T10:00:00+01:00",
                        "end": "2026-12-24T11:00:00+01:00", "attendees": ["ada@example.com"]}}  # fmt: skip


async def test_an_event_and_rows_are_created(
    make_api: ApiFactory, google: tuple[FakeGoogle, str]
) -> None:
    fake, url = google
    api, owner = await google_api(make_api, url)
    event = await api.client.post("/execute", json=EVENT, headers=owner)
    assert event.status_code == 200, event.text
    created = fake.events[-1]
    assert event.json()["result"]["id"] == created["id"] and created["summary"] == "Launch review"
    assert created["attendees"] == [{"email": "ada@example.com"}]
    sheet = fake.add_spreadsheet("Orders")
    rows = await api.client.post(
        "/execute",
        json={"action": "create_sheet", "platform": "google_sheets",
              "parameters": {"spreadsheet_id": sheet, "range": "Orders", "values": [["A-1", 42], ["A-2", 7]]}},
        headers=owner,
    )  # fmt: skip
    assert rows.status_code == 200, rows.text
    assert rows.json()["result"]["updated_rows"] == 2 and fake.rows == [["A-1", 42], ["A-2", 7]]
    assert TOKEN not in event.text + rows.text
    new = await api.client.post(
        "/execute",
        json={"action": "create_sheet", "platform": "google_sheets",
              "parameters": {"title": "Orders 2026", "values": ["A-3", 9]}},
        headers=owner,
    )  # fmt: skip
    made = new.json()["result"]
    assert made["created"] is True and made["spreadsheet_url"].endswith("/edit"), new.text
    assert fake.spreadsheets[made["spreadsheet_id"]] == [["A-3", 9]]


async def test_googles_errors_map_to_stable_codes(
    make_api: ApiFactory, google: tuple[FakeGoogle, str]
) -> None:
    fake, url = google
    fake.tokens["ya29.calendar-only-" + "c" * 20] = (CALENDAR,)
    api, owner = await google_api(make_api, url, token="ya29.unknown-" + "u" * 20)
    invalid = await api.client.post("/execute", json=EVENT, headers=owner)
    assert invalid.json()["error"]["code"] == "credential_invalid"

    async def use(token: str) -> None:
        await api.client.put(
            "/vault/credentials/a/google",
            json={"type": "oauth2", "value": {"access_token": token}},
            headers=owner,
        )

    await use("ya29.calendar-only-" + "c" * 20)
    append: dict[str, Any] = {"action": "google_sheets.append_row",
                              "parameters": {"spreadsheet_id": fake.add_spreadsheet(), "values": ["x"]}}  # fmt: skip
    scope = await api.client.post("/execute", json=append, headers=owner)
    assert scope.json()["reason"] == "Missing token or insufficient scope"
    assert scope.json()["error"]["code"] == "insufficient_scope"
    await use(TOKEN)
    missing = {**EVENT, "parameters": {**EVENT["parameters"], "calendar_id": "nobody@example.com"}}
    gone = await api.client.post("/execute", json=missing, headers=owner)
    assert gone.json()["error"]["code"] == "not_found"
    for climb in ({"calendar_id": ".."}, {"calendar_id": "a/../b"}):  # ids, never paths
        up = {**EVENT, "parameters": {**EVENT["parameters"], **climb}}
        refused = await api.client.post("/execute", json=up, headers=owner)
        assert refused.json()["error"]["code"] == "invalid_parameters", climb
    fake.fail_next(1, status=429)
    mission = {"name": "g", "steps": [{"id": "e", "step_type": "google_calendar.create_event",
               "parameters": EVENT["parameters"], "retry": {"attempts": 2, "delay_ms": 10}}]}  # fmt: skip
    done = await api.client.post("/missions/execute?wait=true", json=mission, headers=owner)
    step = done.json()["step_results"]["e"]
    assert step["status"] == "success" and step["attempts"] == 2, step


async def test_a_retried_append_reuses_the_spreadsheet_its_step_created(
    make_api: ApiFactory, google: tuple[FakeGoogle, str]
) -> None:
    fake, url = google
    api, owner = await google_api(make_api, url)
    original = fake.append
    appends: list[str] = []

    def busy_once(*args: Any) -> tuple[int, Any]:
        appends.append(args[1])
        if len(appends) == 1:
            return 503, {
                "error": {"code": 503, "message": "Backend Error", "status": "UNAVAILABLE"}
            }
        return original(*args)

    fake.append = busy_once  # type: ignore[method-assign]
    step = {"id": "s", "step_type": "google_sheets.append_row", "retry": {"attempts": 2, "delay_ms": 10},
            "parameters": {"title": "Orders 2026", "range": "Orders!A1", "values": ["A-9", 1]}}  # fmt: skip
    done = await api.client.post(
        "/missions/execute?wait=true", json={"name": "g", "steps": [step]}, headers=owner
    )
    result = done.json()["step_results"]["s"]
    assert result["status"] == "success" and result["attempts"] == 2, result
    assert len(fake.spreadsheets) == 1 and appends[0] == appends[1]  # one spreadsheet, reused
    made = result["output"]["spreadsheet_id"]
    assert fake.sheet_names[made] == ("Orders",) and fake.spreadsheets[made] == [["A-9", 1]]
