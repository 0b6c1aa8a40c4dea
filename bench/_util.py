"""Shared helpers for the benchmarks: missions, engines, timing and reporting."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
from pydantic import Field

from puraify.actions import Action, ActionContext, default_registry
from puraify.actions.base import Output, Params
from puraify.runtime.engine import Engine
from puraify.runtime.sandbox import ActionPool
from puraify.settings import Settings


class Sleep(Action):
    """A bench-only step that waits ``ms`` milliseconds: pure engine overhead around it."""

    class Params(Params):
        ms: float = Field(ge=0)

    class Output(Output):
        slept_ms: float

    name = "bench_sleep"
    delivery: ClassVar = "idempotent"

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        import asyncio

        await asyncio.sleep(params.ms / 1000)
        return {"slept_ms": params.ms}


def engine(*, pool: ActionPool | None = None, **overrides: Any) -> Engine:
    home = Path(tempfile.mkdtemp(prefix="puraify-bench-"))
    registry = default_registry()
    registry.register(Sleep())
    settings = Settings(home=home / "home", **overrides)
    return Engine.from_settings(
        settings, workspace=home / "ws", registry=registry, environ=dict(os.environ), pool=pool
    )


def layered(
    n: int, width: int, step_type: str = "noop", params: dict[str, Any] | None = None
) -> dict[str, Any]:
    steps = []
    for i in range(n):
        layer = i // width
        deps = [f"s{(layer - 1) * width + (i % width)}"] if layer else []
        steps.append(
            {
                "id": f"s{i}",
                "name": f"Step {i}",
                "step_type": step_type,
                "depends_on": deps,
                "parameters": params if params is not None else {"message": f"m{i}"},
            }
        )
    return {"version": "1.0", "name": f"layered-{n}", "steps": steps}


def chain(n: int, step_type: str, params: dict[str, Any]) -> dict[str, Any]:
    steps = [
        {
            "id": f"s{i}",
            "step_type": step_type,
            "depends_on": [f"s{i - 1}"] if i else [],
            "parameters": params,
        }
        for i in range(n)
    ]
    return {"name": f"chain-{n}", "steps": steps}


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``repeat`` runs (seconds)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Report:
    """Collects rows: what, figure, target, verdict, baseline and ratio."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: float | None = None,
        higher_is_better: bool = False,
        baseline: float | None = None,
        baseline_name: str = "",
        note: str = "",
    ) -> None:
        ok = None
        if target is not None:
            ok = value >= target if higher_is_better else value <= target
        row = {
            "name": name,
            "value": value,
            "unit": unit,
            "target": target,
            "ok": ok,
            "higher_is_better": higher_is_better,
            "baseline": baseline,
            "baseline_name": baseline_name,
            "note": note,
        }
        self.rows.append(row)
        self.print_row(row)

    @staticmethod
    def print_row(r: dict[str, Any]) -> None:
        cmp = ">=" if r.get("higher_is_better") else "<="
        target = (
            f"target {cmp} {r['target']:g} {r['unit']}" if r["target"] is not None else "no target"
        )
        verdict = {True: "MET", False: "MISSED", None: "-"}[r["ok"]]
        line = f"{r['name']:<58} {r['value']:>10.3f} {r['unit']:<6} {target:<24} {verdict:<7}"
        if r["baseline"]:
            line += f" x{r['value'] / r['baseline']:.2f} vs {r['baseline_name']} ({r['baseline']:.3f} {r['unit']})"
        if r["note"]:
            line += f"  [{r['note']}]"
        print(line, flush=True)

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.rows, indent=2))


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server a benchmark starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, seconds: float = 90.0) -> None:
    """Until ``url``/readyz answers 200 (a server starting compiles its modules: no fixed
    wait); ``RuntimeError`` past ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready within {seconds} s")


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, *args: str) -> Iterator[str]:
    """``puraify serve ARGS`` in a process of its own on a free port, with ``env`` and its
    output in ``log``: its URL once it is ready; stopped on leaving."""
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "puraify", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


def puraify_json(*args: str, env: dict[str, str]) -> Any:
    """What ``puraify ARGS --json`` prints, as a benchmark's set-up runs it (a real process)."""
    out = subprocess.run(
        [sys.executable, "-m", "puraify", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)
