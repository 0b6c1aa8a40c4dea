"""What the executor reports to durable storage, and when.

The executor calls the recorder at the two moments that matter for crash safety:
``attempts_started`` is committed *before* an attempt is dispatched (so an interrupted unsafe
step is known to have been in flight), and ``steps_finished`` is committed *before* any step that
depends on those results starts, or with the run's end (``run_finished``) when nothing else
starts. Calls are batched per scheduler tick. Each attempt gets a
fencing token: a result is stored only if its fence is still the step's latest (I5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..mission.model import MissionResult, StepError, StepResult

__all__ = ["NullRecorder", "RunRecorder"]


class RunRecorder(Protocol):
    async def attempts_started(
        self, run_id: str, items: Sequence[tuple[str, int]]
    ) -> dict[str, int]:
        """Record attempts ``(step_id, attempt)`` as running; return each step's new fence."""

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


class NullRecorder:
    """Keeps nothing (library use, tests, benchmarks without persistence)."""

    heartbeat_interval: float | None = None

    def __init__(self) -> None:
        self._fences: dict[tuple[str, str], int] = {}

    async def attempts_started(
        self, run_id: str, items: Sequence[tuple[str, int]]
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
