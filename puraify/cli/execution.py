"""Running missions from the CLI with the run store: new runs, resumes, retries.

Every run is committed to the store before its id is printed; Ctrl-C and SIGTERM cancel it
cleanly (recorded as ``cancelled``); a run killed outright stays ``running`` in the store and is
resumed by ``puraify run --resume RUN_ID``, by re-running the same command with the same
``--idempotency-key``, or by ``puraify runs resume --all``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..actions.registry import ActionRegistry
from ..errors import StoreError
from ..mission.compile import CompiledMission
from ..mission.model import Mission, MissionResult
from ..runtime.engine import Engine
from ..runtime.executor import RunHandle
from ..runtime.hooks import Hooks
from ..runtime.resume import ResumeState, resume_plan, reusable_results
from ..settings import Settings
from ..store import Database, RunStore
from ..store.database import HEAD_REVISION

__all__ = ["open_store", "resume_run", "retry_run", "start_run"]


async def open_store(settings: Settings) -> RunStore:
    """The run store, migrated on first use when it is the embedded SQLite default."""
    db = Database(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    if db.is_sqlite:
        await db.ensure_schema()
    elif await db.revision() != HEAD_REVISION:
        await db.dispose()
        raise StoreError(
            "the database schema is not up to date; run `puraify db upgrade`", code="store_schema"
        )
    return RunStore(db, max_output_bytes=settings.store_max_output_bytes)


def _engine(
    settings: Settings,
    store: RunStore,
    hooks: Sequence[Hooks],
    workspace: Path | None,
    registry: ActionRegistry | None = None,
) -> Engine:
    return Engine.from_settings(
        settings,
        workspace=workspace,
        hooks=hooks,
        environ=dict(os.environ),
        recorder=store,
        registry=registry,
    )


async def _drive(
    engine: Engine, mission: CompiledMission | Mission, run_id: str, **kwargs: Any
) -> MissionResult:
    handle = RunHandle(run_id=run_id)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle.cancel)
    try:
        return await engine.run(mission, handle=handle, **kwargs)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await engine.aclose()


async def start_run(
    settings: Settings,
    mission: CompiledMission,
    *,
    variables: dict[str, Any],
    hooks: Sequence[Hooks],
    idempotency_key: str | None = None,
    registry: ActionRegistry | None = None,
) -> MissionResult:
    """Create (or, for a known idempotency key, continue) a run and execute it.

    ``registry``: the one the mission was validated with (saves building it twice)."""
    store = await open_store(settings)
    try:
        workspace = (settings.workspace or Path.cwd()).resolve()
        run_id, created = await store.create_run(
            mission.mission,
            context=variables,
            idempotency_key=idempotency_key,
            workspace=str(workspace),
        )
        if not created:
            return await _continue(settings, store, run_id, hooks)
        engine = _engine(settings, store, hooks, workspace, registry)
        return await _drive(engine, mission, run_id, context=variables)
    finally:
        await store.db.dispose()


async def resume_run(settings: Settings, run_id: str, *, hooks: Sequence[Hooks]) -> MissionResult:
    """Continue a run whose engine stopped; a finished run just returns its result."""
    store = await open_store(settings)
    try:
        return await _continue(settings, store, run_id, hooks)
    finally:
        await store.db.dispose()


async def _continue(
    settings: Settings, store: RunStore, run_id: str, hooks: Sequence[Hooks]
) -> MissionResult:
    record = await store.get(run_id)
    if record.finished:
        return record.result()
    if not await store.acquire(run_id):
        raise StoreError(
            f"run {run_id} is being executed by a live engine ({record.lease_owner})",
            code="run_busy",
        )
    record = await store.get(run_id)
    workspace = Path(record.workspace) if record.workspace else settings.workspace
    engine = _engine(settings, store, hooks, workspace)
    return await _drive(
        engine,
        record.mission,
        run_id,
        context=record.context,
        resume=resume_plan(record, engine.registry),
    )


async def retry_run(settings: Settings, run_id: str, *, hooks: Sequence[Hooks]) -> MissionResult:
    """A new run of the same mission that reuses the old run's successful outputs."""
    store = await open_store(settings)
    try:
        record = await store.get(run_id)
        if not record.finished:
            raise StoreError(
                f"run {run_id} has not finished; cancel or resume it first", code="run_busy"
            )
        reuse = reusable_results(record)
        workspace = Path(record.workspace) if record.workspace else settings.workspace
        new_id, _ = await store.create_run(
            record.mission,
            context=record.context,
            parent_run_id=run_id,
            workspace=str(workspace) if workspace else None,
            reuse=reuse,
        )
        engine = _engine(settings, store, hooks, workspace)
        return await _drive(
            engine,
            record.mission,
            new_id,
            context=record.context,
            resume=ResumeState(restore=reuse),
        )
    finally:
        await store.db.dispose()
