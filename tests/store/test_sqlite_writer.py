"""SQLite's batch writer stores rows exactly as the async engine does, in one transaction."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from puraify.store import Database, sqlite_url
from puraify.store.commit import GroupCommit, Statement, Write
from puraify.store.tables import JSONText
from puraify.store.writes import FINISH_RUN, INSERT_EVENT, INSERT_RUN, INSERT_STEPS

DOC = {"steps": [{"id": "a", "parameters": {"x": [1, 2.5, None, "é"]}}]}
OUTPUT = {"text": "naïve ☃", "n": 1e-7, "list": [True, None]}


def _rows(when: datetime, *, output: Any = None, serialized: bool = False) -> list[Write]:
    """A run, its step and event, then its end; ``serialized``: the mission document and the
    step's output as ``JSONText``, as the store writes them."""
    run = {
        "id": "r1",
        "mission_name": "m",
        "mission_hash": "h",
        "mission_doc": JSONText(json.dumps(DOC)) if serialized else DOC,
        "context": {},
        "status": "running",
        "idempotency_key": None,
        "parent_run_id": None,
        "workspace": None,
        "created_at": when,
        "started_at": when,
        "finished_at": None,
        "duration_ms": None,
        "error_code": None,
        "error_message": None,
        "warnings": [],
        "lease_owner": "me",
        "lease_until": when,
        "cancel_requested": False,
        "project_id": "p",
        "lease_epoch": 1,
        "profile": "local",
    }
    step = {
        "run_id": "r1",
        "step_id": "a",
        "position": 0,
        "step_type": "noop",
        "status": "pending",
        "attempts": 0,
        "fence": 0,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "output": JSONText(json.dumps(output)) if serialized else output,
        "error_code": None,
        "error_message": None,
        "reused_from": None,
    }
    event = {"run_id": "r1", "at": when, "kind": "run_created", "step_id": None, "data": {"k": 1}}
    finish = {
        "p_run": "r1",
        "p_status": "completed",
        "p_finished": when,
        "p_duration": 1.5,
        "p_code": None,
        "p_message": None,
        "p_warnings": ["w"],
    }
    return [
        Write(INSERT_RUN, run),
        Write(INSERT_STEPS, step),
        Write(INSERT_EVENT, event),
        Write(FINISH_RUN, finish),
    ]


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("runs", "run_steps", "run_events")
        }


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])  # in the loop / on its thread
async def test_rows_are_stored_exactly_as_the_async_engine_stores_them(
    tmp_path: Path, synchronous: str
) -> None:
    when = datetime(2026, 11, 22, 12, 30, 45, 123456, tzinfo=UTC)
    dumps = []
    for name, direct in (("engine.db", False), ("writer.db", True)):
        db = Database(sqlite_url(tmp_path / name), sqlite_synchronous=synchronous)
        if direct:
            assert db.writer is not None and db.writer.inline is (synchronous == "NORMAL")
        await db.upgrade()
        commit = GroupCommit(db.engine, writer=db.writer if direct else None)
        await commit.write(_rows(when))
        await db.dispose()
        dumps.append(_dump(tmp_path / name))
    assert dumps[0] == dumps[1]
    assert dumps[0]["runs"][0][2] == "h"  # and something was written at all


async def test_serialized_json_is_stored_as_the_column_would_store_the_value(
    tmp_path: Path,
) -> None:
    when = datetime(2026, 11, 22, 12, 30, 45, 123456, tzinfo=UTC)
    dumps = []
    for name, direct, serialized in (
        ("values.db", False, False),
        ("engine.db", False, True),
        ("writer.db", True, True),
    ):
        db = Database(sqlite_url(tmp_path / name))
        await db.upgrade()
        commit = GroupCommit(db.engine, writer=db.writer if direct else None)
        await commit.write(_rows(when, output=OUTPUT, serialized=serialized))
        await db.dispose()
        dumps.append(_dump(tmp_path / name))
    assert dumps[0] == dumps[1] == dumps[2]
    assert json.loads(dumps[0]["run_steps"][0][10]) == OUTPUT


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_a_failing_batch_commits_nothing_and_raises_sqlalchemys_error(
    tmp_path: Path, synchronous: str
) -> None:
    db = Database(sqlite_url(tmp_path / "p.db"), sqlite_synchronous=synchronous)
    await db.upgrade()
    writer = db.writer
    assert writer is not None
    when = datetime.now(UTC)
    rows = _rows(when)
    groups = [(w.statement.sql, [w.params]) for w in rows[:1]]
    await writer.apply(groups)
    duplicate_step_twice = [(rows[1].statement.sql, [rows[1].params, rows[1].params])]
    with pytest.raises(IntegrityError):
        await writer.apply(duplicate_step_twice)
    await db.dispose()
    dump = _dump(tmp_path / "p.db")
    assert len(dump["runs"]) == 1 and dump["run_steps"] == []


async def test_group_commit_falls_back_to_each_caller_alone(tmp_path: Path) -> None:
    """One caller's bad write must not fail the others batched with it."""
    db = Database(sqlite_url(tmp_path / "g.db"))
    await db.upgrade()
    commit = GroupCommit(db.engine, writer=db.writer)
    when = datetime.now(UTC)
    good = _rows(when)[:2]
    bad = [Write(Statement(INSERT_STEPS.sql, 1), {**good[1].params, "run_id": "missing"})]
    results = await asyncio.gather(commit.write(good), commit.write(bad), return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], IntegrityError)  # foreign key: no such run
    await db.dispose()
    dump = _dump(tmp_path / "g.db")
    assert len(dump["runs"]) == 1 and len(dump["run_steps"]) == 1


async def test_a_writer_waits_for_another_connections_write_lock(tmp_path: Path) -> None:
    """Another process holding the write lock delays a batch; it does not fail it."""
    db = Database(sqlite_url(tmp_path / "l.db"))
    await db.upgrade()
    writer = db.writer
    assert writer is not None
    other = sqlite3.connect(tmp_path / "l.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    rows = _rows(datetime.now(UTC))
    task = asyncio.create_task(writer.apply([(rows[0].statement.sql, [rows[0].params])]))
    await asyncio.sleep(0.3)
    assert not task.done()  # waiting, and the event loop is free meanwhile
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(task, 5)
    await db.dispose()
    assert len(_dump(tmp_path / "l.db")["runs"]) == 1


async def test_a_writer_gives_up_after_its_busy_time(tmp_path: Path) -> None:
    db = Database(sqlite_url(tmp_path / "b.db"))
    await db.upgrade()
    writer = db.writer
    assert writer is not None
    writer.busy_seconds = 0.2
    other = sqlite3.connect(tmp_path / "b.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    rows = _rows(datetime.now(UTC))
    with pytest.raises(OperationalError):
        await writer.apply([(rows[0].statement.sql, [rows[0].params])])
    other.execute("ROLLBACK")
    other.close()
    await db.dispose()
