"""Issue C: a load run against a real server process.

``POST /execute`` of an ``http`` action to a local receiver, sustained (30 s by default,
``PURAIFY_BENCH_API_SECONDS``) by 64 concurrent clients: actions per second (target 2,000/s),
p50/p99 latency (target p99 50 ms), errors (target 0), server RSS before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from ._util import Report, free_port, puraify_json, wait_ready


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _tree_rss_mb(pid: int) -> float:
    """RSS of the server and its worker processes."""
    total = _rss_mb(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += _rss_mb(int(child))
    return total


def execute_body(target: str) -> dict[str, Any]:
    """``POST /execute`` of an ``http`` action to ``target``'s /hook."""
    return {
        "action": "http",
        "platform": "webhook",
        "parameters": {"url": f"{target}/hook", "method": "POST", "body": {"n": 1}},
    }


async def load(
    url: str, token: str, body: dict[str, Any], seconds: float, clients: int
) -> tuple[int, int, list[float]]:
    """``clients`` closed-loop callers of ``POST /execute`` with ``body``, each with one request
    in flight, for ``seconds``: (requests, errors, latencies).

    The load generator shares the two cores with the server, so it must cost far less than the
    server per request: aiohttp spends ~65 us of CPU on a request here, httpx ~600 us (which
    would eat a core at 2,000 requests/s and measure itself; see docs/benchmarks.md).
    """
    import aiohttp

    latencies: list[float] = []
    errors = 0
    data = json.dumps(body).encode()
    stop = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        base_url=url, headers=headers, connector=connector, timeout=timeout
    ) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    async with session.post("/execute", data=data) as r:
                        await r.read()
                        ok = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                latencies.append(time.perf_counter() - t0)
                if not ok:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(clients)))
    return len(latencies), errors, latencies


def run(report: Report) -> None:
    seconds = float(os.environ.get("PURAIFY_BENCH_API_SECONDS", "30"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "PURAIFY_HOME": str(Path(tmp) / "home"),
            "PURAIFY_MODE": "server",
            "PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]',
            "PURAIFY_LOG_LEVEL": "WARNING",
        }
        token = puraify_json(
            "tokens", "create", "--project", "bench", "--scope", "execute", env=env
        )["token"]
        receiver = subprocess.Popen(
            # keeps no requests: a receiver whose memory grows with the run would add its own
            # collector pauses to the latencies measured
            [sys.executable, "-m", "puraify.testing.serve", "--keep", "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        target = receiver.stdout.readline().split()[1]
        port = free_port()
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115
        workers = os.environ.get("PURAIFY_BENCH_API_WORKERS", "2")
        server = subprocess.Popen(
            [sys.executable, "-m", "puraify", "serve", "--port", str(port), "--workers", workers],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url)
            body = execute_body(target)
            uvloop.run(load(url, token, body, 3.0, 32))  # warm-up
            before = _tree_rss_mb(server.pid)
            count, errors, lat = uvloop.run(load(url, token, body, seconds, 64))
            after = _tree_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
            receiver.terminate()
            receiver.wait(timeout=10)
            log.close()
    lat.sort()
    report.add(
        f"POST /execute (http action), {seconds:.0f} s, 64 clients, {workers} workers",
        count / seconds,
        "act/s",
        target=2000.0,
        higher_is_better=True,
    )
    report.add("  p50 latency", statistics.median(lat) * 1000, "ms")
    report.add("  p99 latency", lat[int(len(lat) * 0.99) - 1] * 1000, "ms", target=50.0)
    report.add("  errors", float(errors), "count", target=0.0)
    report.add("  server RSS before / after (MB)", after, "MB", note=f"before {before:.1f} MB")
