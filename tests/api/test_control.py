"""Engine Control's routes: the original service's client expectations, every route, bad keys,
revoked engines, one engine's key with another's id, admin-only changes, the audit log."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from puraify.control.service import ControlService
from tests.api.conftest import Api, ApiFactory


async def bootstrap(api: Api) -> dict[str, str]:
    """The admin engine's headers (``puraify init``'s work)."""
    control: ControlService = api.app.state.application.control
    done = await control.bootstrap(admin_id="admin", execution_id="puraify-execution")
    assert done.admin_key is not None
    return {"X-Engine-ID": "admin", "X-Engine-Key": done.admin_key}


async def register(api: Api, admin: dict[str, str], engine_id: str, permissions: Any) -> str:
    answer = await api.client.post(
        "/engines/register",
        json={"engine_id": engine_id, "permissions": permissions},
        headers=admin,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["engine_id"] == engine_id
    return str(answer.json()["engine_key"])


def headers(engine_id: str, key: str) -> dict[str, str]:
    return {"X-Engine-ID": engine_id, "X-Engine-Key": key}


async def test_the_original_clients_expectations_hold(api: Api) -> None:
    admin = await bootstrap(api)
    key = await register(api, admin, "mailer", {"gmail": {"send_email": ["mail.send"]}})
    me = headers("mailer", key)
    assert (await api.client.post("/engines/validate", headers=me)).json()["valid"] is True
    check = {"engine_id": "mailer", "platform": "gmail", "action_type": "send_email"}
    answer = (await api.client.post("/actions/check", json=check, headers=me)).json()
    assert answer["allowed"] is True
    assert answer["required_scopes"] == [] and answer["platform_status"] == "active"
    assert isinstance(answer["reason"], str)
    # an unregistered engine (asked by the admin), and a platform in maintenance: not allowed
    other = {"engine_id": "ghost", "platform": "gmail", "action_type": "send_email"}
    answer = (await api.client.post("/actions/check", json=other, headers=admin)).json()
    assert answer["allowed"] is False and answer["reason"] == "engine_unknown"
    for platform, status in (("gmail", "active"), ("slack", "maintenance")):
        done = await api.client.put(
            f"/platforms/{platform}", json={"status": status}, headers=admin
        )
        assert done.status_code == 200, done.text
    await register(api, admin, "poster", {"slack": {"*": []}})
    slack = {"engine_id": "poster", "platform": "slack", "action_type": "send_message"}
    answer = (await api.client.post("/actions/check", json=slack, headers=admin)).json()
    assert answer["allowed"] is False and answer["platform_status"] == "maintenance"
    assert answer["reason"] == "platform_maintenance"
    listed = await api.client.get("/platforms/list", headers=me)
    assert listed.json() == {"platforms": {"gmail": "active", "slack": "maintenance"}}
    detail = (await api.client.get("/platforms/list?detail=true", headers=me)).json()
    assert detail["platforms"]["slack"]["status"] == "maintenance"
    assert set(detail["platforms"]["slack"]) >= {"status", "version", "message"}
    config = (await api.client.get("/config/global", headers=me)).json()
    assert set(config) >= {"api_version", "feature_flags"}
    assert config["feature_flags"]["command"] is False  # the server profile's default
    logged = await api.client.post(
        "/log/engine_event", json={"platform": "gmail", "event": "sent", "n": 1}, headers=me
    )
    assert logged.json() == {"status": "logged"}


@pytest.mark.parametrize(
    "route",
    [
        ("POST", "/engines/validate"),
        ("POST", "/actions/check"),
        ("GET", "/platforms/list"),
        ("GET", "/config/global"),
        ("POST", "/log/engine_event"),
        ("GET", "/log/engine_events"),
        ("POST", "/engines/register"),
        ("GET", "/engines"),
        ("POST", "/engines/x/revoke"),
        ("POST", "/engines/x/rotate-key"),
        ("PUT", "/engines/x/permissions"),
        ("POST", "/engines/x/grant"),
        ("PUT", "/platforms/slack"),
        ("PUT", "/flags/command"),
    ],
)
async def test_every_route_needs_a_valid_engine(api: Api, route: tuple[str, str]) -> None:
    admin = await bootstrap(api)
    key = await register(api, admin, "one", {})
    await register(api, admin, "two", {})
    method, path = route
    wrong = [
        {},  # no headers
        {"X-Engine-ID": "one"},  # no key
        headers("one", "pek_0_nope"),  # a wrong key
        headers("two", key),  # one engine's key with another's id
        headers("ghost", key),  # an unknown id
        headers("one", "not-a-key"),
    ]
    for sent in wrong:
        answer = await api.client.request(method, path, json={}, headers=sent)
        assert answer.status_code == 401, (sent, answer.text)
        assert answer.json()["error"]["code"] == "unauthenticated"
        assert key not in answer.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/engines/register", {"engine_id": "z", "permissions": {}}),
        ("GET", "/engines", None),
        ("POST", "/engines/two/revoke", None),
        ("POST", "/engines/two/rotate-key", None),
        ("PUT", "/engines/two/permissions", {"permissions": {"*": {"*": []}}}),
        ("POST", "/engines/two/grant", {"platform": "slack", "action_type": "*"}),
        ("PUT", "/platforms/slack", {"status": "maintenance"}),
        ("PUT", "/flags/command", {"enabled": True}),
    ],
)
async def test_changes_need_control_admin(
    api: Api, method: str, path: str, body: dict[str, Any] | None
) -> None:
    admin = await bootstrap(api)
    key = await register(api, admin, "one", {"*": {"*": ["*"]}})  # everything but control
    await register(api, admin, "two", {})
    answer = await api.client.request(method, path, json=body, headers=headers("one", key))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
    admin_answer = await api.client.request(method, path, json=body, headers=admin)
    assert admin_answer.status_code == 200, admin_answer.text


async def test_a_revoked_engine_and_a_rotated_key(api: Api) -> None:
    admin = await bootstrap(api)
    key = await register(api, admin, "one", {"slack": {"*": []}})
    rotated = (await api.client.post("/engines/one/rotate-key", headers=admin)).json()
    new_key = rotated["engine_key"]
    assert new_key != key
    old = await api.client.post("/engines/validate", headers=headers("one", key))
    assert old.status_code == 401  # the old key stops at once
    ok = await api.client.post("/engines/validate", headers=headers("one", new_key))
    assert ok.status_code == 200
    assert (await api.client.post("/engines/one/revoke", headers=admin)).status_code == 200
    gone = await api.client.post("/engines/validate", headers=headers("one", new_key))
    assert gone.status_code == 401
    check = {"engine_id": "one", "platform": "slack", "action_type": "send"}
    verdict = (await api.client.post("/actions/check", json=check, headers=admin)).json()
    assert verdict == {**verdict, "allowed": False, "reason": "engine_revoked"}
    again = await api.client.post(
        "/engines/register", json={"engine_id": "one", "permissions": {}}, headers=admin
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "engine_exists"


async def test_an_engine_asks_about_itself_only(api: Api) -> None:
    admin = await bootstrap(api)
    key = await register(api, admin, "one", {"slack": {"send": []}})
    await register(api, admin, "two", {"slack": {"send": []}})
    mine = await api.client.post(
        "/actions/check",
        json={"platform": "slack", "action_type": "send"},
        headers=headers("one", key),
    )
    assert mine.json()["allowed"] is True  # engine_id defaults to the caller
    theirs = await api.client.post(
        "/actions/check",
        json={"engine_id": "two", "platform": "slack", "action_type": "send"},
        headers=headers("one", key),
    )
    assert theirs.status_code == 403


async def test_permissions_wildcards_scopes_and_flags(api: Api) -> None:
    admin = await bootstrap(api)
    key = await register(api, admin, "one", {"slack": {"*": ["slack:write"]}})
    me = headers("one", key)

    async def verdict(**body: Any) -> dict[str, Any]:
        answer = await api.client.post("/actions/check", json=body, headers=me)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    assert (await verdict(platform="slack", action_type="send_message"))["allowed"] is True
    denied = await verdict(platform="gmail", action_type="send_email")
    assert denied["allowed"] is False and denied["reason"] == "permission_missing"
    given = await verdict(platform="slack", action_type="x", scopes=["slack:read"])
    assert given["allowed"] is True  # the action requires no scope
    # the command step is dangerous: behind its flag, off in the server profile
    await api.client.post(
        "/engines/one/grant", json={"platform": "local", "action_type": "command"}, headers=admin
    )
    flagged = await verdict(platform="local", action_type="command")
    assert flagged["allowed"] is False and flagged["reason"] == "flag_off"
    assert flagged["flag"] == "command"
    await api.client.put("/flags/command", json={"enabled": True}, headers=admin)
    assert (await verdict(platform="local", action_type="command"))["allowed"] is True


async def test_bad_input_is_a_structured_error(api: Api) -> None:
    admin = await bootstrap(api)
    cases = [
        ("POST", "/engines/register", {"engine_id": "", "permissions": {}}),
        ("POST", "/engines/register", {"engine_id": "x", "permissions": {"slack": ["a"]}}),
        ("PUT", "/platforms/slack", {"status": "broken"}),
        ("PUT", "/flags/command", {"enabled": "maybe"}),
        ("POST", "/engines/ghost/revoke", None),
        ("POST", "/actions/check", {"platform": "slack"}),
    ]
    for method, path, body in cases:
        answer = await api.client.request(method, path, json=body, headers=admin)
        assert 400 <= answer.status_code < 500, (path, answer.text)
        assert answer.json()["status"] == "fail" and answer.json()["error"]["code"]
        assert "Traceback" not in answer.text
    big = {"blob": "x" * 70_000}
    too_big = await api.client.post("/log/engine_event", json=big, headers=admin)
    assert too_big.status_code == 413
    not_object = await api.client.post("/log/engine_event", json=[1, 2], headers=admin)
    assert not_object.status_code in (400, 422)


async def test_sec10_every_check_and_change_is_audited_and_no_key_is_stored(
    make_api: ApiFactory, tmp_path: Any
) -> None:
    """SEC-10: keys only as hashes (the key id names them); every check an audit event."""
    api = await make_api()
    admin = await bootstrap(api)
    key = await register(api, admin, "one", {"slack": {"*": []}})
    me = headers("one", key)
    for action in ("a", "b", "a"):
        await api.client.post(
            "/actions/check",
            json={"platform": "slack", "action_type": action},
            headers={**me, "X-Request-ID": f"req-{action}"},
        )
    await api.client.post("/log/engine_event", json={"platform": "slack", "n": 7}, headers=me)
    events = (await api.client.get("/log/engine_events?engine_id=one", headers=admin)).json()
    kinds = [(e["kind"], e["action"], e["allowed"]) for e in events["events"]]
    assert kinds.count(("check", "a", True)) == 2 and ("check", "b", True) in kinds
    assert ("event", None, None) in kinds
    assert any(e["kind"] == "admin" and e["action"] == "register" for e in events["events"])
    own = (await api.client.get("/log/engine_events", headers=me)).json()["events"]
    assert own and all(e["engine_id"] == "one" for e in own)
    slack = await api.client.get("/log/engine_events?platform=slack&kind=event", headers=admin)
    assert [e["data"]["n"] for e in slack.json()["events"]] == [7]
    await api.app.state.application.control.audit.flush()
    db = sqlite3.connect(tmp_path / "home" / "puraify.db")
    try:
        dump = "\n".join(db.iterdump())
    finally:
        db.close()
    assert key not in dump and admin["X-Engine-Key"] not in dump
    assert key.split("_")[1] in dump  # the key id is what names it


async def test_validation_and_dry_runs_show_each_steps_verdict(api: Api) -> None:
    """Nothing is audited or run: the verdict each step would get now."""
    mission = {
        "steps": [
            {"id": "a", "step_type": "noop"},
            {"id": "b", "step_type": "command", "parameters": {"command": "echo"}},
        ]
    }
    checked = await api.client.post("/missions/validate", json=mission, headers=api.auth())
    assert checked.status_code == 200, checked.text
    policy = {row["step_id"]: row for row in checked.json()["policy"]}
    assert policy["a"]["allowed"] is True
    assert policy["b"] == {**policy["b"], "allowed": False, "reason": "flag_off"}
    dry = await api.client.post("/missions/execute?dry_run=true", json=mission, headers=api.auth())
    assert [row["allowed"] for row in dry.json()["policy"]] == [True, False]
    await api.app.state.application.control.audit.flush()
    events = await api.app.state.application.control.registry.events(kind="check")
    assert events == []  # previews are not checks


@pytest.mark.parametrize(
    "answer",
    [
        {"allowed": "false", "reason": "permission_missing"},
        {"allowed": 0, "reason": "x"},
        {"allowed": True, "reason": None},
        {"allowed": [0]},
        ["allowed"],
    ],
)
async def test_an_answer_that_is_not_a_verdict_is_no_answer(answer: Any) -> None:
    """F: the HTTP client fails closed on anything but a verdict: no step runs on it."""
    from puraify.control.client import HttpPolicy
    from puraify.errors import ActionError
    from puraify.testing import LocalServer, RecordingSink, Reply

    sink = RecordingSink()
    sink.script("/actions/check", Reply(200, answer))
    with LocalServer(sink) as server:
        policy = HttpPolicy(server.url, "e", "pek_x_y", cache_seconds=0)
        try:
            with pytest.raises(ActionError) as caught:
                await policy.check("e", "local", "noop")
        finally:
            await policy.aclose()
    assert caught.value.code == "policy_unavailable" and caught.value.retryable


async def test_aliases_are_granted_as_their_actions_and_names_are_checked(api: Api) -> None:
    """F: a grant of an alias (write_file) allows the action (create_file) as steps ask for
    it; names with control characters are a 422, never a 500."""
    admin = await bootstrap(api)
    control = api.app.state.application.control
    await control.set_permissions(
        "puraify-execution", {"local": {"write_file": []}}, merge=False, by="test"
    )
    stored = [e for e in await control.engines() if e["engine_id"] == "puraify-execution"]
    assert stored[0]["permissions"] == {"local": {"create_file": []}}
    body = {"action": "create_file", "parameters": {"path": "a.txt", "content": "x"}}
    ok = await api.client.post("/execute", json=body, headers=api.auth())
    assert ok.status_code == 200, ok.text
    for method, path, payload in (
        ("GET", "/log/engine_events?platform=%00", None),
        ("POST", "/engines/a%00b/revoke", None),
        ("PUT", "/platforms/x", {"status": "active", "message": "a\u0000b"}),
        ("POST", "/actions/check", {"platform": "a\u0000", "action_type": "x"}),
    ):
        answer = await api.client.request(method, path, json=payload, headers=admin)
        assert answer.status_code == 422, (path, answer.text)


async def test_a_policy_file_applied_twice_changes_nothing_the_second_time(
    api: Api, tmp_path: Any
) -> None:
    from puraify.control.reconcile import reconcile

    control = api.app.state.application.control
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "engines:\n"
        "  bot: {permissions: {slack: {send_message: [b, a, a]}, local: {run_command: []}}}\n"
        "platforms:\n  slack: {status: maintenance, version: 2}\n"
        "flags:\n  command: true\n"
    )
    first = await reconcile(control, policy)
    assert first == [
        "engine bot registered",
        "platform slack maintenance",
        "flag command on",
    ]
    assert await reconcile(control, policy) == []
    bot = next(e for e in await control.engines() if e["engine_id"] == "bot")
    assert bot["permissions"] == {"slack": {"send_message": ["a", "b"]}, "local": {"command": []}}
    policy.write_text("engines:\n  y: 5\n")
    with pytest.raises(Exception) as caught:
        await reconcile(control, policy)
    assert getattr(caught.value, "code", "") == "invalid_mission"
