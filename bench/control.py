"""Engine Control's cost: a check in-process, uncached and cached; ``POST /actions/check``
against a real server, sustained; and what the policy adds to ``POST /execute``, as a ratio
to the same calls with the policy off, in one run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from puraify.actions import default_registry
from puraify.api import create_app
from puraify.control.policy import AuditLog, LocalPolicy
from puraify.control.registry import ControlRegistry
from puraify.service.compose import open_database
from puraify.settings import Settings
from puraify.testing import Lifespan

from ._util import Report, free_port, puraify_json, wait_ready

_PURAIFY = (sys.executable, "-m", "puraify")


async def _in_process(home: Path) -> tuple[float, float]:
    """Seconds per check: uncached (every check reads the store), cached."""
    db = await open_database(Settings(home=home))
    registry = ControlRegistry(db)
    await registry.register("bench", {"slack": {"*": ["slack:write"]}}, by="bench")
    audit = AuditLog(registry)
    figures = []
    try:
        for cache in (0.0, 60.0):
            policy = LocalPolicy(
                registry, default_registry(), audit, flag_defaults={}, cache_seconds=cache
            )
            await policy.check("bench", "slack", "send")  # warm
            n = 2_000 if cache == 0 else 100_000
            start = time.perf_counter()
            for _ in range(n):
                await policy.check("bench", "slack", "send")
            figures.append((time.perf_counter() - start) / n)
            await audit.flush()
    finally:
        await audit.aclose()
        await db.dispose()
    return figures[0], figures[1]


async def _execute_ratio(home: Path, calls: int = 400) -> tuple[float, float]:
    """Seconds per ``POST /execute`` of a noop, in-process, with the policy, then without."""
    settings = Settings(home=home, mode="server", log_level="WARNING")
    app = create_app(settings, environ={})
    body = {"action": "noop", "platform": "local", "parameters": {}}
    async with Lifespan(app):
        application = app.state.application
        _, token = await application.tokens.create("bench", {"execute"})
        headers = {"Authorization": f"Bearer {token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def measure() -> float:
                for _ in range(50):  # warm
                    await client.post("/execute", json=body, headers=headers)
                best = float("inf")
                for _ in range(3):
                    start = time.perf_counter()
                    for _ in range(calls):
                        answer = await client.post("/execute", json=body, headers=headers)
                        assert answer.status_code == 200, answer.text
                    best = min(best, time.perf_counter() - start)
                return best / calls

            with_policy = await measure()
            application.runs.policy = None  # bench only: the same service without its gate
            application.runs._engines.clear()
            without = await measure()
    return with_policy, without


async def _http_load(url: str, headers: dict[str, str], seconds: float, clients: int) -> int:
    import aiohttp

    done = 0
    body = json.dumps({"platform": "slack", "action_type": "send_message"}).encode()
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        base_url=url, headers={**headers, "Content-Type": "application/json"}, connector=connector
    ) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.post("/actions/check", data=body) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return done


def _http(home: Path, seconds: float) -> float:
    env = {**os.environ, "PURAIFY_HOME": str(home), "PURAIFY_LOG_LEVEL": "WARNING"}
    admin = puraify_json("init", env=env)
    permissions = '{"slack": {"*": []}}'
    key = puraify_json("engines", "register", "bot", "--permissions", permissions, env=env)[
        "engine_key"
    ]
    assert admin["engine_key"]
    port = free_port()
    log = open(home.parent / "control.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [*_PURAIFY, "serve", "control", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url)
        headers = {"X-Engine-ID": "bot", "X-Engine-Key": key}
        asyncio.run(_http_load(url, headers, 2.0, 32))  # warm-up
        done = asyncio.run(_http_load(url, headers, seconds, 64))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    return done / seconds


def run(report: Report) -> None:
    seconds = float(os.environ.get("PURAIFY_BENCH_CONTROL_SECONDS", "10"))
    with tempfile.TemporaryDirectory() as tmp:
        uncached, cached = asyncio.run(_in_process(Path(tmp) / "a"))
        with_policy, without = asyncio.run(_execute_ratio(Path(tmp) / "b"))
        (Path(tmp) / "c").mkdir()
        checks = _http(Path(tmp) / "c" / "home", seconds)
    report.add(
        "policy check in-process, uncached (reads the store)", uncached * 1e3, "ms", target=1.0
    )
    report.add("policy check in-process, cached", cached * 1e6, "us", target=20.0)
    report.add(
        f"POST /actions/check, real server, 2 workers, 64 clients, {seconds:.0f} s",
        checks,
        "chk/s",
        target=2000.0,
        higher_is_better=True,
    )
    report.add(
        "POST /execute (noop) in-process, with Engine Control",
        with_policy * 1e3,
        "ms",
        target=1.1 * without * 1e3,
        baseline=without * 1e3,
        baseline_name="policy off",
        note="target: 1.1x the same calls without the policy",
    )
