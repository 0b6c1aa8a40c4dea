"""Executor overhead: a 40-step chain of 10 ms steps, and 10,000 noop steps in layers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from ._util import Report, chain, engine

HWM = r"""
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

CHILD = (
    HWM
    + r"""
import asyncio, json, sys, time
from bench._util import engine, layered
async def main():
    eng = engine()
    prepared = eng.prepare(json.dumps(layered(10_000, width=100)))
    start = time.perf_counter()
    result = await eng.run(prepared.compiled)
    took = time.perf_counter() - start
    assert result.status.value == "completed", result.status
    await eng.aclose()
    print(json.dumps({"seconds": took, "rss_mb": hwm()}))
asyncio.run(main())
"""
)

BASELINE_CHILD = (
    HWM
    + r"""
import asyncio, json, time
async def noop(): return {}
async def main():
    start = time.perf_counter()
    for layer in range(100):
        await asyncio.gather(*(noop() for _ in range(100)))
    print(json.dumps({"seconds": time.perf_counter() - start, "rss_mb": hwm()}))
asyncio.run(main())
"""
)


def _child(code: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def _chain_overhead() -> tuple[float, float]:
    eng = engine()
    prepared = eng.prepare(json.dumps(chain(40, "bench_sleep", {"ms": 10})))
    await eng.run(prepared.compiled)  # warm-up
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        result = await eng.run(prepared.compiled)
        runs.append(time.perf_counter() - start)
        assert result.status.value == "completed"
    base_runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(40):
            await asyncio.sleep(0.01)
        base_runs.append(time.perf_counter() - start)
    await eng.aclose()
    return min(runs), min(base_runs)


def run(report: Report) -> None:
    ours, base = asyncio.run(_chain_overhead())
    report.add(
        "per-step overhead, 40-step chain of 10 ms steps",
        (ours - base) / 40 * 1000,
        "ms",
        target=1.0,
        note=f"chain {ours * 1000:.1f} ms vs 40 x sleep(10ms) {base * 1000:.1f} ms",
    )
    child = _child(CHILD)
    baseline = _child(BASELINE_CHILD)
    report.add(
        "10,000 noop steps, layered DAG (100 x 100)",
        child["seconds"],
        "s",
        target=1.5,
        baseline=baseline["seconds"],
        baseline_name="raw asyncio.gather",
    )
    report.add(
        "  peak RSS of that run",
        child["rss_mb"],
        "MB",
        target=200.0,
        baseline=baseline["rss_mb"],
        baseline_name="bare asyncio process",
    )
