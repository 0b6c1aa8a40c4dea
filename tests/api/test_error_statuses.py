"""Errors answer the status their code is registered with, in the structured envelope."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api

LOG = {"action": "log_message", "parameters": {"message": "x"}}


async def test_an_over_long_idempotency_key_is_a_400_not_a_500(api: Api) -> None:
    headers = {**api.auth(), "Idempotency-Key": "k" * 201}
    r = await api.client.post("/execute", json=LOG, headers=headers)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["status"] == "fail" and body["request_id"] == r.headers["x-request-id"]
    assert body["reason"].startswith("Idempotency-Key is longer than 200 characters")
    assert body["error"]["code"] == "invalid_idempotency_key"
    assert body["error"]["retryable"] is False and "Traceback" not in r.text
    retry = await api.client.post(f"/runs/{'0' * 32}/retry", headers=headers)
    assert retry.status_code == 400 and retry.json()["error"]["code"] == "invalid_idempotency_key"
    assert (await api.client.get("/runs", headers=api.auth())).json()["runs"] == []


async def test_a_key_of_the_longest_length_is_accepted(api: Api) -> None:
    headers = {**api.auth(), "Idempotency-Key": "k" * 200}
    first = await api.client.post("/execute", json=LOG, headers=headers)
    again = await api.client.post("/execute", json=LOG, headers=headers)
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["run_id"] == again.json()["run_id"]


async def test_a_steps_code_answers_its_registered_status(api: Api) -> None:
    r = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "read_file", "parameters": {"path": "missing.txt"}},
    )
    assert r.status_code == 404, r.text
    assert r.json()["error"] == {"code": "file_not_found", "retryable": False}


async def test_hostile_inputs_are_the_callers_mistake_not_a_500(api: Api) -> None:
    """Inputs an attacker tried: each answers a 4xx with a code, never 500."""
    ok = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "create_file", "parameters": {"path": "f.txt", "content": "x"}},
    )
    assert ok.status_code == 200, ok.text
    cases = [
        ("/execute", {"action": "create_file", "parameters": {"path": "f.txt/x", "content": "x"}}),
        ("/execute", {"action": "create_file", "parameters": {"path": "a" * 300, "content": "x"}}),
        ("/execute", {"action": "http", "parameters": {"url": "http://\u0000/"}}),
        (
            "/missions/execute",
            {"mission": {"steps": [{"id": "a", "step_type": "noop"}]}, "context": [1]},
        ),
    ]
    for path, body in cases:
        r = await api.client.post(path, headers=api.auth(), json=body)
        assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
        assert r.json()["error"]["code"] != "internal_error"
    checked = await api.client.post(
        "/missions/validate",
        headers=api.auth(),
        json={"mission": {"steps": [{"id": "a", "step_type": "noop"}]}, "context": "x"},
    )
    assert checked.json()["errors"][0]["code"] == "invalid_request", checked.text
    yaml_body = "steps:\n  - {id: a, step_type: log_message, parameters: {message: !!bool maybe}}\n"
    r = await api.client.post(
        "/missions/execute",
        headers={**api.auth(), "content-type": "application/yaml"},
        content=yaml_body,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "yaml_syntax", r.text


async def test_a_full_disk_is_a_503_with_a_reason_and_readyz_says_not_ready(
    make_api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """F: a store that cannot write (disk full) is answered honestly: 503 store_unavailable on
    the calls that write, and /readyz is not ready while the disk is nearly full."""
    import sqlite3

    import httpx
    from sqlalchemy.exc import OperationalError

    from puraify.store import RunStore

    api = await make_api()
    assert (await api.client.get("/readyz")).status_code == 200

    async def full(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", None, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(RunStore, "create_run", full)
    transport = httpx.ASGITransport(app=api.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for route, body in (
            ("/execute", {"action": "noop", "parameters": {}}),
            ("/missions/execute", {"steps": [{"id": "a", "step_type": "noop"}]}),
        ):
            r = await client.post(route, headers=api.auth(), json=body)
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["code"] == "store_unavailable" and "try again later" in error["message"]
            assert "disk is full" not in r.text  # the driver's text stays in the log

    nearly_full = await make_api(ready_min_free_bytes=1 << 60)  # more than any disk has
    r = await nearly_full.client.get("/readyz")
    assert r.status_code == 503 and "run store" in r.json()["reason"]
