"""Templates on the hot path, each figure a ratio to the same mission without templates.

- running a 4,000-step chain of noop steps with one template per step (``{{ run.id }}``, or
  reading the predecessor's output) (target 1.5x);
- validating a 10,000-step chain whose steps read their predecessor's output (target 2x).
"""

from __future__ import annotations

import asyncio
import gc
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


def fastest(jobs: dict[str, Callable[[], Any]], repeat: int) -> dict[str, float]:
    """The fastest of ``repeat`` runs of each job (seconds), taking turns: on a shared machine,
    a busy moment slows one round of every job rather than every run of one. Each run starts
    after a full garbage collection, so none pays for the garbage of the one before."""
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(repeat):
        for name, job in jobs.items():
            gc.collect()
            start = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


async def _runs() -> dict[str, float]:
    eng = engine()
    missions = {
        name: eng.prepare(json.dumps(chain_of(RUN_STEPS, fn))).compiled
        for name, fn in (("plain", plain), ("run_id", run_id), ("predecessor", predecessor))
    }
    await eng.run(eng.prepare(json.dumps(chain_of(100, predecessor))).compiled)  # warm-up
    best = dict.fromkeys(missions, float("inf"))
    for _ in range(5):
        for name, compiled in missions.items():
            gc.collect()  # as in `fastest`
            start = time.perf_counter()
            result = await eng.run(compiled)
            best[name] = min(best[name], time.perf_counter() - start)
            assert result.status.value == "completed", result.error
    await eng.aclose()
    return best


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
    seconds = fastest({name: lambda m=m: eng.validate(m) for name, m in loaded.items()}, 5)
    report.add(
        "validate 10,000-step chain, each step reads its predecessor",
        seconds["predecessor"] / seconds["plain"],
        "x",
        target=2.0,
        note=f"{seconds['predecessor']:.3f} s vs {seconds['plain']:.3f} s without templates",
    )
    asyncio.run(eng.aclose())
