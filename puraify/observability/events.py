"""Live run events for subscribers (the SSE endpoint): a hook that fans transitions out."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from ..mission.model import MissionResult, MissionStep, StepResult
from ..runtime.hooks import Hooks, RunInfo

__all__ = ["EventBroker"]


class EventBroker(Hooks):
    """Per-run queues of events; a slow subscriber loses events, never slows a run."""

    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self.subscribers: dict[str, list[asyncio.Queue[dict[str, Any]]]] = defaultdict(list)

    def subscribe(self, run_id: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(self.queue_size)
        self.subscribers[run_id].append(queue)
        return queue

    def unsubscribe(self, run_id: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        queues = self.subscribers.get(run_id, [])
        if queue in queues:
            queues.remove(queue)
        if not queues:
            self.subscribers.pop(run_id, None)

    def publish(self, run_id: str, event: dict[str, Any]) -> None:
        event = {"at": datetime.now(UTC).isoformat(), **event}
        for queue in self.subscribers.get(run_id, []):
            if queue.full():
                queue.get_nowait()  # drop the oldest: the subscriber is too slow
            queue.put_nowait(event)

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        self.publish(run.run_id, {"event": "step_started", "step_id": step.id, "attempt": attempt})

    async def on_retry(
        self, run: RunInfo, step: MissionStep, attempt: int, error: dict[str, Any], delay: float
    ) -> None:
        self.publish(
            run.run_id,
            {
                "event": "step_retrying",
                "step_id": step.id,
                "attempt": attempt,
                "error": error,
                "delay": delay,
            },
        )

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        self.publish(
            run.run_id,
            {
                "event": "step_finished",
                "step_id": result.step_id,
                "status": result.status.value,
                "attempts": result.attempts,
                "duration_ms": result.duration_ms,
                "error": result.error.model_dump() if result.error else None,
            },
        )

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        self.publish(run.run_id, {"event": "run_finished", "status": result.status.value})
