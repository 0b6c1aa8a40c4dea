"""What the executor reports to durable storage, and when.

The executor calls the recorder at the two moments that matter for crash safety:
``attempts_started`` is committed *before* an attempt is dispatched (so an interrupted unsafe
step is known to have been in flight), and ``steps_finished`` is committed *before* any step that
depends on those results starts, or with the run's end (``run_finished``) when nothing else
starts. Calls are batched per scheduler tick. Each attempt gets a
fencing token: a result is stored only if its fence is still the step's latest (I5). A recorder
that holds a lease on the runs it executes says how often to renew it (``heartbeat_interval``);
``Heartbeat`` does the renewing while a run executes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

from ..mission.model import MissionResult, StepError, StepResult

__all__ = ["Heartbeat", "NullRecorder", "RunRecorder"]

_log = structlog.get_logger("puraify.executor")


class RunRecorder(Protocol):
    @property
    def heartbeat_interval(self) -> float | None:
        """Seconds between ``heartbeat`` calls while a run executes; None: no lease to keep."""

    async def attempts_started(
        self,
        run_id: str,
        items: Sequence[tuple[str, int]],
        finished: Sequence[tuple[StepResult, int | None]] = (),
    ) -> dict[str, int]:
        """Record attempts ``(step_id, attempt)`` as running; return each step's new fence.
        ``finished``: results to record first, in the same transaction (``steps_finished``)."""

    async def steps_finished(
        self, run_id: str, items: Sequence[tuple[StepResult, int | None]]
    ) -> None:
        """Record terminal step results; ``None`` fence = decided without running."""

    async def attempt_failed(self, run_id: str, step_id: str, fence: int, error: StepError) -> None:
        """An attempt failed and the step will retry (attempt history only)."""

    async def run_finished(
        self, result: MissionResult, steps: Sequence[tuple[StepResult, int | None]] = ()
    ) -> None:
        """Record the run's final result, with the step results not recorded yet (``steps``,
        as for ``steps_finished``), in one transaction."""

    async def heartbeat(self, run_id: str) -> bool:
        """Keep the run's lease; True when someone asked to cancel it."""


class Heartbeat:
    """Renews a run's lease every ``interval`` seconds and relays cancel requests.

    A timer until the first beat is due, and a task only after that: most runs (single actions)
    end long before their first beat, and a timer costs far less to start and stop.
    """

    def __init__(
        self,
        recorder: RunRecorder,
        run_id: str,
        interval: float,
        on_cancel_request: Callable[[], None],
    ) -> None:
        self.recorder = recorder
        self.run_id = run_id
        self.interval = interval
        self.on_cancel_request = on_cancel_request
        self.task: asyncio.Task[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(interval, self._first)

    def _first(self) -> None:
        self.task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            try:
                if await self.recorder.heartbeat(self.run_id):
                    self.on_cancel_request()
            except Exception as exc:  # the lease expires on its own if this keeps failing
                _log.warning("heartbeat_failed", run_id=self.run_id, error=repr(exc))
            await asyncio.sleep(self.interval)

    def cancel(self) -> None:
        self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


class NullRecorder:
    """Keeps nothing (library use, tests, benchmarks without persistence)."""

    heartbeat_interval: float | None = None

    def __init__(self) -> None:
        self._fences: dict[tuple[str, str], int] = {}

    async def attempts_started(
        self,
        run_id: str,
        items: Sequence[tuple[str, int]],
        finished: Sequence[tuple[StepResult, int | None]] = (),
    ) -> dict[str, int]:
        out = {}
        for step_id, _attempt in items:
            key = (run_id, step_id)
            self._fences[key] = self._fences.get(key, 0) + 1
            out[step_id] = self._fences[key]
        return out

    async def steps_finished(
        self, run_id: str, items: Sequence[tuple[StepResult, int | None]]
    ) -> None:
        for result, _fence in items:
            self._fences.pop((run_id, result.step_id), None)

    async def attempt_failed(self, run_id: str, step_id: str, fence: int, error: StepError) -> None:
        return None

    async def run_finished(
        self, result: MissionResult, steps: Sequence[tuple[StepResult, int | None]] = ()
    ) -> None:
        await self.steps_finished(result.run_id, steps)

    async def heartbeat(self, run_id: str) -> bool:
        return False
