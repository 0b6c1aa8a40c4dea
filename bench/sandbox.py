"""The sandbox's cost, per step: a chain of `csv_process` steps in the worker processes (warm)
against the same steps on the event loop, and a chain of 10 ms `command` steps contained (the
command sandbox: PID, network and mount namespaces, limits) against the same commands in a
process group only."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from puraify.runtime.engine import Engine
from puraify.runtime.guards.commands import containment
from puraify.runtime.sandbox import ActionPool

from ._util import Report, chain, engine


async def _best_per_step(eng: Engine, mission: dict[str, Any], steps: int) -> float:
    """The best of three runs of ``mission`` after a warm-up (a pool starts its workers), per
    step; closes ``eng``."""
    prepared = eng.prepare(json.dumps(mission))
    await eng.run(prepared.compiled)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        result = await eng.run(prepared.compiled)
        best = min(best, time.perf_counter() - start)
        assert result.status.value == "completed", result.status
    await eng.aclose()
    return best / steps


async def _per_step(pool: ActionPool | None, steps: int = 100) -> float:
    eng = engine(pool=pool)
    assert eng.workspace is not None
    rows = "".join(f"{i},{i * 2},name{i}\n" for i in range(200))
    (eng.workspace / "data.csv").write_text("a,b,name\n" + rows)
    return await _best_per_step(eng, chain(steps, "csv_process", {"file": "data.csv"}), steps)


async def _command_step(contain: bool, steps: int = 20) -> float:
    eng = engine(command_contain=contain, command_network=False, mode="local")
    params = {"command": "sleep", "args": ["0.01"]}
    return await _best_per_step(eng, chain(steps, "command", params), steps)


def run(report: Report) -> None:
    contained = asyncio.run(_command_step(True))
    bare = asyncio.run(_command_step(False))
    report.add(
        f"10 ms command per step, contained ({containment()})",
        contained * 1000,
        "ms",
        target=1.5 * bare * 1000,
        baseline=bare * 1000,
        baseline_name="in a process group only",
        note="target: 1.5x the direct path",
    )
    pool = ActionPool(2)
    try:
        sandboxed = asyncio.run(_per_step(pool))
    finally:
        pool.close()
    direct = asyncio.run(_per_step(None))
    report.add(
        "csv_process (200 rows) per step, in the sandbox's workers",
        sandboxed * 1000,
        "ms",
        target=1.5 * direct * 1000,
        baseline=direct * 1000,
        baseline_name="on the event loop",
        note="target: 1.5x the direct path",
    )
