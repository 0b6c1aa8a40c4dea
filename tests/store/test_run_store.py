"""The run store on SQLite and PostgreSQL: recording, fencing, resume, retry, history."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from puraify.errors import StoreError
from puraify.mission.model import MissionStatus, StepResult, StepStatus
from puraify.runtime.engine import Engine
from puraify.runtime.executor import RunHandle
from puraify.runtime.resume import ResumeState, resume_plan, reusable_results
from puraify.store import Database, RunStore
from puraify.testing import RecordingSink, Reply
from tests.conftest import TEST_ENV, make_settings


def engine_for(tmp_path: Path, store: RunStore) -> Engine:
    return Engine.from_settings(
        make_settings(tmp_path), workspace=tmp_path / "ws", environ=TEST_ENV, recorder=store
    )


async def start(engine: Engine, store: RunStore, text: str, **kw: Any) -> tuple[str, Any]:
    prepared = engine.prepare(text)
    run_id, created = await store.create_run(prepared.mission, **kw)
    assert created
    return run_id, prepared.mission


async def test_run_steps_and_attempts_are_recorded(
    tmp_path: Path, store: RunStore, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.fail_next(1, status=503, path="/x")
    engine = engine_for(tmp_path, store)
    text = (
        "name: recorded\nsteps:\n"
        f"  - {{id: call, step_type: http, retry: {{attempts: 2, delay_ms: 10}}, parameters: {{url: '{url}/x'}}}}\n"
        "  - {id: big, step_type: noop, depends_on: [call], parameters: {message: '{{ \"x\" * 5000 }}'}}\n"
        "  - {id: bad, step_type: command, depends_on: [big], parameters: {command: 'false'}}\n"
        "  - {id: never, step_type: noop, depends_on: [bad]}\n"
    )
    run_id, mission = await start(engine, store, text, context={"who": "me"})
    result = await engine.run(mission, handle=RunHandle(run_id=run_id))
    await engine.aclose()
    record = await store.get(run_id)
    assert record.status is MissionStatus.FAILED and result.status is MissionStatus.FAILED
    assert record.context == {"who": "me"}
    by_id = {s.step_id: s for s in record.steps}
    assert by_id["call"].status is StepStatus.SUCCESS and by_id["call"].attempts == 2
    assert by_id["call"].output["status"] == 200  # type: ignore[index]
    assert by_id["big"].output["__puraify_truncated__"] is True  # type: ignore[index]
    assert by_id["bad"].error is not None and by_id["bad"].error.code == "command_failed"
    assert by_id["never"].status is StepStatus.SKIPPED
    tries = await store.attempts_of(run_id)
    assert [(t["step_id"], t["attempt"], t["status"]) for t in tries] == [
        ("call", 1, "failed"),
        ("call", 2, "success"),
        ("big", 1, "success"),
        ("bad", 1, "failed"),
    ]
    kinds = [e["kind"] for e in await store.events(run_id)]
    assert kinds[0] == "run_created" and kinds[-1] == "run_finished"
    assert await store.db.integrity_check() == "ok"


async def test_idempotency_key_returns_the_same_run(tmp_path: Path, store: RunStore) -> None:
    engine = engine_for(tmp_path, store)
    mission = engine.prepare("steps:\n  - {id: a, step_type: noop}\n").mission
    results = await asyncio.gather(
        *(store.create_run(mission, idempotency_key="k-1") for _ in range(8))
    )
    assert len({rid for rid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    await engine.aclose()


async def test_stale_attempt_cannot_overwrite_newer_one(tmp_path: Path, store: RunStore) -> None:
    """I5: a late result from an earlier lease is dropped."""
    engine = engine_for(tmp_path, store)
    run_id, _ = await start(engine, store, "steps:\n  - {id: a, step_type: noop}\n")
    old = (await store.attempts_started(run_id, [("a", 1)]))["a"]
    new = (await store.attempts_started(run_id, [("a", 2)]))["a"]
    assert new == old + 1
    now = datetime.now(UTC)
    late = StepResult(
        step_id="a",
        name="a",
        step_type="noop",
        status=StepStatus.FAILED,
        attempts=1,
        finished_at=now,
    )
    fresh = StepResult(
        step_id="a",
        name="a",
        step_type="noop",
        status=StepStatus.SUCCESS,
        attempts=2,
        output={"message": "new"},
        finished_at=now,
    )
    await store.steps_finished(run_id, [(fresh, new)])
    await store.steps_finished(run_id, [(late, old)])
    row = (await store.get(run_id)).steps[0]
    assert row.status is StepStatus.SUCCESS and row.output == {"message": "new"}
    await engine.aclose()


async def test_resume_redispatches_keyed_and_fails_unsafe(
    tmp_path: Path, store: RunStore, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    engine = engine_for(tmp_path, store)
    text = (
        "config: {fail_fast: false}\nsteps:\n  - {id: first, step_type: noop}\n"
        f"  - {{id: post, step_type: http, depends_on: [first], parameters: {{url: '{url}/p', method: POST}}}}\n"
        "  - {id: shell, step_type: command, depends_on: [first], parameters: {command: 'true'}}\n"
        "  - {id: again, step_type: command, retry_on_unknown: true, depends_on: [first], parameters: {command: 'true'}}\n"
        "  - {id: after, step_type: noop, depends_on: [post]}\n"
        "  - {id: after_shell, step_type: noop, depends_on: [shell]}\n"
    )
    run_id, _mission = await start(engine, store, text)
    # what a killed engine leaves behind: `first` done, three attempts in flight
    done = StepResult(
        step_id="first",
        name="first",
        step_type="noop",
        status=StepStatus.SUCCESS,
        output={"message": None},
        attempts=1,
        finished_at=datetime.now(UTC),
    )
    fences = await store.attempts_started(run_id, [("first", 1)])
    await store.steps_finished(run_id, [(done, fences["first"])])
    await store.attempts_started(run_id, [("post", 1), ("shell", 1), ("again", 1)])
    dead = RunStore(store.db, owner=f"{socket.gethostname()}:999999999:gone")
    from sqlalchemy import update

    from puraify.store.tables import runs

    async with store.db.engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(lease_owner=dead.owner))
    assert run_id in await store.orphans()
    assert await store.acquire(run_id)
    record = await store.get(run_id)
    plan = resume_plan(record, engine.registry)
    assert plan.redispatched == ["post", "again"]
    assert set(plan.fail_on_start) == {"shell"}
    result = await engine.run(record.mission, handle=RunHandle(run_id=run_id), resume=plan)
    await engine.aclose()
    assert result.step("first").attempts == 1
    assert result.step("post").status is StepStatus.SUCCESS and result.step("post").attempts == 2
    assert receiver.requests[0].headers["idempotency-key"] == f"{run_id}:post"
    assert result.step("shell").error.code == "unknown_outcome"  # type: ignore[union-attr]
    assert result.step("again").status is StepStatus.SUCCESS
    assert result.step("after_shell").status is StepStatus.SKIPPED
    assert result.step("after").status is StepStatus.SUCCESS
    final = await store.get(run_id)
    assert final.status is MissionStatus.FAILED
    assert {s.step_id: s.status for s in final.steps}["shell"] is StepStatus.FAILED
    # the interrupted attempt of `shell` is closed by that ending, not left running
    shell = [a for a in await store.attempts_of(run_id) if a["step_id"] == "shell"]
    assert [(a["status"], a["error_code"]) for a in shell] == [("failed", "unknown_outcome")]


async def _left_by_a_dead_engine(store: RunStore, run_id: str) -> None:
    """Hand ``run_id`` to an owner process of this host that no longer exists."""
    from sqlalchemy import update

    from puraify.store.tables import runs

    dead = f"{socket.gethostname()}:999999999:gone"
    async with store.db.engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(lease_owner=dead))


async def test_an_interrupted_unsafe_attempt_ends_with_its_step(
    tmp_path: Path, store: RunStore
) -> None:
    engine = engine_for(tmp_path, store)
    text = (
        "config: {fail_fast: false}\nsteps:\n"
        "  - {id: shell, step_type: command, parameters: {command: 'true'}}\n"
        "  - {id: other, step_type: noop}\n"
    )
    run_id, _ = await start(engine, store, text)
    # the engine dies while `shell` is in flight
    await store.attempts_started(run_id, [("shell", 1)])
    await _left_by_a_dead_engine(store, run_id)
    assert await store.acquire(run_id)
    record = await store.get(run_id)
    plan = resume_plan(record, engine.registry)
    assert set(plan.fail_on_start) == {"shell"}
    result = await engine.run(record.mission, handle=RunHandle(run_id=run_id), resume=plan)
    await engine.aclose()
    assert result.step("shell").error.code == "unknown_outcome"  # type: ignore[union-attr]
    tries = await store.attempts_of(run_id)
    assert [(t["step_id"], t["attempt"], t["status"], t["error_code"]) for t in tries] == [
        ("shell", 1, "failed", "unknown_outcome"),
        ("other", 1, "success", None),
    ]
    assert tries[0]["finished_at"] is not None
    assert tries[0]["error_message"] == result.step("shell").error.message  # type: ignore[union-attr]


async def test_cancelling_a_run_of_a_dead_engine_ends_its_attempts(
    tmp_path: Path, store: RunStore
) -> None:
    engine = engine_for(tmp_path, store)
    run_id, _ = await start(engine, store, "steps:\n  - {id: a, step_type: noop}\n")
    await engine.aclose()
    await store.attempts_started(run_id, [("a", 1)])
    await _left_by_a_dead_engine(store, run_id)
    assert await RunStore(store.db).request_cancel(run_id) is MissionStatus.CANCELLED
    assert [(t["status"], t["error_code"]) for t in await store.attempts_of(run_id)] == [
        ("cancelled", "cancelled")
    ]
    assert await store.status(run_id) is MissionStatus.CANCELLED


async def test_retry_reexecutes_only_what_failed(
    tmp_path: Path, store: RunStore, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/flaky", Reply(400, {"error": "bad"}))
    engine = engine_for(tmp_path, store)
    text = (
        "config: {fail_fast: false}\nsteps:\n"
        f"  - {{id: ok1, step_type: http, parameters: {{url: '{url}/ok1'}}}}\n"
        f"  - {{id: ok2, step_type: http, parameters: {{url: '{url}/ok2'}}}}\n"
        f"  - {{id: flaky, step_type: http, depends_on: [ok1], parameters: {{url: '{url}/flaky'}}}}\n"
        f"  - {{id: later, step_type: http, depends_on: [flaky], parameters: {{url: '{url}/later'}}}}\n"
    )
    run_id, mission = await start(engine, store, text)
    first = await engine.run(mission, handle=RunHandle(run_id=run_id))
    assert first.status is MissionStatus.FAILED and first.step("later").status is StepStatus.SKIPPED
    record = await store.get(run_id)
    reuse = reusable_results(record)
    assert set(reuse) == {"ok1", "ok2"}
    new_id, _ = await store.create_run(record.mission, parent_run_id=run_id, reuse=reuse)
    second = await engine.run(
        record.mission, handle=RunHandle(run_id=new_id), resume=ResumeState(restore=reuse)
    )
    await engine.aclose()
    assert second.status is MissionStatus.COMPLETED
    assert {p: receiver.count(p) for p in ("/ok1", "/ok2", "/flaky", "/later")} == {
        "/ok1": 1,
        "/ok2": 1,
        "/flaky": 2,
        "/later": 1,
    }
    retried = await store.get(new_id)
    assert retried.parent_run_id == run_id
    assert {s.step_id: s.reused_from for s in retried.steps} == {
        "ok1": run_id,
        "ok2": run_id,
        "flaky": None,
        "later": None,
    }
    assert second.step("ok1").output == first.step("ok1").output


async def test_list_cancel_and_prune(tmp_path: Path, store: RunStore) -> None:
    engine = engine_for(tmp_path, store)
    ids = []
    for name in ("alpha", "beta"):
        run_id, mission = await start(
            engine, store, f"name: {name}\nsteps:\n  - {{id: a, step_type: noop}}\n"
        )
        await engine.run(mission, handle=RunHandle(run_id=run_id))
        ids.append(run_id)
    orphan, _ = await start(engine, store, "name: gamma\nsteps:\n  - {id: a, step_type: noop}\n")
    await engine.aclose()
    assert [r["mission_name"] for r in await store.list_runs()] == ["gamma", "beta", "alpha"]
    assert [r["run_id"] for r in await store.list_runs(mission="alp")] == [ids[0]]
    assert [r["run_id"] for r in await store.list_runs(status="running")] == [orphan]
    # another process asks: the owner (this live process) is told at its next heartbeat
    other = RunStore(store.db)
    assert await other.request_cancel(orphan) is MissionStatus.RUNNING
    assert await store.heartbeat(orphan) is True
    # a run whose owner is gone is cancelled on the spot
    assert await store.request_cancel(orphan) is MissionStatus.CANCELLED
    assert {s.status for s in (await store.get(orphan)).steps} == {StepStatus.CANCELLED}
    assert await store.prune(datetime.now(UTC) + timedelta(seconds=1)) == 3
    assert await store.list_runs() == []
    assert await store.db.integrity_check() == "ok"


async def test_status_answers_like_get_without_loading_the_run(
    tmp_path: Path, store: RunStore
) -> None:
    engine = engine_for(tmp_path, store)
    mission_text = "steps:\n  - {id: a, step_type: noop}\n"
    running, _ = await start(engine, store, mission_text, project_id="p")
    done, mission = await start(engine, store, mission_text, project_id="p")
    await engine.run(mission, handle=RunHandle(run_id=done))
    await engine.aclose()
    assert await store.status(running) is MissionStatus.RUNNING
    assert await store.status(done, project_id="p") is MissionStatus.COMPLETED
    for run_id, project in (("nope", None), (done, "other")):
        with pytest.raises(StoreError) as by_get:
            await store.get(run_id, project_id=project)
        with pytest.raises(StoreError) as by_status:
            await store.status(run_id, project_id=project)
        assert by_status.value.code == by_get.value.code == "run_not_found"
        assert str(by_status.value) == str(by_get.value)


async def test_schema_is_at_head(database: Database) -> None:
    from puraify.store.database import HEAD_REVISION

    assert await database.revision() == database.head() == HEAD_REVISION == "0010"


async def test_documents_are_stored_as_serialized_once(tmp_path: Path, store: RunStore) -> None:
    """The mission document's text is what ``json.dumps`` makes of it and what its hash is
    of; an output is stored as ``json.dumps`` of it."""
    from sqlalchemy import Text, cast, select

    from puraify.store.tables import run_steps, runs

    engine = engine_for(tmp_path, store)
    text = "name: dé\nsteps:\n  - {id: a, step_type: noop, parameters: {message: 'hé ☃', z: 1}}\n"
    run_id, mission = await start(engine, store, text)
    await engine.run(mission, handle=RunHandle(run_id=run_id))
    await engine.aclose()
    async with store.db.engine.connect() as conn:
        doc, digest = (
            await conn.execute(
                select(cast(runs.c.mission_doc, Text), runs.c.mission_hash).where(
                    runs.c.id == run_id
                )
            )
        ).one()
        output = (
            await conn.execute(
                select(cast(run_steps.c.output, Text)).where(run_steps.c.run_id == run_id)
            )
        ).scalar()
    assert doc == json.dumps(mission.model_dump(mode="json"))
    assert digest == hashlib.sha256(doc.encode()).hexdigest()
    record = await store.get(run_id)
    assert record.mission == mission and record.mission_hash == digest
    assert output == json.dumps(record.steps[0].output)
    assert record.steps[0].output == {"message": "hé ☃"}


async def test_migrations_create_exactly_the_tables(database: Database) -> None:
    """The schema the migrations build is the one ``store/tables.py`` describes."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from puraify.store.tables import metadata

    async with database.engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), metadata
            )
        )
    assert diff == []


async def test_times_read_back_are_aware_utc(tmp_path: Path, store: RunStore) -> None:
    engine = engine_for(tmp_path, store)
    run_id, mission = await start(engine, store, "steps:\n  - {id: a, step_type: noop}\n")
    await engine.run(mission, handle=RunHandle(run_id=run_id))
    await engine.aclose()
    record = await store.get(run_id)
    (attempt,) = await store.attempts_of(run_id)
    (listed,) = await store.list_runs()
    times = [
        record.created_at,
        record.started_at,
        record.finished_at,
        record.steps[0].started_at,
        record.steps[0].finished_at,
        attempt["started_at"],
        attempt["finished_at"],
        listed["created_at"],
        listed["finished_at"],
        *(e["at"] for e in await store.events(run_id)),
    ]
    assert all(t is not None and t.utcoffset() == timedelta(0) for t in times), times


def test_store_url_defaults_to_home(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.store_url == f"sqlite+aiosqlite:///{tmp_path / 'home' / 'puraify.db'}"


def _count_transactions(store: RunStore) -> list[int]:
    """Every group-commit write the store asks for from now on (its size), in order."""
    writes: list[int] = []
    real_write = store._writer.commit.write

    async def counting(batch: Any) -> None:
        writes.append(len(batch))
        await real_write(batch)

    store._writer.commit.write = counting  # type: ignore[method-assign]
    return writes


async def test_a_deferred_run_is_committed_with_its_first_attempt(
    tmp_path: Path, store: RunStore
) -> None:
    engine = engine_for(tmp_path, store)
    prepared = engine.prepare("steps:\n  - {id: only, step_type: noop}\n")
    run_id, created = await store.create_run(prepared.mission, project_id="p", defer=True)
    assert created
    assert await store.list_runs() == []  # nothing is written before the run starts ...
    writes = _count_transactions(store)
    fences = await store.attempts_started(run_id, [("only", 1)])
    record = await store.get(run_id)  # ... and the run arrives with its attempt
    assert record.status is MissionStatus.RUNNING
    assert [(s.step_id, s.status, s.fence) for s in record.steps] == [
        ("only", StepStatus.RUNNING, fences["only"])
    ]
    assert len(writes) == 1
    await engine.aclose()


async def test_a_one_step_run_costs_two_transactions(tmp_path: Path, store: RunStore) -> None:
    engine = engine_for(tmp_path, store)
    prepared = engine.prepare("steps:\n  - {id: only, step_type: noop}\n")
    writes = _count_transactions(store)
    run_id, _ = await store.create_run(prepared.mission, defer=True)
    result = await engine.run(prepared.mission, handle=RunHandle(run_id=run_id))
    await engine.aclose()
    assert result.status is MissionStatus.COMPLETED
    # creation + attempt before dispatch; step result + run end after it
    assert len(writes) == 2
    record = await store.get(run_id)
    assert record.status is MissionStatus.COMPLETED
    assert record.steps[0].status is StepStatus.SUCCESS
    kinds = [e["kind"] for e in await store.events(run_id)]
    assert kinds == ["run_created", "run_finished"]


async def test_a_deferred_run_arrives_with_whichever_write_comes_first(
    tmp_path: Path, store: RunStore
) -> None:
    engine = engine_for(tmp_path, store)
    # nothing dispatched: the only step is decided (skipped) and the run ends
    skipped = engine.prepare("steps:\n  - {id: only, step_type: noop, when: 'false'}\n")
    writes = _count_transactions(store)
    run_id, _ = await store.create_run(skipped.mission, defer=True)
    result = await engine.run(skipped.mission, handle=RunHandle(run_id=run_id))
    assert result.status is MissionStatus.COMPLETED
    record = await store.get(run_id)
    assert record.status is MissionStatus.COMPLETED
    assert [s.status for s in record.steps] == [StepStatus.SKIPPED]
    assert len(writes) == 1  # creation, step decision and run end together
    # a heartbeat before anything else (a slow first tick) writes the run before renewing it
    beat_id, _ = await store.create_run(skipped.mission, defer=True)
    assert await store.heartbeat(beat_id) is False
    assert (await store.get(beat_id)).lease_owner == store.owner
    await engine.aclose()


async def test_a_deferred_run_that_never_started_leaves_nothing(
    tmp_path: Path, store: RunStore
) -> None:
    engine = engine_for(tmp_path, store)
    prepared = engine.prepare("steps:\n  - {id: only, step_type: noop}\n")
    run_id, _ = await store.create_run(prepared.mission, defer=True)
    store.forget(run_id)  # what the service does when a run's task ends
    assert await store.list_runs() == []
    assert not store._writer.holds(run_id)
    await engine.aclose()


def test_run_ids_are_unique_and_grow_with_time() -> None:
    from puraify.store.runs import new_run_id

    ids = []
    for _ in range(3):
        ids += [new_run_id() for _ in range(1000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    # ordered across milliseconds (within one millisecond the random part decides)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)
    assert ids[0] < ids[-1]


def test_first_runs_on_a_fresh_home_do_not_race_on_the_schema(tmp_path: Path) -> None:
    """Four commands started together on a new home: one migrates, the others wait and find
    the schema current (no "table runs already exists")."""
    import os
    import subprocess
    import sys

    mission = tmp_path / "m.yaml"
    mission.write_text("steps:\n  - {id: a, step_type: noop}\n")
    env = {**os.environ, "PURAIFY_HOME": str(tmp_path / "fresh")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "puraify", "run", str(mission), "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["status"] == "completed"


HOSTILE_BODY = (
    b'{"nan": NaN, "inf": 1e999, "neg": -Infinity, "nul": "a\\u0000b", "lone": "x\\ud800y", '
    b'"ok": [1, 2.5, "fine"]}'
)
CLEANED = {
    "nan": "NaN",
    "inf": "Infinity",
    "neg": "-Infinity",
    "nul": "a\ufffdb",
    "lone": "x\ufffdy",
    "ok": [1, 2.5, "fine"],
}


async def test_outputs_no_json_can_hold_are_stored_by_the_documented_rule(
    tmp_path: Path, store: RunStore, sink: tuple[RecordingSink, str]
) -> None:
    """F: NaN, infinities, NUL and lone surrogates from a platform (in a body, in an error
    message) never wedge a run, on SQLite and PostgreSQL: the run ends, and every read of it
    afterwards answers."""
    receiver, url = sink
    receiver.script("/weird", Reply(200, HOSTILE_BODY))
    receiver.script("/worse", Reply(400, HOSTILE_BODY))
    engine = engine_for(tmp_path, store)
    text = (
        "config: {fail_fast: false}\nsteps:\n"
        f"  - {{id: weird, step_type: http, parameters: {{url: '{url}/weird', response_format: json}}}}\n"
        f"  - {{id: worse, step_type: http, parameters: {{url: '{url}/worse', response_format: json}}}}\n"
        "  - {id: echo, step_type: command, parameters: {command: printf, "
        "args: ['%b', 'out\\0put'], success_codes: [1]}}\n"
    )
    run_id, mission = await start(engine, store, text)
    result = await engine.run(mission, handle=RunHandle(run_id=run_id))
    await engine.aclose()
    assert result.step("weird").output["body"] == CLEANED  # type: ignore[index]
    record = await store.get(run_id)
    assert record.status is MissionStatus.FAILED
    by_id = {s.step_id: s for s in record.steps}
    assert by_id["weird"].output["body"] == CLEANED  # type: ignore[index]
    assert by_id["worse"].output["body"] == CLEANED  # type: ignore[index]
    assert by_id["echo"].output["stdout"] == "out\ufffdput"  # type: ignore[index]
    assert "\x00" not in (by_id["echo"].error.message or "")  # type: ignore[union-attr]
    steps = [s.result(s.step_id).model_dump(mode="json") for s in record.steps]
    json.dumps(steps, allow_nan=False).encode()  # servable as is


async def test_the_store_cleans_what_reaches_it_unclean(store: RunStore) -> None:
    """The store's own guard, for results that did not pass through an action's attempt."""
    from puraify.mission.loader import load_mission
    from puraify.mission.model import StepError

    loaded = load_mission("steps:\n  - {id: a, step_type: noop}\n")
    run_id, _ = await store.create_run(loaded.mission)
    now = datetime.now(UTC)
    result = StepResult(
        step_id="a",
        name="a",
        step_type="noop",
        status=StepStatus.FAILED,
        output={"v": float("nan")},
        error=StepError(code="x", message="bad\x00byte \ud800"),
        attempts=1,
        started_at=now,
        finished_at=now,
    )
    await store.steps_finished(run_id, [(result, None)])
    stored = (await store.get(run_id)).steps[0]
    assert stored.output == {"v": "NaN"}
    assert stored.error is not None and stored.error.message == "bad\ufffdbyte \ufffd"


async def test_a_step_error_reads_back_with_its_retry_hint_and_status(
    tmp_path: Path, store: RunStore, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/down", Reply(503, {"error": "later"}))
    engine = engine_for(tmp_path, store)
    run_id, mission = await start(
        engine,
        store,
        f"steps:\n  - {{id: call, step_type: http, parameters: {{url: '{url}/down'}}}}\n",
    )
    live = await engine.run(mission, handle=RunHandle(run_id=run_id))
    await engine.aclose()
    stored = (await store.get(run_id)).steps[0].error
    assert live.step("call").error == stored
    assert stored is not None and stored.retryable is True and stored.status == 503
