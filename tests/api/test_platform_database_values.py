"""database.create_record with every kind of awkward value, on PostgreSQL, MariaDB and SQLite:
each is stored or refused as the step's own fault (invalid_parameters, constraint_violation),
never a retryable connection error, never a crash, and never a reason to open the circuit
breaker for the project's other records."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import ApiFactory
from tests.api.test_platform_database import KINDS, database, db_api, record

TABLES = {
    "postgresql": "CREATE TABLE {t} (id SERIAL PRIMARY KEY, n INTEGER, num NUMERIC(10,2), j JSONB,"
    " b BYTEA, d DATE, s VARCHAR(5), f DOUBLE PRECISION, chk INTEGER CHECK (chk > 0),"
    " nn TEXT NOT NULL DEFAULT 'x')",
    "mysql": "CREATE TABLE {t} (id INT AUTO_INCREMENT PRIMARY KEY, n INT, num DECIMAL(10,2),"
    " j JSON, b BLOB, d DATE, s VARCHAR(5), f DOUBLE, chk INT CHECK (chk > 0),"
    " nn TEXT NOT NULL DEFAULT 'x')",
    "sqlite": "CREATE TABLE {t} (id INTEGER PRIMARY KEY, n INTEGER, num NUMERIC(10,2), j JSON,"
    " b BLOB, d DATE, s VARCHAR(5), f FLOAT, chk INTEGER CHECK (chk > 0),"
    " nn TEXT NOT NULL DEFAULT 'x')",
}

STORED = [{"j": {"a": [1, {"b": None}]}}, {"b": "AAEC"}, {"d": "2026-12-24"}, {"n": True}]
REFUSED = [
    {"n": {"a": 1}},
    {"n": [1, 2]},
    {"n": 10**30},
    {"n": "9" * 30},
    {"num": "1e400"},
    {"b": "!!!"},
    {"d": {"x": 1}},
    {"d": "yesterday"},
    {"f": "abc"},
    {"s": "x" * 100},
    {"chk": -1},
    {"nn": None},
]
THE_STEPS_FAULT = {"invalid_parameters", "constraint_violation"}


@pytest.mark.parametrize("kind", KINDS)
async def test_awkward_values_are_stored_or_refused_as_the_steps_own_fault(
    make_api: ApiFactory, tmp_path: Any, kind: str
) -> None:
    async with database(kind, tmp_path / "home") as db:
        await db.execute(f"DROP TABLE {db.table}")
        await db.execute(TABLES[kind].format(t=db.table))
        api, owner = await db_api(make_api, db.url, circuit_failures=2)
        for values in STORED:
            done = await api.client.post("/execute", json=record(db.table, **values),
                                         headers=owner)  # fmt: skip
            assert done.json()["status"] == "success", (values, done.text)
        for values in REFUSED:
            refused = await api.client.post("/execute", json=record(db.table, **values),
                                            headers=owner)  # fmt: skip
            error = refused.json().get("error") or {}
            if kind == "sqlite" and refused.json()["status"] == "success":
                continue  # SQLite stores what its loose types take (a long text, a big text)
            assert error.get("code") in THE_STEPS_FAULT, (values, refused.text)
            assert error.get("retryable") is False, (values, refused.text)
        # a dozen refusals later the breaker is still closed: they were the step's faults
        last = await api.client.post("/execute", json=record(db.table, n=1), headers=owner)
        assert last.json()["status"] == "success", last.text
