"""Event sinks for the Monitoring and Feedback engines: every run and step event is POSTed to
``monitoring_url``, failed runs to ``feedback_url``, from a bounded queue by a background worker
with retries, so a slow or dead receiver never slows or fails a run (events past the queue's
size are dropped and counted)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from ..mission.model import MissionResult, MissionStatus, MissionStep, StepResult
from ..runtime.hooks import Hooks, RunInfo

__all__ = ["EventSinks"]

_log = structlog.get_logger("puraify.sinks")


class EventSinks(Hooks):
    """A hook that forwards events to operator-configured URLs (trusted, not SSRF-guarded)."""

    def __init__(
        self,
        *,
        monitoring_url: str | None,
        feedback_url: str | None,
        queue_size: int = 10_000,
        attempts: int = 3,
        timeout: float = 5.0,
    ) -> None:
        self.monitoring_url = monitoring_url
        self.feedback_url = feedback_url
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(queue_size)
        self.attempts = attempts
        self.client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self.dropped = 0
        self.delivered = 0
        self.worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.worker is None and (self.monitoring_url or self.feedback_url):
            self.worker = asyncio.create_task(self._work())

    async def close(self, drain_seconds: float = 2.0) -> None:
        if self.worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), drain_seconds)
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        await self.client.aclose()

    def _put(self, url: str | None, event: dict[str, Any]) -> None:
        if not url:
            return
        event = {"at": datetime.now(UTC).isoformat(), **event}
        try:
            self.queue.put_nowait((url, event))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _work(self) -> None:
        while True:
            url, event = await self.queue.get()
            try:
                for attempt in range(1, self.attempts + 1):
                    try:
                        response = await self.client.post(url, json=event)
                        if response.status_code < 500 and response.status_code != 429:
                            self.delivered += 1
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
                else:
                    _log.warning("event_sink_gave_up", url=url, kind=event.get("event"))
            finally:
                self.queue.task_done()

    async def on_run_start(self, run: RunInfo) -> None:
        self._put(
            self.monitoring_url,
            {"event": "run_started", "run_id": run.run_id, "mission": run.mission.display_name},
        )

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        self._put(
            self.monitoring_url,
            {
                "event": "step_started",
                "run_id": run.run_id,
                "step_id": step.id,
                "action": step.step_type,
                "attempt": attempt,
            },
        )

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        self._put(
            self.monitoring_url,
            {
                "event": "step_finished",
                "run_id": run.run_id,
                "step_id": result.step_id,
                "action": result.step_type,
                "status": result.status.value,
                "duration_ms": result.duration_ms,
                "error": result.error.model_dump() if result.error else None,
            },
        )

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        summary = {
            "event": "run_finished",
            "run_id": run.run_id,
            "mission": result.mission_name,
            "status": result.status.value,
            "duration_ms": result.duration_ms,
            "error": result.error.model_dump() if result.error else None,
        }
        self._put(self.monitoring_url, summary)
        if result.status is MissionStatus.FAILED:
            failed = [
                s.model_dump(mode="json", include={"step_id", "error"})
                for s in result.steps
                if s.status.value == "failed"
            ]
            self._put(self.feedback_url, {**summary, "event": "run_failed", "failed_steps": failed})
