"""Lifecycle hooks: a base class of no-op methods; progress, logging, metrics, audit and the
run store subclass it. A failing hook is logged and never fails a run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import structlog

from ..mission.model import Mission, MissionResult, MissionStep, StepResult

__all__ = ["HookSet", "Hooks", "RunInfo"]

_log = structlog.get_logger("puraify.hooks")


class RunInfo:
    """What hooks learn about the run they are called for."""

    __slots__ = ("mission", "run_id", "user_id")

    def __init__(self, run_id: str, mission: Mission, user_id: str | None = None) -> None:
        self.run_id = run_id
        self.mission = mission
        self.user_id = user_id  # the user the run is for (their credentials win)


class Hooks:
    """Override what you need; every method is awaited by the executor."""

    async def on_run_start(self, run: RunInfo) -> None:
        """The run is about to start its first step."""

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        """An attempt of ``step`` is starting (attempt 1 is the first try)."""

    async def on_retry(
        self, run: RunInfo, step: MissionStep, attempt: int, error: dict[str, Any], delay: float
    ) -> None:
        """Attempt ``attempt`` failed with a retryable error; the next starts in ``delay`` s."""

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        """A step reached a terminal status (success, failed, skipped or cancelled)."""

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        """The run finished; ``result`` is final."""


class HookSet(Hooks):
    """Calls several hooks in order, isolating each one's failures."""

    def __init__(self, hooks: Iterable[Hooks] = ()) -> None:
        self.hooks = list(hooks)

    async def _each(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            try:
                await getattr(hook, name)(*args)
            except Exception as exc:  # a hook must never fail a run
                _log.warning("hook_failed", hook=type(hook).__name__, method=name, error=repr(exc))

    async def on_run_start(self, run: RunInfo) -> None:
        await self._each("on_run_start", run)

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        await self._each("before_step", run, step, attempt)

    async def on_retry(
        self, run: RunInfo, step: MissionStep, attempt: int, error: dict[str, Any], delay: float
    ) -> None:
        await self._each("on_retry", run, step, attempt, error, delay)

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        await self._each("after_step", run, result)

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        await self._each("on_run_end", run, result)
