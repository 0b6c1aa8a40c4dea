"""Issue B: the same engine figures with the run store on (SQLite, then PostgreSQL).

- per-step overhead of a 40-step chain of 10 ms steps (target 1 ms)
- 10,000 noop steps in a layered DAG (target 2 s, peak RSS 200 MB), in a child process
- runs created per second, 1-step missions (target 1,000/s), 16 creators at once
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ._util import Report, chain, engine

PG_ADMIN = os.environ.get("PURAIFY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")

CHILD = r"""
import asyncio, json, os, sys, time
from bench._util import engine, layered
from puraify.runtime.executor import RunHandle
from puraify.store import Database, RunStore

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

async def main():
    db = Database(os.environ["BENCH_DB_URL"])
    store = RunStore(db)
    eng = engine(recorder=store)
    prepared = eng.prepare(json.dumps(layered(10_000, width=100)))
    start = time.perf_counter()
    run_id, _ = await store.create_run(prepared.mission)
    result = await eng.run(prepared.compiled, handle=RunHandle(run_id=run_id))
    took = time.perf_counter() - start
    assert result.status.value == "completed", result.error
    await eng.aclose()
    await db.dispose()
    print(json.dumps({"seconds": took, "rss_mb": hwm()}))

asyncio.run(main())
"""


async def _pg_create() -> str | None:
    try:
        import asyncpg

        conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    except Exception as exc:  # no PostgreSQL here: the figures say so
        print(f"  (PostgreSQL not reachable: {exc})")
        return None
    name = f"puraify_bench_{uuid.uuid4().hex[:8]}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return PG_ADMIN.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0] + f"/{name}"


async def _pg_drop(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    await conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    await conn.close()


async def _measure(url: str) -> dict[str, Any]:
    from puraify.runtime.executor import RunHandle
    from puraify.store import Database, RunStore

    db = Database(url)
    await db.upgrade()
    store = RunStore(db)
    eng = engine(recorder=store)
    prepared = eng.prepare(json.dumps(chain(40, "bench_sleep", {"ms": 10})))
    runs = []
    for _ in range(4):
        start = time.perf_counter()
        run_id, _ = await store.create_run(prepared.mission)
        result = await eng.run(prepared.compiled, handle=RunHandle(run_id=run_id))
        runs.append(time.perf_counter() - start)
        assert result.status.value == "completed"
    base = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(40):
            await asyncio.sleep(0.01)
        base.append(time.perf_counter() - start)

    one = eng.prepare("steps:\n  - {id: a, step_type: noop}\n").mission
    created = 0
    stop = time.perf_counter() + 3.0

    async def creator() -> None:
        nonlocal created
        while time.perf_counter() < stop and created < 20_000:
            await store.create_run(one)
            created += 1

    start = time.perf_counter()
    await asyncio.gather(*(creator() for _ in range(16)))
    rate = created / (time.perf_counter() - start)
    await eng.aclose()
    await db.dispose()
    return {"chain": min(runs), "base": min(base), "rate": rate}


def _child(url: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "BENCH_DB_URL": url},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(report: Report) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str | None]] = [
            ("sqlite", f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        ]
        backends.append(("postgres", asyncio.run(_pg_create())))
        for label, url in backends:
            if url is None:
                continue
            try:
                m = asyncio.run(_measure(url))
                report.add(
                    f"[{label}] per-step overhead, 40-step chain of 10 ms",
                    (m["chain"] - m["base"]) / 40 * 1000,
                    "ms",
                    target=1.0,
                    note=f"chain {m['chain'] * 1000:.1f} ms vs sleeps {m['base'] * 1000:.1f} ms",
                )
                child = _child(url)
                report.add(
                    f"[{label}] 10,000 noop steps layered, persisted",
                    child["seconds"],
                    "s",
                    target=2.0,
                )
                report.add(f"[{label}]   peak RSS of that run", child["rss_mb"], "MB", target=200.0)
                report.add(
                    f"[{label}] runs created per second (1-step, 16 callers)",
                    m["rate"],
                    "runs/s",
                    target=1000.0,
                    higher_is_better=True,
                )
            finally:
                if label == "postgres":
                    asyncio.run(_pg_drop(url))
