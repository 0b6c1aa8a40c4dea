"""The sandbox under attack: a real server (one process, the server profile) runs each hostile
mission of the sandbox's findings while another client asks ``/healthz`` every 20 ms.

For each attack: how long the attack took against its timeout plus a margin (target: the step's
timeout plus 2 s), and the slowest ``/healthz`` answer while it ran (target: 200 ms). The
baseline is the slowest ``/healthz`` answer with nothing else running.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

from puraify.testing import LocalServer, RecordingSink, Reply

from ._util import Report, puraify_json, serving

_MARGIN = 2.0  # seconds past a step's timeout an attack may take (start, answer, store)
_TIMEOUT = 3  # every attack step's timeout, seconds


def _gzip_bomb() -> bytes:
    """A few KB that inflate, twice, to 512 MiB of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * (1 << 20)
    inner = b"".join(packer.compress(block) for _ in range(512)) + packer.flush()
    return gzip.compress(inner, 9)


def _step(step_type: str, parameters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": step_type,
        "step_type": step_type,
        "timeout_seconds": _TIMEOUT,
        "parameters": parameters,
        **extra,
    }


def _attacks(bomb_url: str) -> dict[str, dict[str, Any]]:
    evil = "a" * 40_000 + "!"
    detach = (
        "import os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
        "time.sleep(600)\n"
    )
    return {
        "validate_schema, (a+)+$ on 40 KB": {
            "steps": [
                _step(
                    "validate_schema",
                    {"data": {"s": evil}, "schema": {"properties": {"s": {"pattern": "^(a+)+$"}}}},
                )
            ]
        },
        "edit_file, (a+)+$ on 40 KB": {
            "steps": [
                {
                    "id": "write",
                    "step_type": "create_file",
                    "parameters": {"path": "evil.txt", "content": evil},
                },
                _step(
                    "edit_file",
                    {"path": "evil.txt", "pattern": "(a+)+$", "replacement": "x", "regex": True},
                    depends_on=["write"],
                ),
            ]
        },
        "template width {{ '%.999999999d' % 1 }}": {
            "steps": [_step("noop", {"message": "{{ '%999999999d' % 1 }}"})]
        },
        "http, 3.5 KB gzip,gzip bomb (512 MiB)": {"steps": [_step("http", {"url": bomb_url})]},
        "command, setsid() child past its timeout": {
            "steps": [_step("command", {"command": sys.executable, "args": ["-c", detach]})]
        },
        "csv_process, 60,000 rows": {
            "steps": [
                {
                    "id": "write",
                    "step_type": "create_file",
                    "parameters": {
                        "path": "big.csv",
                        "content": "a,b\n" + "".join(f"{i},{i}\n" for i in range(60_000)),
                    },
                },
                _step("csv_process", {"file": "big.csv"}, depends_on=["write"]),
            ]
        },
        "a 900 KB mission body": {
            "steps": [
                {"id": f"s{i}", "step_type": "noop", "parameters": {"message": "x" * 40}}
                for i in range(9_000)
            ]
        },
    }


async def _health(url: str, stop: asyncio.Event) -> list[float]:
    """Latencies of ``/healthz``, one request in flight, every 20 ms until ``stop``."""
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            await client.get("/healthz")
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.02)
    return latencies


async def _attack(url: str, token: str, mission: dict[str, Any]) -> tuple[float, float, str]:
    """(seconds the attack took, slowest /healthz in ms meanwhile, how the attack ended)."""
    stop = asyncio.Event()
    prober = asyncio.create_task(_health(url, stop))
    await asyncio.sleep(0.1)  # the prober has answers from before the attack too
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        start = time.perf_counter()
        answer = await client.post(
            "/missions/execute?wait=true", content=json.dumps(mission), headers=headers
        )
        took = time.perf_counter() - start
    stop.set()
    latencies = await prober
    if answer.status_code != 200:
        return took, max(latencies) * 1000, f"HTTP {answer.status_code}"
    steps = answer.json()["steps"]
    ended = [s["error"]["code"] for s in steps if s.get("error")] or [steps[-1]["status"]]
    return took, max(latencies) * 1000, ended[-1]


def run(report: Report) -> None:
    receiver = RecordingSink(keep=0)
    receiver.script("/bomb", Reply(200, _gzip_bomb(), {"Content-Encoding": "gzip, gzip"}))
    with tempfile.TemporaryDirectory() as tmp, LocalServer(receiver) as bombs:
        env = {
            **os.environ,
            "PURAIFY_HOME": str(Path(tmp) / "home"),
            "PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]',
            "PURAIFY_COMMAND_ENABLED": "true",
            "PURAIFY_COMMAND_ALLOW": json.dumps([sys.executable]),
            "PURAIFY_LOG_LEVEL": "WARNING",
        }
        token = puraify_json(
            "tokens", "create", "--project", "bench", "--scope", "execute", env=env
        )["token"]
        with serving(env, Path(tmp) / "server.log") as url:
            quiet = asyncio.run(_attack(url, token, {"steps": [_step("noop", {})]}))
            results = {
                name: asyncio.run(_attack(url, token, mission))
                for name, mission in _attacks(f"{bombs.url}/bomb").items()
            }
    report.add(
        "/healthz slowest answer, nothing else running",
        quiet[1],
        "ms",
        target=200.0,
    )
    for name, (took, slowest, status) in results.items():
        report.add(
            f"attack: {name}",
            slowest,
            "ms",
            target=200.0,
            baseline=quiet[1],
            baseline_name="quiet",
            note=f"slowest /healthz meanwhile; ended {status} after {took:.2f} s "
            f"(target <= {_TIMEOUT + _MARGIN:.0f} s: {'MET' if took <= _TIMEOUT + _MARGIN else 'MISSED'})",
        )
