"""A hook that writes one structured log line per step transition and per run end, carrying
run_id, step_id, platform, action, status and duration."""

from __future__ import annotations

from typing import Any

import structlog

from ..mission.model import MissionResult, MissionStep, StepResult
from ..runtime.hooks import Hooks, RunInfo

__all__ = ["LoggingHook"]


class LoggingHook(Hooks):
    def __init__(self, platform_of: dict[str, str]) -> None:
        self.platform_of = platform_of
        self.log = structlog.get_logger("puraify.run")

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        self.log.debug(
            "step_started",
            run_id=run.run_id,
            step_id=step.id,
            action=step.step_type,
            platform=self.platform_of.get(step.step_type, "local"),
            attempt=attempt,
        )

    async def on_retry(
        self, run: RunInfo, step: MissionStep, attempt: int, error: dict[str, Any], delay: float
    ) -> None:
        self.log.warning(
            "step_retrying",
            run_id=run.run_id,
            step_id=step.id,
            action=step.step_type,
            platform=self.platform_of.get(step.step_type, "local"),
            attempt=attempt,
            error_code=error.get("code"),
            delay_s=round(delay, 3),
        )

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        log = self.log.info if result.status.value in ("success", "skipped") else self.log.warning
        log(
            "step_finished",
            run_id=run.run_id,
            step_id=result.step_id,
            action=result.step_type,
            platform=self.platform_of.get(result.step_type, "local"),
            status=result.status.value,
            duration_ms=result.duration_ms,
            attempts=result.attempts,
            error_code=result.error.code if result.error else None,
        )

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        self.log.info(
            "run_finished",
            run_id=run.run_id,
            mission=result.mission_name,
            status=result.status.value,
            duration_ms=result.duration_ms,
            error_code=result.error.code if result.error else None,
        )
