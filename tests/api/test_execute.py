"""Single actions: every seed request shape, the envelope, statuses, idempotency."""

from __future__ import annotations

import pytest

from puraify.testing import RecordingSink, Reply
from tests.api.conftest import Api

ENVELOPE = {
    "status",
    "request_id",
    "run_id",
    "platform",
    "action",
    "timestamp",
    "duration_ms",
    "result",
}


async def test_execution_engine_spec_shape(api: Api) -> None:
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={
            "project_id": "a",
            "user_id": "u1",
            "action": "log_message",
            "platform": "internal",
            "parameters": {"message": "hello {{ user.id }}"},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= ENVELOPE
    assert body["status"] == "success" and body["action"] == "log_message"
    assert body["result"] == {"message": "hello u1", "level": "info"}
    assert body["request_id"] == r.headers["x-request-id"]


async def test_flow_shape_with_user_context(api: Api, sink: tuple[RecordingSink, str]) -> None:
    receiver, url = sink
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={
            "project_id": "a",
            "flow_id": "f-7",
            "action": {
                "type": "call_webhook",
                "platform": "webhook",
                "payload": {
                    "url": f"{url}/hook",
                    "method": "POST",
                    "body": {"who": "{{ user.name }}"},
                },
            },
            "user_context": {"role": "admin", "auth_scope": "write", "name": "Ada"},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["status"] == 200
    assert receiver.requests[0].json() == {"who": "Ada"}


async def test_readme_shape(api: Api) -> None:
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={
            "action": "log_message",
            "project": "a",
            "params": {"message": "x"},
        },
    )
    assert r.status_code == 200 and r.json()["result"]["message"] == "x"


async def test_perform_action_shape(api: Api) -> None:
    r = await api.client.post(
        "/perform_action",
        headers=api.auth(),
        json={
            "user_id": "u",
            "platform": "internal",
            "action_type": "log_message",
            "payload": {"message": "m"},
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and body["action_type"] == "log_message"
    assert body["result"]["message"] == "m"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"action": "send_fax", "platform": "fax", "parameters": {}}, 404, "unknown_action"),
        ({"action": "http_request", "parameters": {"method": "GET"}}, 422, "invalid_parameters"),
        ({"action": "log_message"}, 422, "invalid_parameters"),
        ({"parameters": {}}, 400, "invalid_request"),
        (
            {"action": "log_message", "project_id": "b", "parameters": {"message": "x"}},
            404,
            "not_found",
        ),
        (
            {"action": "http_request", "parameters": {"url": "http://169.254.169.254/"}},
            403,
            "ssrf_blocked",
        ),
    ],
)
async def test_errors_map_to_statuses(
    api: Api, payload: dict[str, object], status: int, code: str
) -> None:
    r = await api.client.post("/execute", headers=api.auth(), json=payload)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == "fail" and body["error"]["code"] == code
    assert body["reason"] and "Traceback" not in r.text


async def test_platform_failure_is_502_with_retryable(
    api: Api, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/down", Reply(500, {"error": "boom"}))
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "http_request", "parameters": {"url": f"{url}/down"}},
    )
    assert r.status_code == 502
    assert r.json()["error"] == {"code": "http_error", "retryable": True, "status": 500}


async def test_auth_required_and_scopes(api: Api) -> None:
    body = {"action": "log_message", "parameters": {"message": "x"}}
    assert (await api.client.post("/execute", json=body)).status_code == 401
    bad = {"Authorization": "Bearer pfy_nope_nope"}
    r = await api.client.post("/execute", json=body, headers=bad)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    reader = await api.token("a", "runs:read")
    r = await api.client.post("/execute", json=body, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


async def test_idempotency_key(api: Api) -> None:
    body = {"action": "log_message", "parameters": {"message": "once"}}
    headers = {**api.auth(), "Idempotency-Key": "order-42"}
    first = await api.client.post("/execute", json=body, headers=headers)
    second = await api.client.post("/execute", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["run_id"] == second.json()["run_id"]
    other = await api.client.post(
        "/execute", json={**body, "parameters": {"message": "twice"}}, headers=headers
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_conflict"
    runs = (await api.client.get("/runs", headers=api.auth())).json()["runs"]
    assert len(runs) == 1


async def test_idempotency_key_covers_method_path_and_query(api: Api) -> None:
    """A dry run's answer is never replayed for the real call under the same key."""
    mission = {"steps": [{"id": "a", "step_type": "noop", "parameters": {"message": "m"}}]}
    headers = {**api.auth(), "Idempotency-Key": "mission-7"}
    dry = await api.client.post("/missions/execute?dry_run=true", json=mission, headers=headers)
    assert dry.status_code == 200 and "levels" in dry.json()
    real = await api.client.post("/missions/execute?wait=true", json=mission, headers=headers)
    assert real.status_code == 409 and real.json()["error"]["code"] == "idempotency_conflict"
    # the same query in another order is the same request
    fresh = {**api.auth(), "Idempotency-Key": "mission-8"}
    one = await api.client.post("/missions/execute?a=1&dry_run=true", json=mission, headers=fresh)
    two = await api.client.post("/missions/execute?dry_run=true&a=1", json=mission, headers=fresh)
    assert one.status_code == two.status_code == 200 and one.json() == two.json()


async def test_body_limit(make_api) -> None:  # type: ignore[no-untyped-def]
    api = await make_api(max_body_bytes=1000)
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "log_message", "parameters": {"message": "x" * 5000}},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


async def test_request_id_is_echoed(api: Api) -> None:
    r = await api.client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


async def test_idempotency_key_is_freed_when_the_call_fails(api: Api) -> None:
    headers = {**api.auth(), "Idempotency-Key": "retry-missing"}
    for _ in range(2):  # the second call must not wait on a record the first one left behind
        r = await api.client.post(f"/runs/{'0' * 32}/retry", headers=headers)
        assert r.status_code == 404


async def test_an_action_whose_answer_json_cannot_hold_is_answered_not_a_500(
    api: Api, sink: tuple[RecordingSink, str]
) -> None:
    """F: NaN, infinities, NUL and lone surrogates in a platform's answer: /execute reports
    the action as run (200, the documented replacements), and the run reads back, for ever."""
    from tests.store.test_run_store import CLEANED, HOSTILE_BODY

    receiver, url = sink
    receiver.script("/weird", Reply(200, HOSTILE_BODY))
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={
            "action": "http_request",
            "parameters": {"url": f"{url}/weird", "response_format": "json"},
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["result"]["body"] == CLEANED
    run = await api.client.get(f"/runs/{r.json()['run_id']}", headers=api.auth())
    assert run.status_code == 200 and run.json()["steps"][0]["output"]["body"] == CLEANED


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"action": "noop", "parameters": ' + b"[" * 300_000, "document_too_deep"),
        (b'{"action": "noop", "parameters": {"a": NaN}}', "invalid_number"),
        (b'{"action": "noop", "parameters": {"a": 1e999}}', "number_too_large"),
        (b'{"action": "noop", "action": "log_message"}', "duplicate_key"),
        (
            '{"action": "log_message", "parameters": {"message": "café"}}'.encode("latin-1"),
            "invalid_encoding",
        ),
        (b'{"action": "log_message", "parameters": {"message": "a\\u0000b"}}', "invalid_encoding"),
        (b"[1, 2]", "invalid_request"),
        (b"", "json_syntax"),
    ],
)
@pytest.mark.parametrize("route", ["/execute", "/perform_action"])
async def test_sec06_hostile_action_bodies_get_a_structured_error(
    api: Api, route: str, body: bytes, code: str
) -> None:
    r = await api.client.post(
        route, headers={**api.auth(), "Content-Type": "application/json"}, content=body
    )
    assert r.status_code in (400, 422), r.text[:300]
    assert r.json()["error"]["code"] == code, r.text[:300]
    assert (await api.client.get("/runs", headers=api.auth())).json()["runs"] == []


@pytest.mark.parametrize("depth", [130, 256, 300, 5_000, 100_000])
async def test_a_deeply_nested_answer_is_stored_and_served(
    api: Api, sink: tuple[RecordingSink, str], depth: int
) -> None:
    """F: a platform's answer nested past what serializers take: the action reports it ran,
    and the run reads back (the nesting past 128 levels is replaced, or the body kept as text
    when no JSON parser could read it)."""
    receiver, url = sink
    body = b"[" * depth + b"]" * depth
    receiver.script("/deep", Reply(200, body, {"Content-Type": "application/json"}))
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "http_request", "parameters": {"url": f"{url}/deep"}},
    )
    assert r.status_code == 200, r.text[:300]
    run = await api.client.get(f"/runs/{r.json()['run_id']}", headers=api.auth())
    assert run.status_code == 200, run.text[:300]
    assert run.json()["status"] == "completed"


async def test_a_repeat_that_takes_over_a_dead_requests_key_continues_its_run(
    api: Api, sink: tuple[RecordingSink, str]
) -> None:
    """F: the first request died after its run was committed (the process went away: its key
    stays pending, its run unfinished). The repeat takes the key over and continues that run,
    so the platform sees one delivery key, never two runs."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from puraify.store.tables import idempotency_records, runs

    receiver, url = sink
    body = {"action": "http", "parameters": {"url": f"{url}/pay", "method": "POST"}}
    headers = {**api.auth(), "Idempotency-Key": "order-99"}
    first = await api.client.post("/execute", json=body, headers=headers)
    assert first.status_code == 200
    run_id = first.json()["run_id"]
    # what a crash leaves: the key pending with its lease run out, the run's engine gone
    db = api.app.state.application.db
    past = datetime.now(UTC) - timedelta(minutes=5)
    async with db.engine.begin() as conn:
        await conn.execute(
            update(idempotency_records).values(status_code=None, response=None, lease_until=past)
        )
        await conn.execute(update(runs).where(runs.c.id == run_id).values(status="running"))
    again = await api.client.post("/execute", json=body, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["run_id"] == run_id  # the same run, not a second one
    keys = {r.headers["idempotency-key"] for r in receiver.requests}
    assert keys == {f"{run_id}:action"}
    listed = (await api.client.get("/runs", headers=api.auth())).json()["runs"]
    assert [r["run_id"] for r in listed] == [run_id]


async def test_the_key_reads_the_query_as_the_route_does(api: Api) -> None:
    """F: `?dry_run=false&dry_run=true` and `?dry_run=true&dry_run=false` mean different calls
    (the last value counts), so one's answer is never replayed for the other."""
    mission = {"steps": [{"id": "a", "step_type": "noop"}]}
    headers = {**api.auth(), "Idempotency-Key": "q-1"}
    real = await api.client.post(
        "/missions/execute?dry_run=true&dry_run=false", json=mission, headers=headers
    )
    assert real.status_code == 202
    dry = await api.client.post(
        "/missions/execute?dry_run=false&dry_run=true", json=mission, headers=headers
    )
    assert dry.status_code == 409
    empty = await api.client.post(
        "/execute",
        json={"action": "noop", "parameters": {}},
        headers={**api.auth(), "Idempotency-Key": "  "},
    )
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_idempotency_key"
