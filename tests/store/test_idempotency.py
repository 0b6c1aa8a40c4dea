"""Idempotency-Key records: a key whose request died is taken over once its lease runs out; a
live request keeps its key (on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select

from puraify.store.database import Database
from puraify.store.idempotency import IdempotencyConflict, IdempotencyStore
from puraify.store.tables import idempotency_records
from tests.helpers import ManualClock, poll


async def _pending(db: Database, key: str, request_hash: str, lease: Any) -> None:
    """What a request leaves behind when its process dies before it answers."""
    clock = ManualClock()
    async with db.engine.begin() as conn:
        await conn.execute(
            insert(idempotency_records).values(
                project_id="p",
                key=key,
                request_hash=request_hash,
                status_code=None,
                response=None,
                created_at=clock.now(),
                lease_until=lease,
            )
        )


async def test_a_key_whose_request_died_is_taken_over_once_its_lease_ran_out(
    database: Database,
) -> None:
    import hashlib

    clock = ManualClock()
    store = IdempotencyStore(database, wait_seconds=30, lease_seconds=10, clock=clock.now)
    digest = hashlib.sha256(b"req").hexdigest()
    await _pending(database, "dead", digest, clock.now() - timedelta(seconds=1))
    calls: list[int] = []

    async def produce() -> tuple[int, Any]:
        calls.append(1)
        return 202, {"run_id": "r1"}

    assert await store.run("p", "dead", b"req", produce) == (202, {"run_id": "r1"})
    assert calls == [1]
    # answered now: repeats get that answer, another request a conflict
    assert await store.run("p", "dead", b"req", produce) == (202, {"run_id": "r1"})
    assert calls == [1]
    with pytest.raises(IdempotencyConflict):
        await store.run("p", "dead", b"other", produce)
    # a record from before leases existed, still pending, is taken over at once
    await _pending(database, "old", digest, None)
    assert await store.run("p", "old", b"req", produce) == (202, {"run_id": "r1"})
    assert calls == [1, 1]


async def test_a_live_request_keeps_its_key_by_renewing_its_lease(database: Database) -> None:
    clock = ManualClock()
    owner = IdempotencyStore(database, lease_seconds=0.3, clock=clock.now)
    release = asyncio.Event()

    async def slow() -> tuple[int, Any]:
        await release.wait()
        return 200, {"ok": True}

    first = asyncio.create_task(owner.run("p", "live", b"req", slow))

    async def lease() -> Any:
        async with database.engine.connect() as conn:
            return (
                await conn.execute(
                    select(idempotency_records.c.lease_until).where(
                        idempotency_records.c.key == "live"
                    )
                )
            ).scalar()

    granted = await poll(lease, lambda v: v is not None, what="the key recorded")
    clock.advance(60)  # time passes; the owner is alive, so it renews its lease
    await poll(lease, lambda v: v > granted + timedelta(seconds=59), what="the lease renewed")
    # a repeat now finds the lease valid: it waits, and gives up without taking the key over
    repeat = IdempotencyStore(database, wait_seconds=0.2, lease_seconds=0.3, clock=clock.now)

    async def never() -> tuple[int, Any]:
        raise AssertionError("a live request's key was taken over")

    with pytest.raises(IdempotencyConflict, match="still in progress"):
        await repeat.run("p", "live", b"req", never)
    release.set()
    assert await first == (200, {"ok": True})
    assert await repeat.run("p", "live", b"req", never) == (200, {"ok": True})
