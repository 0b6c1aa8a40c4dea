"""F: CPU-bound actions run in worker processes that a timeout or a cancel really stops, with
a memory cap and no network, while the engine's event loop stays free."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from puraify.actions import default_registry
from puraify.mission.model import MissionStatus, StepStatus
from puraify.runtime.engine import Engine
from puraify.runtime.executor import RunHandle
from puraify.runtime.sandbox import ActionPool
from tests.conftest import TEST_ENV, make_settings, run_text
from tests.helpers import poll
from tests.sandbox.actions import Hog, Spin, Where


@pytest.fixture
async def sandboxed(tmp_path: Path, workspace: Path) -> AsyncIterator[Engine]:
    registry = default_registry(entry_points=False)
    for action in (Spin(), Hog(), Where()):
        registry.register(action)
    pool = ActionPool(1, max_memory_bytes=512 * 1024 * 1024, max_result_bytes=1024 * 1024)
    engine = Engine.from_settings(
        make_settings(tmp_path), workspace=workspace, environ=TEST_ENV, registry=registry, pool=pool
    )
    # started before the tests' clocks run: a cold pool starts its worker first
    warm = await run_text(engine, "steps:\n  - {id: w, step_type: test_where}\n")
    assert warm.status is MissionStatus.COMPLETED, warm.model_dump()
    yield engine
    await engine.aclose()
    await asyncio.to_thread(pool.close)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _spin(pid_file: Path, timeout: float = 30) -> str:
    return (
        "steps:\n  - id: spin\n    step_type: test_spin\n"
        f"    timeout_seconds: {timeout}\n    parameters: {json.dumps({'pid_file': str(pid_file)})}\n"
    )


async def _ticking(counter: list[int]) -> None:
    while True:
        counter[0] += 1
        await asyncio.sleep(0.01)


async def test_a_cpu_bound_step_past_its_timeout_is_stopped_and_the_loop_stays_free(
    sandboxed: Engine, tmp_path: Path
) -> None:
    pid_file = tmp_path / "spin.pid"
    ticks = [0]
    ticker = asyncio.create_task(_ticking(ticks))
    try:
        result = await run_text(sandboxed, _spin(pid_file, timeout=1))
    finally:
        ticker.cancel()
    step = result.step("spin")
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.code == "timeout"
    assert ticks[0] > 10  # the loop ran other work while the action burned a CPU
    pid = int(pid_file.read_text())
    assert pid != os.getpid()

    async def gone() -> bool:
        return not _alive(pid)

    await poll(gone, bool, what="the spinning worker stopped")


async def test_cancelling_a_run_stops_its_cpu_bound_step(sandboxed: Engine, tmp_path: Path) -> None:
    pid_file = tmp_path / "spin.pid"
    handle = RunHandle()
    prepared = sandboxed.prepare(_spin(pid_file))
    run = asyncio.create_task(sandboxed.run(prepared.mission, handle=handle))

    async def spinning() -> bool:
        return pid_file.exists() and bool(pid_file.read_text())

    await poll(spinning, bool, what="the action running in its worker")
    handle.cancel()
    result = await run
    assert result.status is MissionStatus.CANCELLED
    pid = int(pid_file.read_text())

    async def gone() -> bool:
        return not _alive(pid)

    await poll(gone, bool, what="the worker stopped with the run")
    # the pool goes on with a new worker
    after = await run_text(sandboxed, "steps:\n  - {id: w, step_type: test_where}\n")
    assert after.status is MissionStatus.COMPLETED


async def test_a_step_past_its_memory_cap_fails_and_the_engine_does_not(
    sandboxed: Engine,
) -> None:
    result = await run_text(
        sandboxed, "steps:\n  - {id: hog, step_type: test_hog, parameters: {megabytes: 2048}}\n"
    )
    step = result.step("hog")
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.code == "resource_limit", step.error


async def test_sandboxed_actions_have_no_network_and_keep_the_jail(
    sandboxed: Engine, workspace: Path, tmp_path: Path
) -> None:
    where = await run_text(sandboxed, "steps:\n  - {id: w, step_type: test_where}\n")
    output = where.step("w").output or {}
    assert output["pid"] != os.getpid() and output["network"] == "GuardError"
    (workspace / "t.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "outside.csv").write_text("x\n1\n")
    result = await run_text(
        sandboxed,
        "config: {fail_fast: false}\nsteps:\n"
        "  - {id: csv, step_type: csv_process, parameters: {file: t.csv}}\n"
        "  - {id: out, step_type: csv_process, parameters: {file: ../outside.csv}}\n",
    )
    assert result.step("csv").output["row_count"] == 2  # type: ignore[index]
    error = result.step("out").error
    assert error is not None and error.code == "path_outside_jail"


def test_workers_end_when_their_engine_is_killed(tmp_path: Path) -> None:
    """F: an engine killed with SIGKILL cannot stop its pool; its workers notice it is gone
    and end, even in the middle of a task that would never end."""
    import signal
    import subprocess
    import sys

    from tests.helpers import wait_for

    pid_file = tmp_path / "spin.pid"
    script = (
        "import asyncio, sys\n"
        "from puraify.runtime.sandbox import ActionPool, Job\n"
        "from tests.sandbox.actions import Spin\n"
        "job = Job(action='tests.sandbox.actions:Spin', params=Spin.Params(pid_file=sys.argv[1]),"
        " run_id='r', step_id='s', attempt=1, workspace=sys.argv[2])\n"
        "asyncio.run(ActionPool(1).run(job))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    engine = subprocess.Popen(
        [sys.executable, "-c", script, str(pid_file), str(tmp_path / "ws")], cwd=repo
    )
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the task running")
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=30)
    worker = int(pid_file.read_text())
    try:
        wait_for(lambda: not _alive(worker), seconds=60, what="the worker ended")
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


async def test_a_result_too_large_to_hand_back_fails_in_the_worker(
    sandboxed: Engine, workspace: Path
) -> None:
    """F: the engine reads a result on its event loop; one past the pool's result limit
    (MAX_RESULT_BYTES by default) is refused in the worker instead."""
    (workspace / "big.json").write_text("[" + ",".join(['"abcdef"'] * 300_000) + "]")
    result = await run_text(
        sandboxed, "steps:\n  - {id: p, step_type: parse_json, parameters: {file: big.json}}\n"
    )
    error = result.step("p").error
    assert error is not None and error.code == "resource_limit", error


async def test_one_workspace_cannot_take_every_worker(tmp_path: Path) -> None:
    """F: a project whose steps never end holds at most its share of the pool; another
    project's steps still find a worker."""
    registry = default_registry(entry_points=False)
    for action in (Spin(), Where()):
        registry.register(action)
    pool = ActionPool(2, per_workspace=1)
    engines = [
        Engine.from_settings(
            make_settings(tmp_path),
            workspace=tmp_path / name,
            environ=TEST_ENV,
            registry=registry,
            pool=pool,
        )
        for name in ("greedy", "other")
    ]
    greedy, other = engines
    handles = [RunHandle(), RunHandle()]
    spins = [
        asyncio.create_task(
            greedy.run(greedy.prepare(_spin(tmp_path / f"spin{i}.pid")).mission, handle=h)
        )
        for i, h in enumerate(handles)
    ]
    try:

        async def one_spinning() -> bool:
            return any((tmp_path / f"spin{i}.pid").exists() for i in range(2))

        await poll(one_spinning, bool, what="a greedy step holding a worker")
        text = "steps:\n  - {id: w, step_type: test_where, timeout_seconds: 60}\n"
        result = await run_text(other, text)
        assert result.status is MissionStatus.COMPLETED, result.model_dump()
    finally:
        for handle in handles:
            handle.cancel()
        await asyncio.gather(*spins, return_exceptions=True)
        for engine in engines:
            await engine.aclose()
        await asyncio.to_thread(pool.close)
