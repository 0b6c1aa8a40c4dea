"""Missions over HTTP, run history, cross-project isolation (SEC-09), metrics and health."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from puraify.testing import RecordingSink, Reply
from tests.api.conftest import Api
from tests.helpers import poll

MISSION = {
    "name": "api-mission",
    "steps": [
        {"id": "a", "step_type": "log_message", "parameters": {"message": "one"}},
        {
            "id": "b",
            "step_type": "noop",
            "depends_on": ["a"],
            "parameters": {"message": "{{ a.output.message }}"},
        },
    ],
}


async def get_run(api: Api, run_id: str) -> Any:
    return (await api.client.get(f"/runs/{run_id}", headers=api.auth())).json()


def finished(run: dict[str, Any]) -> bool:
    return run["status"] != "running"


async def test_mission_202_then_result(api: Api) -> None:
    r = await api.client.post("/missions/execute", headers=api.auth(), json=MISSION)
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    assert r.headers["location"] == f"/runs/{run_id}"
    run = await poll(lambda: get_run(api, run_id), finished, what="the run finished")
    assert run["status"] == "completed"
    assert run["steps"][1]["output"] == {"message": "one"}


async def test_mission_wait_yaml_and_dry_run(api: Api) -> None:
    yaml_body = "name: y\nsteps:\n  - {id: a, step_type: noop, parameters: {message: hi}}\n"
    r = await api.client.post(
        "/missions/execute?wait=true",
        headers={**api.auth(), "Content-Type": "application/yaml"},
        content=yaml_body,
    )
    assert r.status_code == 200 and r.json()["status"] == "completed"
    r = await api.client.post("/missions/execute?dry_run=true", headers=api.auth(), json=MISSION)
    assert r.status_code == 200 and r.json()["levels"] == [["a"], ["b"]]
    bad = await api.client.post(
        "/missions/execute",
        headers={**api.auth(), "Content-Type": "application/yaml"},
        content="steps:\n  - {id: a, step_type: nope}\n",
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_step_type"
    hostile = await api.client.post(
        "/missions/execute",
        headers={**api.auth(), "Content-Type": "application/yaml"},
        content="a: !!python/object/apply:os.system ['id']\n",
    )
    assert hostile.status_code == 422 and hostile.json()["error"]["code"] == "forbidden_tag"
    assert hostile.json()["error"]["line"] == 1


async def test_a_mission_the_safety_analysis_fails_is_refused_before_it_runs(
    api: Api, make_api: Any
) -> None:
    """The spec's order (loader, safety validation, executor): a failing verdict is a 422 with
    the findings, and no run exists; an operator who turns the analysis off gets the runtime
    guards' answer for each step instead."""
    risky = {
        "steps": [
            {
                "id": "meta",
                "step_type": "http",
                "parameters": {"url": "http://169.254.169.254/latest/meta-data/"},
                "continue_on_error": True,
            }
        ]
    }
    r = await api.client.post("/missions/execute?wait=true", headers=api.auth(), json=risky)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "safety_refused"
    assert {f["rule"] for f in error["safety"]["findings"]} >= {"metadata_endpoint"}
    assert error["safety"]["passed"] is False and error["safety"]["level"] == "standard"
    assert (await api.client.get("/runs", headers=api.auth())).json()["runs"] == []
    dry = await api.client.post("/missions/execute?dry_run=true", headers=api.auth(), json=risky)
    assert dry.status_code == 200 and dry.json()["safety"]["passed"] is False

    unguarded = await make_api(safety_level="off")
    r = await unguarded.client.post(
        "/missions/execute?wait=true", headers=unguarded.auth(), json=risky
    )
    assert r.status_code == 200, r.text
    step = r.json()["step_results"]["meta"]
    assert step["status"] == "failed" and step["error"]["code"] == "ssrf_blocked"


async def test_validate_endpoint(api: Api) -> None:
    ok = (await api.client.post("/missions/validate", headers=api.auth(), json=MISSION)).json()
    assert ok["valid"] is True and ok["levels"] == [["a"], ["b"]] and "safety" in ok
    broken = {"steps": [{"id": "a", "step_type": "noop", "depends_on": ["zz"]}]}
    bad = (await api.client.post("/missions/validate", headers=api.auth(), json=broken)).json()
    assert bad["valid"] is False and bad["errors"][0]["code"] == "missing_dependency"


async def test_cross_project_matrix(api: Api) -> None:
    """SEC-09: project B cannot read or change A's runs, by id in the path or in the body."""
    r = await api.client.post("/missions/execute?wait=true", headers=api.auth("a"), json=MISSION)
    run_id = r.json()["run_id"]
    for method, path in [
        ("GET", f"/runs/{run_id}"),
        ("GET", f"/runs/{run_id}/events"),
        ("POST", f"/runs/{run_id}/cancel"),
        ("POST", f"/runs/{run_id}/retry"),
    ]:
        theirs = await api.client.request(method, path, headers=api.auth("b"))
        missing = await api.client.request(
            method, path.replace(run_id, "0" * 32), headers=api.auth("b")
        )
        assert theirs.status_code == missing.status_code == 404, (method, path, theirs.text)
        assert theirs.json()["error"] == missing.json()["error"] | {
            "message": theirs.json()["error"]["message"]
        }
    assert (await api.client.get("/runs", headers=api.auth("b"))).json()["runs"] == []
    body = {"project_id": "a", "action": "log_message", "parameters": {"message": "x"}}
    assert (await api.client.post("/execute", headers=api.auth("b"), json=body)).status_code == 404


async def test_runs_list_filters_and_retry(api: Api, sink: tuple[RecordingSink, str]) -> None:
    receiver, url = sink
    receiver.script("/flaky", Reply(400, {"error": "no"}))
    mission = {
        "name": "retry-me",
        "config": {"fail_fast": False},
        "steps": [
            {"id": "ok", "step_type": "http", "parameters": {"url": f"{url}/ok"}},
            {
                "id": "flaky",
                "step_type": "http",
                "depends_on": ["ok"],
                "parameters": {"url": f"{url}/flaky"},
            },
        ],
    }
    first = (
        await api.client.post("/missions/execute?wait=true", headers=api.auth(), json=mission)
    ).json()
    assert first["status"] == "failed"
    listed = (await api.client.get("/runs?status=failed&mission=retry", headers=api.auth())).json()[
        "runs"
    ]
    assert [r["run_id"] for r in listed] == [first["run_id"]]
    r = await api.client.post(f"/runs/{first['run_id']}/retry", headers=api.auth())
    assert r.status_code == 202
    new_id = r.json()["run_id"]
    run = await poll(lambda: get_run(api, new_id), finished, what="the retry finished")
    assert run["status"] == "completed" and run["parent_run_id"] == first["run_id"]
    assert receiver.count("/ok") == 1 and receiver.count("/flaky") == 2


async def test_cancel_a_running_mission(api: Api, sink: tuple[RecordingSink, str]) -> None:
    receiver, url = sink
    receiver.hang("/slow")
    mission = {"steps": [{"id": "slow", "step_type": "http", "parameters": {"url": f"{url}/slow"}}]}
    run_id = (await api.client.post("/missions/execute", headers=api.auth(), json=mission)).json()[
        "run_id"
    ]
    await poll(lambda: asyncio.sleep(0, receiver.count("/slow")), bool, what="the step in flight")
    r = await api.client.post(f"/runs/{run_id}/cancel", headers=api.auth())
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


async def test_catalogue_metrics_and_health(api: Api) -> None:
    actions = (await api.client.get("/actions", headers=api.auth())).json()
    assert {"http", "log_message"} <= {a["name"] for a in actions}
    one = (await api.client.get("/actions/call_webhook", headers=api.auth())).json()
    assert one["name"] == "webhook.call" and one["delivery"] == "keyed"
    assert (await api.client.get("/actions/nope", headers=api.auth())).status_code == 404
    await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "log_message", "parameters": {"message": "m"}},
    )
    text = (await api.client.get("/metrics", headers=api.auth())).text
    assert 'puraify_http_requests_total{method="POST",route="/execute",status="200"}' in text
    assert 'puraify_action_outcomes_total{action="log_message"' in text
    assert "puraify_step_seconds_bucket" in text and "puraify_runs_in_flight" in text
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ready"}


async def test_dev_login_only_in_dev_mode(make_api) -> None:  # type: ignore[no-untyped-def]
    api = await make_api()
    assert (await api.client.post("/login", json={"project_id": "p"})).status_code == 401
    dev = await make_api(dev_mode=True)
    token = (
        await dev.client.post("/login", json={"project_id": "p", "scopes": ["execute"]})
    ).json()["token"]
    r = await dev.client.post(
        "/execute",
        headers={"Authorization": f"Bearer {token}"},
        json={"action": "log_message", "parameters": {"message": "x"}},
    )
    assert r.status_code == 200
    refused = await dev.client.post("/login", json={"project_id": "p", "scopes": ["admin"]})
    assert refused.status_code == 403


@pytest.mark.parametrize("header", ["", "Bearer", "Basic abc", "Bearer pfy_x_y"])
async def test_sec09_every_route_needs_credentials(api: Api, header: str) -> None:
    """Every route in the app's own table answers 401 without valid credentials (health excepted),
    so a new route cannot be forgotten."""
    # The API description is public on purpose (it holds no data): it and health are the only
    # routes without credentials.
    open_routes = {
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
    checked = 0
    for path, methods in _route_table(api.app):
        if path in open_routes:
            continue
        concrete = path.replace("{run_id}", "0" * 32).replace("{name}", "http")
        for method in methods - {"HEAD"}:
            headers = {"Authorization": header} if header else {}
            r = await api.client.request(method, concrete, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            checked += 1
    assert checked >= 12


def _route_table(app: object) -> list[tuple[str, set[str]]]:
    """Every (path, methods) the app serves, walking included routers."""
    found: list[tuple[str, set[str]]] = []

    def walk(routes: list[object]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(list(inner.routes))
            elif hasattr(route, "path") and getattr(route, "methods", None):
                found.append((route.path, set(route.methods)))  # type: ignore[attr-defined]

    walk(list(app.routes))  # type: ignore[attr-defined]
    assert {p for p, _ in found} >= set(app.openapi()["paths"])  # type: ignore[attr-defined]
    return found


async def test_one_time_format_and_run_id_everywhere(api: Api) -> None:
    """RFC 3339 in UTC with a Z in every answer; rows of the history say run_id."""
    import re

    rfc3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
    done = await api.client.post("/missions/execute?wait=true", headers=api.auth(), json=MISSION)
    run = done.json()
    listed = (await api.client.get("/runs", headers=api.auth())).json()["runs"]
    one = (await api.client.get(f"/runs/{run['run_id']}", headers=api.auth())).json()
    action = await api.client.post(
        "/execute",
        headers=api.auth(),
        json={"action": "log_message", "parameters": {"message": "x"}},
    )
    stamps = [
        run["started_at"],
        run["finished_at"],
        listed[0]["created_at"],
        listed[0]["finished_at"],
        one["started_at"],
        one["steps"][0]["finished_at"],
        action.json()["timestamp"],
    ]
    assert all(rfc3339.match(s) for s in stamps), stamps
    assert listed[0]["run_id"] == run["run_id"] and "id" not in listed[0]
    for result in (run, one):  # the spec's MissionResult fields at every edge
        assert list(result["step_results"]) == ["a", "b"]
        assert result["step_results"]["b"]["output"] == {"message": "one"}
        assert result["total_duration_ms"] == result["duration_ms"]
        assert rfc3339.match(result["timestamp"])


async def test_a_server_never_runs_a_local_profile_run_again(api: Api) -> None:
    """A run created in the local profile (the operator's own) keeps it; a server asked to
    retry it refuses instead of lending those powers to a token holder."""
    import os
    from pathlib import Path

    from puraify.mission.loader import mission_from_data
    from puraify.service import compose

    settings = api.app.state.application.settings.model_copy(update={"mode": "local"})
    async with compose(settings, listen=None, environ=dict(os.environ), cwd=Path.cwd()) as local:
        failing = mission_from_data(
            {"steps": [{"id": "r", "step_type": "read_file", "parameters": {"path": "nope"}}]}
        )
        run_id, _ = await local.runs.submit(
            local.preparer.validate(failing).compiled, project_id="a", context={}
        )
        assert (await local.runs.wait(run_id)) is not None
    r = await api.client.post(f"/runs/{run_id}/retry", headers=api.auth())
    assert r.status_code == 403 and r.json()["error"]["code"] == "profile_refused", r.text


@pytest.mark.parametrize(
    ("body", "ctype", "code"),
    [
        (b"[" * 300_000, "application/json", "document_too_deep"),
        (b'{"mission": ' + b"[" * 300_000, "application/json", "document_too_deep"),
        (b'{"a":' * 100_000, "application/json", "document_too_deep"),
        (
            b'{"mission": {"steps": [{"id": "a", "step_type": "noop"}], '
            b'"steps": [{"id": "b", "step_type": "noop"}]}}',
            "application/json",
            "duplicate_key",
        ),
        (
            b'{"mission": {"steps": [{"id": "a", "step_type": "noop"}]}, "context": "abc"}',
            "application/json",
            "invalid_request",
        ),
        (
            b'{"mission": {"steps": [{"id": "a", "step_type": "noop"}]}, "context": [1, 2]}',
            "application/json",
            "invalid_request",
        ),
        ("name: café\nsteps: []\n".encode("latin-1"), "application/yaml", "invalid_encoding"),
        (
            '{"name": "café", "steps": []}'.encode("latin-1"),
            "application/json",
            "invalid_encoding",
        ),
        (
            b'{"steps": [{"id": "a", "step_type": "noop", "timeout_seconds": NaN}]}',
            "application/json",
            "invalid_number",
        ),
        (
            b'{"steps": [{"id": "a", "step_type": "noop", "timeout_seconds": 1e999}]}',
            "application/json",
            "number_too_large",
        ),
        (
            b"steps:\n  - {id: a, step_type: noop, timeout_seconds: .nan}\n",
            "application/yaml",
            "invalid_number",
        ),
        (
            b'{"name": "x\\u0000y", "steps": [{"id": "a", "step_type": "noop"}]}',
            "application/json",
            "invalid_encoding",
        ),
        (
            b'{"steps": [{"id": "a\\ud800", "step_type": "noop"}]}',
            "application/json",
            "invalid_encoding",
        ),
        (b'steps:\n  - {id: "a\\0", step_type: noop}\n', "application/yaml", "invalid_encoding"),
    ],
)
async def test_sec06_hostile_mission_bodies_get_a_structured_error(
    api: Api, body: bytes, ctype: str, code: str
) -> None:
    """SEC-06 at the API: every mission body is parsed once, by the mission parser and under
    its limits, whether it wraps its mission or not; never a 500, and nothing runs."""
    for route in ("/missions/execute", "/missions/validate"):
        r = await api.client.post(
            route, headers={**api.auth(), "Content-Type": ctype}, content=body
        )
        assert r.status_code in (200, 400, 422), (route, r.status_code, r.text[:300])
        error = r.json()["error"] if r.status_code != 200 else r.json()["errors"][0]
        assert error["code"] == code, (route, r.text[:300])
    assert (await api.client.get("/runs", headers=api.auth())).json()["runs"] == []


async def test_a_mission_without_a_content_type_is_told_apart_by_its_content(api: Api) -> None:
    yaml_body = b"steps:\n  - {id: a, step_type: noop, parameters: {message: hi}}\n"
    json_body = b'{"steps": [{"id": "a", "step_type": "noop"}]}'
    for body in (yaml_body, json_body):
        r = await api.client.post("/missions/execute?wait=true", headers=api.auth(), content=body)
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
