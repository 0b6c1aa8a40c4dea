"""1,000 parallel http steps at concurrency 100 against a local server (target 1 s)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx

from ._util import Report, engine, layered


async def _ours(url: str) -> float:
    eng = engine(ssrf_allow_loopback=True)
    doc = layered(
        1000,
        width=1000,
        step_type="http",
        params={"url": f"{url}/hit", "method": "POST", "body": {"n": 1}},
    )
    doc["config"] = {"max_concurrent_steps": 100}
    prepared = eng.prepare(json.dumps(doc))
    warm = eng.prepare(json.dumps({**doc, "steps": doc["steps"][:100]}))
    await eng.run(warm.compiled)
    start = time.perf_counter()
    result = await eng.run(prepared.compiled)
    took = time.perf_counter() - start
    assert result.status.value == "completed", result.error
    await eng.aclose()
    return took


async def _raw(url: str) -> float:
    sem = asyncio.Semaphore(100)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:

        async def one() -> None:
            async with sem:
                r = await client.post(f"{url}/hit", json={"n": 1})
                r.raise_for_status()

        await asyncio.gather(*(one() for _ in range(100)))
        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(1000)))
        return time.perf_counter() - start


def run(report: Report) -> None:
    # The receiver runs in its own process so it does not share a GIL with the engine.
    server = subprocess.Popen(
        [sys.executable, "-m", "puraify.testing.serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[1]
        raw = asyncio.run(_raw(url))
        ours = asyncio.run(_ours(url))
    finally:
        server.terminate()
        server.wait(timeout=10)
    report.add(
        "1,000 parallel http steps, concurrency 100",
        ours,
        "s",
        target=1.0,
        baseline=raw,
        baseline_name="raw httpx (one pool of 100), same server",
    )
