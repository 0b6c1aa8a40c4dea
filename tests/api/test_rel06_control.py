"""REL-06: Engine Control gates every step and fails closed.

Control unreachable: no action executes (a retryable ``policy_unavailable``); a platform
switched to maintenance: steps already running finish, later ones are refused; a permission
revoked mid-run: later steps are denied naming the rule. Also the cache: a change made in this
process applies at once, one made elsewhere within ``control_cache_seconds``; and the split
deployment, Engine Control and the execution service as separate real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from puraify.actions import default_registry
from puraify.control.policy import AuditLog, LocalPolicy
from puraify.control.registry import ControlRegistry
from puraify.service.compose import open_database
from puraify.settings import Settings
from puraify.testing import CanaryListener, LocalServer, RecordingSink, Reply
from tests.api.conftest import Api, ApiFactory
from tests.helpers import ManualClock, poll, wait_for


@pytest.fixture
def sink() -> Iterator[tuple[RecordingSink, str]]:
    receiver = RecordingSink()
    with LocalServer(receiver) as server:
        yield receiver, server.url


def held_mission(url: str) -> dict[str, Any]:
    return {
        "steps": [
            {"id": "first", "step_type": "http", "parameters": {"url": f"{url}/held"}},
            {"id": "second", "step_type": "noop", "depends_on": ["first"]},
        ]
    }


async def run_with_change(api: Api, sink: tuple[RecordingSink, str], change: Any) -> dict[str, Any]:
    """Start the held mission, make ``change`` while its first step is in flight, then let
    the step finish; the run's result."""
    receiver, url = sink
    receiver.script("/held", Reply(200, {"ok": True}, held=True))
    started = await api.client.post("/missions/execute", json=held_mission(url), headers=api.auth())
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]

    async def in_flight() -> int:
        return receiver.count("/held")

    await poll(in_flight, lambda n: n >= 1, what="the first step in flight")
    await change(api.app.state.application.control)
    receiver.release()

    async def result() -> dict[str, Any]:
        return dict((await api.client.get(f"/runs/{run_id}", headers=api.auth())).json())

    return await poll(result, lambda r: r["status"] in ("completed", "failed"), what="the run")


async def test_rel06_maintenance_switched_on_mid_run(
    make_api: ApiFactory, sink: tuple[RecordingSink, str]
) -> None:
    api = await make_api()

    async def maintenance(control: Any) -> None:
        await control.set_platform("local", "maintenance", message="upgrading", by="test")

    done = await run_with_change(api, sink, maintenance)
    first, second = done["steps"]
    assert first["status"] == "success"  # running steps finish
    assert second["status"] == "failed"
    assert second["error"]["code"] == "platform_unavailable" and second["error"]["retryable"]
    assert "upgrading" in second["error"]["message"]


async def test_rel06_permission_revoked_mid_run(
    make_api: ApiFactory, sink: tuple[RecordingSink, str]
) -> None:
    api = await make_api()

    async def revoke(control: Any) -> None:
        await control.set_permissions(
            "puraify-execution", {"local": {"http": []}}, merge=False, by="test"
        )

    done = await run_with_change(api, sink, revoke)
    first, second = done["steps"]
    assert first["status"] == "success"
    assert second["error"]["code"] == "policy_denied"
    assert "permission_missing" in second["error"]["message"]


async def test_rel06_control_unreachable_fails_closed(make_api: ApiFactory) -> None:
    """Nothing executes without a verdict: /execute answers 503 policy_unavailable
    (retryable), and the action's target sees no connection."""
    with CanaryListener() as canary:
        api = await make_api(
            control_url=f"http://127.0.0.1:{canary.port + 1}",  # nobody listens there
            control_engine_key="pek_000000000000_unused",
        )
        body = {
            "action": "http_request",
            "platform": "webhook",
            "parameters": {"url": f"http://127.0.0.1:{canary.port}/hook"},
        }
        answer = await api.client.post("/execute", json=body, headers=api.auth())
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "policy_unavailable" and error["retryable"] is True
        assert canary.connections == 0


async def test_denied_and_unavailable_single_actions_answer_their_status(api: Api) -> None:
    control = api.app.state.application.control
    body = {"action": "noop", "platform": "local", "parameters": {}}
    ok = await api.client.post("/execute", json=body, headers=api.auth())
    assert ok.status_code == 200, ok.text
    await control.set_platform("local", "maintenance", by="test")
    down = await api.client.post("/execute", json=body, headers=api.auth())
    assert down.status_code == 503 and down.json()["error"]["code"] == "platform_unavailable"
    await control.set_platform("local", "active", by="test")
    await control.set_permissions("puraify-execution", {"slack": {"*": []}}, merge=False, by="t")
    denied = await api.client.post("/execute", json=body, headers=api.auth())
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "policy_denied"


async def test_a_change_elsewhere_applies_within_the_cache_time(tmp_path: Path) -> None:
    """Another process's change (here: another registry on the same store) is seen once the
    cached verdict expires; this process's own changes clear the cache at once."""
    db = await open_database(Settings(home=tmp_path / "home"))
    try:
        mine, theirs = ControlRegistry(db), ControlRegistry(db)
        await mine.register("e", {"*": {"*": []}}, by="test")
        clock = ManualClock()
        policy = LocalPolicy(
            mine,
            default_registry(),
            AuditLog(mine),
            flag_defaults={},
            cache_seconds=5.0,
            clock=clock.monotonic,
        )
        assert (await policy.check("e", "slack", "send")).allowed
        await theirs.set_platform("slack", "maintenance", by="elsewhere")
        assert (await policy.check("e", "slack", "send")).allowed  # cached
        clock.advance(5.1)
        verdict = await policy.check("e", "slack", "send")
        assert not verdict.allowed and verdict.reason == "platform_maintenance"
        await policy.audit.aclose()
    finally:
        await db.dispose()


class Process:
    """``puraify serve SERVICE`` as a real process, on its own home."""

    def __init__(self, home: Path, service: str, env: dict[str, str]) -> None:
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PURAIFY_HOME": str(home), "PURAIFY_MODE": "server", **env}
        self.log = open(home.parent / f"{service}.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "puraify", "serve", service, "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:  # or ended: then it never will be
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return self.proc.poll() is not None

        wait_for(ready, seconds=90, what=f"{service} ready")
        if self.proc.poll() is None:
            return
        self.stop()
        raise RuntimeError(
            f"{service} did not start: {(home.parent / f'{service}.log').read_text()}"
        )

    def cli(self, *args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "puraify", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return json.loads(out)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.mark.slow
def test_rel06_split_deployment_engine_control_and_execution_as_separate_processes(
    tmp_path: Path,
) -> None:
    """`puraify serve control` alone, and `puraify serve execution` asking it over HTTP with
    its own engine's key: every step is checked there, and a maintenance switched on there
    stops the execution service's actions once its cached verdict expires."""
    (tmp_path / "control").mkdir()
    (tmp_path / "execution").mkdir()
    control_home = tmp_path / "control" / "home"
    control = Process(control_home, "control", {})
    try:
        admin = control.cli("init")
        assert admin["engine_key"].startswith("pek_")
        key = control.cli("engines", "rotate-key", "puraify-execution")["engine_key"]
        execution = Process(
            tmp_path / "execution" / "home",
            "execution",
            {
                "PURAIFY_CONTROL_URL": control.url,
                "PURAIFY_CONTROL_ENGINE_KEY": key,
                "PURAIFY_CONTROL_CACHE_SECONDS": "0",
            },
        )
        try:
            token = execution.cli("tokens", "create", "--project", "p", "--scope", "execute")
            auth = {"Authorization": f"Bearer {token['token']}"}
            body = {"action": "noop", "platform": "local", "parameters": {}}
            ok = httpx.post(f"{execution.url}/execute", json=body, headers=auth, timeout=30)
            assert ok.status_code == 200, ok.text
            # the control service alone serves no execution route; the execution one no control
            assert httpx.post(f"{control.url}/execute", json=body, timeout=10).status_code == 404
            assert httpx.get(f"{execution.url}/platforms/list", timeout=10).status_code == 404
            admin_headers = {"X-Engine-ID": "admin", "X-Engine-Key": admin["engine_key"]}
            done = httpx.put(
                f"{control.url}/platforms/local",
                json={"status": "maintenance"},
                headers=admin_headers,
                timeout=10,
            )
            assert done.status_code == 200
            down = httpx.post(f"{execution.url}/execute", json=body, headers=auth, timeout=30)
            assert (
                down.status_code == 503 and down.json()["error"]["code"] == "platform_unavailable"
            )
            events = httpx.get(
                f"{control.url}/log/engine_events?engine_id=puraify-execution&kind=check",
                headers=admin_headers,
                timeout=10,
            ).json()["events"]
            assert [e["allowed"] for e in events[:2]] == [False, True]  # newest first
        finally:
            execution.stop()
    finally:
        control.stop()
    # SEC-10: no key in either service's log (the key id names them)
    logs = (tmp_path / "control" / "control.log").read_text()
    logs += (tmp_path / "execution" / "execution.log").read_text()
    assert "policy_check" in logs or "request" in logs
    assert admin["engine_key"] not in logs and key not in logs
