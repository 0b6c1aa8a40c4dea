"""Backend fixtures: one test body runs on SQLite and on PostgreSQL.

PostgreSQL is the local service (127.0.0.1:5432, trust auth); each test gets a fresh database.
When it is not reachable the PostgreSQL variants skip with the reason, except under CI=true,
where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from puraify.store import Database, RunStore, sqlite_url

PG_ADMIN = os.environ.get("PURAIFY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_database() -> str:
    import asyncpg

    name = f"puraify_{uuid.uuid4().hex[:12]}"
    try:
        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI=true and is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {exc}")
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def _pg_drop(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        db = Database(sqlite_url(tmp_path / "puraify.db"))
        await db.upgrade()
        yield db
        await db.dispose()
        return
    name = await _pg_database()
    db = Database(
        PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"
    )
    try:
        await db.upgrade()
        yield db
    finally:
        await db.dispose()
        await _pg_drop(name)


@pytest.fixture
async def store(database: Database) -> RunStore:
    return RunStore(database, max_output_bytes=2000)
