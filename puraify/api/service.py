"""The execution service behind the HTTP API: runs as background tasks of one Engine.

No FastAPI here: routers translate HTTP to these calls. Runs are committed before an id is
returned; a run whose task is cut by shutdown stays ``running`` in the store and is resumed at
the next start (``resume_orphans``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from ..errors import StoreError
from ..mission.compile import CompiledMission
from ..mission.model import Mission, MissionResult
from ..runtime.engine import Engine
from ..runtime.executor import RunHandle
from ..runtime.resume import ResumeState, resume_plan, reusable_results
from ..store import RunStore

__all__ = ["ExecutionService"]

_log = structlog.get_logger("puraify.service")


class ExecutionService:
    """Starts, waits for, cancels, retries and resumes runs in this process."""

    def __init__(self, engine: Engine, store: RunStore) -> None:
        self.engine = engine
        self.store = store
        self.live: dict[str, tuple[asyncio.Task[MissionResult], RunHandle]] = {}

    def _start(
        self,
        run_id: str,
        mission: CompiledMission | Mission,
        context: dict[str, Any],
        resume: ResumeState | None = None,
    ) -> None:
        handle = RunHandle(run_id=run_id)
        task = asyncio.create_task(
            self.engine.run(mission, handle=handle, context=context, resume=resume)
        )
        self.live[run_id] = (task, handle)

        def done(t: asyncio.Task[MissionResult]) -> None:
            self.live.pop(run_id, None)
            self.store.forget(run_id)
            if not t.cancelled() and t.exception() is not None:
                _log.error("run_crashed", run_id=run_id, error=repr(t.exception()))

        task.add_done_callback(done)

    async def submit(
        self,
        mission: CompiledMission,
        *,
        project_id: str,
        context: dict[str, Any],
        idempotency_key: str | None = None,
        defer: bool = False,
    ) -> tuple[str, bool]:
        """Commit a run and start it; returns ``(run_id, created)``. ``defer``: the caller shows
        the run id only after the run ended, so the run may be committed with its first attempt
        (``RunStore.create_run``)."""
        run_id, created = await self.store.create_run(
            mission.mission,
            context=context,
            project_id=project_id,
            idempotency_key=idempotency_key,
            workspace=str(self.engine.workspace) if self.engine.workspace else None,
            defer=defer,
        )
        if created:
            self._start(run_id, mission, context)
        return run_id, created

    async def wait(self, run_id: str, timeout: float | None) -> MissionResult | None:  # noqa: ASYNC109
        """The run's result once finished (None if still running after ``timeout``)."""
        live = self.live.get(run_id)
        if live is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(live[0]), timeout)
            except TimeoutError:
                return None
        record = await self.store.get(run_id)
        return record.result() if record.finished else None

    async def cancel(self, run_id: str, project_id: str) -> str:
        await self.store.get(run_id, project_id=project_id)  # 404 for another project's run
        live = self.live.get(run_id)
        if live is not None:
            live[1].cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(live[0]), 10)
            return (await self.store.get(run_id)).status.value
        return (await self.store.request_cancel(run_id)).value

    async def retry(self, run_id: str, project_id: str) -> str:
        record = await self.store.get(run_id, project_id=project_id)
        if not record.finished:
            raise StoreError(f"run {run_id} has not finished", code="run_busy")
        reuse = reusable_results(record)
        new_id, _ = await self.store.create_run(
            record.mission,
            context=record.context,
            parent_run_id=run_id,
            reuse=reuse,
            project_id=project_id,
            workspace=record.workspace,
        )
        self._start(new_id, record.mission, record.context, ResumeState(restore=reuse))
        return new_id

    async def resume_orphans(self) -> list[str]:
        """Continue every run whose engine is gone (called at start)."""
        resumed = []
        for run_id in await self.store.orphans():
            if run_id in self.live or not await self.store.acquire(run_id):
                continue
            record = await self.store.get(run_id)
            self._start(
                run_id, record.mission, record.context, resume_plan(record, self.engine.registry)
            )
            resumed.append(run_id)
        if resumed:
            _log.info("runs_resumed", count=len(resumed), run_ids=resumed)
        return resumed

    async def shutdown(self, grace_seconds: float) -> None:
        """Let runs finish for ``grace_seconds``; cut the rest, which stay resumable."""
        tasks = [t for t, _ in self.live.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
