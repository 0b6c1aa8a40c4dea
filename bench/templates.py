"""Templates on the hot path, each figure a ratio to the same mission without templates.

- running a 4,000-step chain of noop steps with one template per step (``{{ run.id }}``, or
  reading the predecessor's output) (target 1.5x);
- validating a 10,000-step chain whose steps read their predecessor's output (target 2x).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from ._util import Report, engine

RUN_STEPS = 4_000
VALIDATE_STEPS = 10_000


def chain_of(n: int, message: Callable[[int], str]) -> dict[str, Any]:
    """A chain of ``n`` noop steps; step ``i`` has ``message(i)`` as its only parameter."""
    steps = [
        {
            "id": f"s{i}",
            "step_type": "noop",
            "depends_on": [f"s{i - 1}"] if i else [],
            "parameters": {"message": message(i)},
        }
        for i in range(n)
    ]
    return {"name": f"chain-{n}", "steps": steps}


def plain(i: int) -> str:
    return f"m{i}"


def run_id(i: int) -> str:
    return "{{ run.id }}"


def predecessor(i: int) -> str:
    return f"{{{{ s{i - 1}.output.message }}}}" if i else "m0"


def timed(fn: Callable[[], Any], *, repeat: int = 3, budget: float = 5.0) -> float:
    """The fastest of up to ``repeat`` runs of ``fn`` (seconds); stops repeating past ``budget``."""
    best = float("inf")
    spent = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best = min(best, took)
        spent += took
        if spent > budget:
            break
    return best


async def _runs() -> dict[str, float]:
    eng = engine()
    missions = {
        name: eng.prepare(json.dumps(chain_of(RUN_STEPS, fn))).compiled
        for name, fn in (("plain", plain), ("run_id", run_id), ("predecessor", predecessor))
    }
    await eng.run(eng.prepare(json.dumps(chain_of(100, predecessor))).compiled)  # warm-up
    out: dict[str, float] = {}
    for name, compiled in missions.items():
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            result = await eng.run(compiled)
            best = min(best, time.perf_counter() - start)
            assert result.status.value == "completed", result.error
        out[name] = best
    await eng.aclose()
    return out


def run(report: Report) -> None:
    runs = asyncio.run(_runs())
    for name, label in (("run_id", "{{ run.id }}"), ("predecessor", "the predecessor")):
        report.add(
            f"4,000-step chain run, a template per step: {label}",
            runs[name] / runs["plain"],
            "x",
            target=1.5,
            note=f"{runs[name]:.3f} s vs {runs['plain']:.3f} s without templates",
        )
    eng = engine()
    loaded = {
        name: eng.load(json.dumps(chain_of(VALIDATE_STEPS, fn)))
        for name, fn in (("plain", plain), ("predecessor", predecessor))
    }
    seconds = {name: timed(lambda m=m: eng.validate(m)) for name, m in loaded.items()}
    report.add(
        "validate 10,000-step chain, each step reads its predecessor",
        seconds["predecessor"] / seconds["plain"],
        "x",
        target=2.0,
        note=f"{seconds['predecessor']:.3f} s vs {seconds['plain']:.3f} s without templates",
    )
    asyncio.run(eng.aclose())
