"""database.create_record against the running PostgreSQL and MariaDB and against SQLite: the
seeds' names, the new key, values converted to the columns' types, SEC-11 (bound parameters
only; names from a mission never become SQL), SEC-01 for the server's host, constraints, a
missing or refused credential, a connection lost then retried, a budget that queues, a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from puraify.settings import Settings
from tests.api.conftest import Api, ApiFactory
from tests.helpers import Flaky, listening, service_or_skip, silent_server

PG = ("127.0.0.1", 5432)
MARIADB = ("127.0.0.1", 3306)

DDL = {
    "postgresql": "CREATE TABLE {t} (id SERIAL PRIMARY KEY, number VARCHAR(40) UNIQUE NOT NULL,"
    " total NUMERIC(10, 2), placed_at TIMESTAMP, note TEXT)",
    "mysql": "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, number VARCHAR(40) UNIQUE"
    " NOT NULL, total DECIMAL(10, 2), placed_at DATETIME, note TEXT)",
    "sqlite": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, number VARCHAR(40) UNIQUE NOT NULL,"
    " total NUMERIC(10, 2), placed_at TIMESTAMP, note TEXT)",
}


@dataclass
class Database:
    kind: str
    url: str  # what the credential holds
    admin: str  # what the test reads and writes the table with
    table: str

    async def execute(self, statement: str) -> list[Any]:
        engine = create_async_engine(self.admin)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(sa.text(statement))
                return list(result.fetchall()) if result.returns_rows else []
        finally:
            await engine.dispose()


@contextlib.asynccontextmanager
async def database(kind: str, home: Any) -> AsyncIterator[Database]:
    table = f"orders_{uuid.uuid4().hex[:10]}"
    if kind == "postgresql":
        service_or_skip("PostgreSQL", PG)
        url = "postgresql://postgres@127.0.0.1:5432/test"
        db = Database(kind, url, "postgresql+asyncpg://postgres@127.0.0.1:5432/test", table)
    elif kind == "mysql":
        service_or_skip("MariaDB", MARIADB)
        db = Database(
            kind,
            "mariadb://root@127.0.0.1:3306/test",
            "mysql+asyncmy://root@127.0.0.1/test",
            table,
        )
        engine = create_async_engine("mysql+asyncmy://root@127.0.0.1/")
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE DATABASE IF NOT EXISTS test"))
        await engine.dispose()
    else:
        # the server profile keeps a project's SQLite files outside every workspace, where the
        # operator creates their tables
        folder = Settings(home=home).databases_dir("a")
        folder.mkdir(parents=True, exist_ok=True)
        db = Database(kind, "sqlite:///orders.db", f"sqlite+aiosqlite:///{folder}/orders.db", table)
    await db.execute(DDL[kind].format(t=table))
    try:
        yield db
    finally:
        await db.execute(f"DROP TABLE {table}")


async def db_api(
    make_api: ApiFactory, url: str | None, **settings: Any
) -> tuple[Api, dict[str, str]]:
    api: Api = await make_api(platform_rate_limits={}, **settings)
    owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute', 'runs:read')}"}
    if url is not None:
        put = await api.client.put(
            "/vault/credentials/a/database",
            json={"type": "database_url", "value": url},
            headers=owner,
        )
        assert put.status_code < 300, put.text
    return api, owner


def record(table: str, **values: Any) -> dict[str, Any]:
    return {
        "action": "create_record",
        "platform": "database",
        "parameters": {"table": table, "values": values},
    }


KINDS = ["postgresql", "mysql", "sqlite"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_record_is_inserted_with_its_values_bound(
    make_api: ApiFactory, tmp_path: Any, kind: str
) -> None:
    hostile = "x'); DROP TABLE {t}; --"
    async with database(kind, tmp_path / "home") as db:
        api, owner = await db_api(make_api, db.url)
        note = hostile.format(t=db.table)
        done = await api.client.post(
            "/execute",
            json=record(db.table, number="A-1003", total="42.5", placed_at="2026-12-02T10:00:00",
                        note=note),
            headers=owner,
        )  # fmt: skip
        body = done.json()
        assert done.status_code == 200 and body["status"] == "success", done.text
        new_id = body["result"]["id"]
        assert body["result"]["key"] == {"id": new_id} and isinstance(new_id, int)
        seed_002 = await api.client.post(
            "/perform_action",
            json={"user_id": "u", "platform": "database", "action_type": "create_record",
                  "payload": {"table": db.table, "record": {"number": "A-1004", "total": 7}}},
            headers=owner,
        )  # fmt: skip
        assert seed_002.json()["status"] == "success", seed_002.text
        assert seed_002.json()["result"]["id"] == new_id + 1
        rows = await db.execute(
            f"SELECT number, total, placed_at, note FROM {db.table} ORDER BY id"
        )
        assert [r[0] for r in rows] == ["A-1003", "A-1004"]
        assert Decimal(str(rows[0][1])) == Decimal("42.50")
        assert str(rows[0][2]).startswith("2026-12-02") and rows[0][3] == note  # stored literally


@pytest.mark.parametrize("kind", KINDS)
async def test_sec11_names_from_a_mission_never_become_sql(
    make_api: ApiFactory, tmp_path: Any, kind: str
) -> None:
    async with database(kind, tmp_path / "home") as db:
        api, owner = await db_api(make_api, db.url)
        for table in (f"{db.table}; DROP TABLE {db.table}", f'{db.table}" --', "a.b.c"):
            refused = await api.client.post("/execute", json=record(table, number="1"),
                                            headers=owner)  # fmt: skip
            assert refused.json()["error"]["code"] == "invalid_parameters", refused.text
            assert refused.json()["error"]["field"].endswith("table")
        column = await api.client.post(
            "/execute",
            json=record(db.table, **{"number) VALUES ('x'); DROP TABLE t; --": "1"}),
            headers=owner,
        )
        assert column.json()["error"]["code"] == "invalid_parameters", column.text
        missing = await api.client.post("/execute", json=record(db.table + "_none", number="1"),
                                        headers=owner)  # fmt: skip
        assert missing.json()["error"]["code"] == "not_found", missing.text
        wrong = await api.client.post(
            "/execute", json=record(db.table, number="A-9", placed_at="yesterday"), headers=owner
        )
        assert wrong.json()["error"]["code"] == "invalid_parameters", wrong.text
        assert "(column placed_at)" in wrong.json()["reason"], wrong.text
        assert await db.execute(f"SELECT COUNT(*) FROM {db.table}") == [(0,)]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_constraint_is_a_conflict_and_the_first_record_stays(
    make_api: ApiFactory, tmp_path: Any, kind: str
) -> None:
    async with database(kind, tmp_path / "home") as db:
        api, owner = await db_api(make_api, db.url)
        first = await api.client.post("/execute", json=record(db.table, number="A-1"),
                                      headers=owner)  # fmt: skip
        assert first.json()["status"] == "success", first.text
        again = await api.client.post("/execute", json=record(db.table, number="A-1"),
                                      headers=owner)  # fmt: skip
        assert again.status_code == 409 and again.json()["error"]["code"] == "constraint_violation"
        assert again.json()["error"]["retryable"] is False
        assert await db.execute(f"SELECT COUNT(*) FROM {db.table}") == [(1,)]


async def test_credentials_missing_or_refused(make_api: ApiFactory) -> None:
    service_or_skip("PostgreSQL", PG)
    service_or_skip("MariaDB", MARIADB)
    api, owner = await db_api(make_api, None)
    missing = await api.client.post("/execute", json=record("orders", number="1"), headers=owner)
    assert missing.json()["status"] == "fail", missing.text
    assert missing.json()["reason"] == "Missing token or insufficient scope"
    for url in (
        "postgresql://nobody_" + uuid.uuid4().hex[:8] + "@127.0.0.1:5432/test",
        "mysql://root:wrong-" + uuid.uuid4().hex[:8] + "@127.0.0.1:3306/test",
    ):
        await api.client.put(
            "/vault/credentials/a/database",
            json={"type": "database_url", "value": url},
            headers=owner,
        )
        refused = await api.client.post("/execute", json=record("orders", number="1"),
                                        headers=owner)  # fmt: skip
        assert refused.json()["error"]["code"] == "credential_invalid", refused.text
        assert "wrong-" not in refused.text


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("postgresql://u:p@169.254.169.254:5432/db", "ssrf_blocked"),
        ("mysql://u:p@10.0.0.7/db", "ssrf_blocked"),
        ("postgresql://u@[::ffff:169.254.169.254]:5432/db", "ssrf_blocked"),
        ("postgresql://u@0xa9fea9fe:5432/db", "ssrf_blocked"),
        # what would reach past the guard (a socket, a file) or is no database URL at all
        ("mysql://root@127.0.0.1/test?unix_socket=/run/mysqld/mysqld.sock", "invalid_credential"),
        ("postgresql://postgres@127.0.0.1/test?host=/var/run/postgresql", "invalid_credential"),
        ("postgresql://postgres@/test", "invalid_credential"),
        ("sqlite:////etc/passwd", "invalid_credential"),
        ("sqlite:///../other-project.db", "invalid_credential"),
        ("sqlite:///", "invalid_credential"),
        ("mssql://sa@127.0.0.1/db", "invalid_credential"),
        ("not a url", "invalid_credential"),
        # an @ left unencoded in the password: the host would hold part of it
        ("postgresql://app:Sup3r@S3cretPassw0rd@db.example.com:5432/shop", "invalid_credential"),
    ],
)
async def test_sec01_the_servers_host_passes_the_egress_guard(
    make_api: ApiFactory, url: str, code: str
) -> None:
    api, owner = await db_api(make_api, url)
    refused = await api.client.post("/execute", json=record("t", a=1), headers=owner)
    assert refused.json()["error"]["code"] == code, refused.text
    assert "S3cretPassw0rd".lower() not in refused.text.lower()


def mission(table: str, **step: Any) -> dict[str, Any]:
    return {
        "name": "records",
        "steps": [
            {
                "id": "insert",
                "step_type": "database.create_record",
                "parameters": {"table": table, "values": {"number": "B-1"}, **step.pop("params", {})},
                **step,
            }
        ],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("proxy", "status", "attempts"),
    [
        # connections refused before the insert: nothing stored, so retried until it lands
        (lambda: Flaky(PG, drop=2), "success", 3),
        # the server committed and its answer was lost: the record may be stored, so the step
        # is not retried (a second insert would be a second record): unknown_outcome
        (lambda: Flaky(PG, cut_on=b"COMMIT\x00"), "failed", 1),  # COMMIT's CommandComplete
    ],
    ids=["refused-then-retried", "commit-answer-lost"],
)
async def test_a_lost_connection_never_stores_a_record_twice(
    make_api: ApiFactory,
    tmp_path: Any,
    proxy: Callable[[], Flaky],
    status: str,
    attempts: int,
) -> None:
    async with database("postgresql", tmp_path / "home") as db:
        await db.execute(f"ALTER TABLE {db.table} DROP CONSTRAINT {db.table}_number_key")
        async with listening(proxy().handle) as port:
            api, owner = await db_api(make_api, f"postgresql://postgres@127.0.0.1:{port}/test")
            done = await api.client.post(
                "/missions/execute?wait=true",
                json=mission(db.table, retry={"attempts": 3, "delay_ms": 10}),
                headers=owner,
            )
        step = done.json()["step_results"]["insert"]
        assert step["status"] == status and step["attempts"] == attempts, step
        if status == "failed":
            assert step["error"]["code"] == "unknown_outcome"
        assert await db.execute(f"SELECT number FROM {db.table}") == [("B-1",)]


async def test_a_budget_queues_records_instead_of_failing_them(
    make_api: ApiFactory, tmp_path: Any
) -> None:
    async with database("sqlite", tmp_path / "home") as db:
        api: Api = await make_api(platform_rate_limits={"database": "1/second"})
        owner = {"Authorization": f"Bearer {await api.token('a', 'vault', 'execute')}"}
        await api.client.put(
            "/vault/credentials/a/database",
            json={"type": "database_url", "value": db.url},
            headers=owner,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(
            *(
                api.client.post("/execute", json=record(db.table, number=f"Q-{i}"), headers=owner)
                for i in range(2)
            )
        )
        assert [a.json()["status"] for a in answers] == ["success", "success"]
        # the moving window admits the second a second after the first: a lower bound only
        assert loop.time() - started >= 0.9
        assert len(await db.execute(f"SELECT id FROM {db.table}")) == 2


async def test_a_database_that_never_answers_is_a_timeout(make_api: ApiFactory) -> None:
    async with silent_server() as port:
        api, owner = await db_api(make_api, f"postgresql://postgres@127.0.0.1:{port}/test")
        done = await api.client.post(
            "/missions/execute?wait=true",
            json=mission("orders", params={"timeout": 0.5}),
            headers=owner,
        )
    assert done.json()["step_results"]["insert"]["error"]["code"] == "timeout", done.text


def test_sqlite_files_are_the_projects_own_never_the_workspaces(tmp_path: Any) -> None:
    """A command-line run writes the project's file kept by the engine, not a file of that
    name in the workspace, which a command could have swapped for a link elsewhere."""
    from tests.helpers import cli

    workspace = tmp_path / "work"
    workspace.mkdir()
    home = tmp_path / "home"
    folder = Settings(home=home).databases_dir("default")
    folder.mkdir(parents=True)
    for place in (folder, workspace):
        with sqlite3.connect(place / "orders.db") as conn:
            conn.execute(DDL["sqlite"].format(t="orders"))
    env = {"PURAIFY_HOME": str(home)}
    stored = cli("vault", "set", "default", "database", "--type", "database_url",
                 cwd=workspace, env=env, input="sqlite:///orders.db")  # fmt: skip
    assert stored.returncode == 0, stored.stderr
    (workspace / "m.yaml").write_text(
        "name: local\nsteps:\n  - id: insert\n    step_type: create_record\n"
        "    parameters: {table: orders, values: {number: L-1, total: 3}}\n"
    )
    ran = cli("run", "m.yaml", "--json", cwd=workspace, env=env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with sqlite3.connect(folder / "orders.db") as conn:
        assert conn.execute("SELECT number, total FROM orders").fetchall() == [("L-1", 3)]
    with sqlite3.connect(workspace / "orders.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchall() == [(0,)]


async def test_the_engines_environment_never_stands_in_for_a_password(
    make_api: ApiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that asks for a cleartext password gets the credential's (none), never the
    engine's PGPASSWORD or ~/.pgpass."""
    secret = "engine-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("PGPASSWORD", secret)
    heard: list[bytes] = []

    async def asks_for_a_password(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        size = int.from_bytes(await reader.readexactly(4), "big")
        await reader.readexactly(size - 4)  # the startup message
        writer.write(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))  # cleartext, please
        await writer.drain()
        with contextlib.suppress(asyncio.IncompleteReadError):
            kind = await reader.readexactly(1)
            size = int.from_bytes(await reader.readexactly(4), "big")
            heard.append(kind + await reader.readexactly(size - 4))
        writer.transport.abort()

    async with listening(asks_for_a_password) as port:
        api, owner = await db_api(make_api, f"postgresql://postgres@127.0.0.1:{port}/test")
        await api.client.post("/execute", json=record("orders", number="1"), headers=owner)
    assert heard and heard[0][:1] == b"p"  # it did answer the request ...
    assert secret.encode() not in b"".join(heard)  # ... with the credential's empty password


async def test_an_unknown_sqlite_database_is_not_found_and_never_created(
    make_api: ApiFactory, tmp_path: Any
) -> None:
    api, owner = await db_api(make_api, "sqlite:///nothing-here.db")
    missing = await api.client.post("/execute", json=record("t", a=1), headers=owner)
    assert missing.json()["error"]["code"] == "not_found", missing.text
    folder = Settings(home=tmp_path / "home").databases_dir("a")
    assert not (folder / "nothing-here.db").exists()
