"""Every action that speaks a platform's HTTP API, against its fake over real HTTP on loopback:
success, a missing credential, a refused credential, rate limited then success, 5xx with
retries, bad parameters refused at validation, and a timeout. (SMTP, the databases and Redis,
which are not HTTP: test_platform_email.py, test_platform_database.py, test_platform_redis.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from puraify.testing import FakeGoogle, FakeNotion, FakeSlack, FakeZapier, LocalServer
from puraify.testing.fakes.faults import Faults
from puraify.testing.fakes.google import CALENDAR, GMAIL_SEND, SHEETS
from tests.api.conftest import Api, ApiFactory

SLACK = "xoxb-3333-4444-" + "m" * 24
NOTION = "secret_matrix_" + "n" * 30
GOOGLE = "ya29.matrix-" + "g" * 30


@dataclass
class Case:
    action: str
    fake: Callable[[], Faults]
    #: settings naming where the fake is, from its URL
    where: Callable[[str], dict[str, Any]]
    params: Callable[[Any], dict[str, Any]]
    #: what validation refuses
    bad: dict[str, Any]
    #: how many effects the fake recorded
    landed: Callable[[Any], int]
    #: the vault entry the action uses, and one the platform refuses (None: no credential)
    credential: tuple[str, dict[str, Any]] | None = None
    refused: dict[str, Any] = field(default_factory=dict)


CASES = {
    "slack": Case(
        "slack.send_message",
        lambda: FakeSlack({SLACK: ("chat:write",)}),
        lambda url: {"slack_base_url": f"{url}/api"},
        lambda fake: {"channel": "#general", "text": "hi"},
        {"channel": "#general", "text": None},
        lambda fake: len(fake.messages),
        ("slack", {"type": "token", "value": SLACK}),
        {"type": "token", "value": "xoxb-revoked-" + "r" * 20},
    ),
    "notion": Case(
        "notion.create_task",
        lambda: FakeNotion({NOTION}),
        lambda url: {"notion_base_url": url},
        lambda fake: {"database_id": fake.add_database(), "title": "Ship it", "status": "Todo"},
        {"title": "no database"},
        lambda fake: len(fake.pages),
        ("notion", {"type": "token", "value": NOTION}),
        {"type": "token", "value": "secret_revoked_" + "r" * 30},
    ),
    "calendar": Case(
        "google_calendar.create_event",
        lambda: FakeGoogle({GOOGLE: (CALENDAR,)}),
        lambda url: {"google_calendar_base_url": url},
        lambda fake: {"title": "Review", "start": "2026-12-24", "end": "2026-12-25"},
        {"title": "Review", "start": "2026-12-24"},
        lambda fake: len(fake.events),
        ("google", {"type": "oauth2", "value": {"access_token": GOOGLE}}),
        {"type": "oauth2", "value": {"access_token": "ya29.revoked-" + "r" * 20}},
    ),
    "sheets": Case(
        "google_sheets.append_row",
        lambda: FakeGoogle({GOOGLE: (SHEETS,)}),
        lambda url: {"google_sheets_base_url": url},
        lambda fake: {"spreadsheet_id": fake.add_spreadsheet(), "values": ["A-1", 42]},
        {"spreadsheet_id": "abc", "values": []},
        lambda fake: len(fake.rows),
        ("google", {"type": "oauth2", "value": {"access_token": GOOGLE}}),
        {"type": "oauth2", "value": {"access_token": "ya29.revoked-" + "r" * 20}},
    ),
    "gmail": Case(
        "email.send_email",
        lambda: FakeGoogle({GOOGLE: GMAIL_SEND[:1]}),
        lambda url: {"gmail_base_url": url},
        lambda fake: {"to": "ops@example.com", "subject": "Nightly", "body": "Done."},
        {"to": "ops@example.com"},
        lambda fake: len(fake.mails),
        ("gmail", {"type": "oauth2", "value": {"access_token": GOOGLE}}),
        {"type": "oauth2", "value": {"access_token": "ya29.revoked-" + "r" * 20}},
    ),
    "zapier": Case(
        "zapier.trigger_zap",
        FakeZapier,
        lambda url: {"zapier_base_url": url},
        lambda fake: {"hook": "123456/abcdef", "payload": {"order": 42}},
        {"payload": {"order": 42}},
        lambda fake: len(fake.caught),
    ),
}


def serve(name: str) -> Iterator[tuple[Case, Any, str]]:
    chosen = CASES[name]
    fake = chosen.fake()
    with LocalServer(fake) as server:  # type: ignore[arg-type]
        yield chosen, fake, server.url


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[Case, Any, str]]:
    yield from serve(request.param)


@pytest.fixture(params=sorted(n for n, c in CASES.items() if c.credential is not None))
def credentialed(request: pytest.FixtureRequest) -> Iterator[tuple[Case, Any, str]]:
    """The cases whose action takes a credential (Zapier's hook URL is its own secret)."""
    yield from serve(request.param)


async def setup(
    make_api: ApiFactory, case: Case, url: str, *, stored: bool = True
) -> tuple[Api, dict[str, str]]:
    api: Api = await make_api(
        ssrf_allow_hosts=(), platform_rate_limits={}, **case.where(url)
    )  # the base URL's host is allowed because the operator set it
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
    if stored and case.credential is not None:
        platform, value = case.credential
        put = await api.client.put(f"/vault/credentials/a/{platform}", json=value, headers=owner)
        assert put.status_code < 300, put.text
    return api, owner


def mission(case: Case, params: dict[str, Any], **step: Any) -> dict[str, Any]:
    return {"name": "matrix", "steps": [{"id": "call", "step_type": case.action,
                                         "parameters": params, **step}]}  # fmt: skip


RETRIED = {"attempts": 3, "delay_ms": 10}


async def test_success(make_api: ApiFactory, case: tuple[Case, Any, str]) -> None:
    chosen, fake, url = case
    api, owner = await setup(make_api, chosen, url)
    done = await api.client.post(
        "/execute", json={"action": chosen.action, "parameters": chosen.params(fake)},
        headers=owner,
    )  # fmt: skip
    assert done.status_code == 200 and done.json()["status"] == "success", done.text
    assert chosen.landed(fake) == 1


async def test_missing_credential(
    make_api: ApiFactory, credentialed: tuple[Case, Any, str]
) -> None:
    chosen, fake, url = credentialed
    api, owner = await setup(make_api, chosen, url, stored=False)
    done = await api.client.post(
        "/execute", json={"action": chosen.action, "parameters": chosen.params(fake)},
        headers=owner,
    )  # fmt: skip
    assert done.status_code == 403, done.text
    assert done.json()["reason"] == "Missing token or insufficient scope"
    assert done.json()["error"]["code"] == "credential_missing"
    assert chosen.landed(fake) == 0


async def test_refused_credential(
    make_api: ApiFactory, credentialed: tuple[Case, Any, str]
) -> None:
    chosen, fake, url = credentialed
    assert chosen.credential is not None
    api, owner = await setup(make_api, chosen, url, stored=False)
    platform = chosen.credential[0]
    await api.client.put(f"/vault/credentials/a/{platform}", json=chosen.refused, headers=owner)
    done = await api.client.post(
        "/execute", json={"action": chosen.action, "parameters": chosen.params(fake)},
        headers=owner,
    )  # fmt: skip
    assert done.json()["error"]["code"] == "credential_invalid", done.text
    assert done.json()["error"]["retryable"] is False
    assert chosen.landed(fake) == 0


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [("rate_limit", 2), ("server_error", 3)],
    ids=["rate-limited-then-success", "5xx-retried"],
)
async def test_platform_faults_are_retried(
    make_api: ApiFactory, case: tuple[Case, Any, str], fault: str, attempts: int
) -> None:
    chosen, fake, url = case
    api, owner = await setup(make_api, chosen, url)
    if fault == "rate_limit":
        fake.rate_limit_next(1, retry_after=0.2)
    else:
        fake.fail_next(2, status=503)
    done = await api.client.post(
        "/missions/execute?wait=true",
        json=mission(chosen, chosen.params(fake), retry=RETRIED),
        headers=owner,
    )
    step = done.json()["step_results"]["call"]
    assert step["status"] == "success" and step["attempts"] == attempts, step
    assert chosen.landed(fake) == 1


async def test_bad_parameters_are_refused_at_validation(
    make_api: ApiFactory, case: tuple[Case, Any, str]
) -> None:
    chosen, fake, url = case
    api, owner = await setup(make_api, chosen, url)
    checked = await api.client.post(
        "/missions/validate", json=mission(chosen, chosen.bad), headers=owner
    )
    assert checked.json()["valid"] is False, checked.text
    refused = await api.client.post(
        "/execute", json={"action": chosen.action, "parameters": chosen.bad}, headers=owner
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_parameters"
    assert chosen.landed(fake) == 0


async def test_a_platform_that_never_answers_is_a_timeout(
    make_api: ApiFactory, case: tuple[Case, Any, str]
) -> None:
    chosen, fake, url = case
    api, owner = await setup(make_api, chosen, url)
    fake.hang_next()
    done = await api.client.post(
        "/missions/execute?wait=true",
        json=mission(chosen, {**chosen.params(fake), "timeout": 0.3}),
        headers=owner,
    )
    error = done.json()["step_results"]["call"]["error"]
    assert error["code"] == "timeout" and error["retryable"] is True, error
