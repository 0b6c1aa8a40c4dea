"""Event sinks (Monitoring and Feedback engines), log lines, tokens at rest (SEC-10)."""

from __future__ import annotations

from pathlib import Path

from puraify.testing import LocalServer, RecordingSink
from tests.api.conftest import ApiFactory
from tests.helpers import poll


async def test_event_sinks_receive_run_and_step_events(
    make_api: ApiFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.fail_next(1, status=503, path="/monitor")  # the sink retries
    api = await make_api(monitoring_url=f"{url}/monitor", feedback_url=f"{url}/feedback")
    ok = {"steps": [{"id": "a", "step_type": "noop"}]}
    bad = {"steps": [{"id": "b", "step_type": "read_file", "parameters": {"path": "missing.txt"}}]}
    for mission in (ok, bad):
        r = await api.client.post("/missions/execute?wait=true", headers=api.auth(), json=mission)
        assert r.status_code == 200

    async def delivered() -> bool:
        return bool(receiver.count("/feedback")) and receiver.count("/monitor") >= 9

    await poll(delivered, bool, what="the events delivered")
    events = [r.json()["event"] for r in receiver.requests if r.path == "/monitor" and r.json()]
    assert (
        events.count("run_finished") == 2 and "step_finished" in events and "run_started" in events
    )
    (feedback,) = [r.json() for r in receiver.requests if r.path == "/feedback"]
    assert (
        feedback["event"] == "run_failed"
        and feedback["failed_steps"][0]["error"]["code"] == "file_not_found"
    )


async def test_a_dead_sink_never_slows_runs(make_api: ApiFactory) -> None:
    """Runs are answered while the monitoring receiver answers nothing: their events wait in
    the sink's queue instead of in the request."""
    receiver = RecordingSink()
    for _ in range(100):  # every event and every retry hangs until released
        receiver.hold("/monitor")
    with LocalServer(receiver) as server:
        api = await make_api(monitoring_url=f"{server.url}/monitor")
        try:
            run_ids = []
            for _ in range(5):
                r = await api.client.post(
                    "/execute",
                    headers=api.auth(),
                    json={"action": "log_message", "parameters": {"message": "x"}},
                )
                assert r.status_code == 200
                run_ids.append(r.json()["run_id"])

            # the receiver is stuck on the first event; no run waited for its own end to be told
            async def sent() -> int:
                return receiver.count("/monitor")

            await poll(sent, lambda n: n >= 1, what="the first event sent")
            told = {
                r.json()["run_id"]
                for r in list(receiver.requests)
                if r.path == "/monitor" and r.json()["event"] == "run_finished"
            }
            assert not told & set(run_ids), told
        finally:
            receiver.release()


async def test_sec10_tokens_are_stored_only_as_hashes(make_api: ApiFactory, tmp_path: Path) -> None:
    api = await make_api()
    token = await api.token("c", "execute")
    db_bytes = b"".join(p.read_bytes() for p in (tmp_path / "home").glob("puraify.db*"))
    assert token.encode() not in db_bytes
    assert token.split("_", 2)[2].encode() not in db_bytes
    r = await api.client.post(
        "/execute",
        headers={"Authorization": f"Bearer {token}"},
        json={"action": "log_message", "parameters": {"message": "x"}},
    )
    assert r.status_code == 200
    token_id = token.split("_")[1]
    assert await api.app.state.tokens.revoke(token_id)
    r = await api.client.post(
        "/execute",
        headers={"Authorization": f"Bearer {token}"},
        json={"action": "log_message", "parameters": {"message": "x"}},
    )
    assert r.status_code == 401
