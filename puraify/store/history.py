"""The read side of past runs, for the API and the CLI: listing, attempts, events, pruning."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..mission.model import MissionStatus
from .tables import attempts, run_events, run_steps, runs

__all__ = ["attempts_of", "events", "list_runs", "prune"]


async def list_runs(
    engine: AsyncEngine,
    *,
    status: str | None = None,
    since: datetime | None = None,
    mission: str | None = None,
    limit: int = 50,
    offset: int = 0,
    project_id: str | None = None,
) -> list[dict[str, Any]]:
    """Runs, newest first, as summary rows; ``mission`` matches part of the name."""
    query = select(
        runs.c.id.label("run_id"),
        runs.c.mission_name,
        runs.c.status,
        runs.c.created_at,
        runs.c.finished_at,
        runs.c.duration_ms,
        runs.c.error_code,
        runs.c.parent_run_id,
    )
    conditions = []
    if project_id is not None:
        conditions.append(runs.c.project_id == project_id)
    if status:
        conditions.append(runs.c.status == status)
    if since:
        conditions.append(runs.c.created_at >= since)
    if mission:
        conditions.append(runs.c.mission_name.contains(mission, autoescape=True))
    if conditions:
        query = query.where(and_(*conditions))
    query = query.order_by(runs.c.created_at.desc(), runs.c.id).limit(limit).offset(offset)
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).mappings().all()
    return [dict(r) for r in rows]


async def attempts_of(engine: AsyncEngine, run_id: str) -> list[dict[str, Any]]:
    """Every attempt of a run's steps, in the order they started."""
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.id)
                )
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


async def events(engine: AsyncEngine, run_id: str) -> list[dict[str, Any]]:
    """A run's events (created, resumed, finished), oldest first."""
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    select(run_events)
                    .where(run_events.c.run_id == run_id)
                    .order_by(run_events.c.id)
                )
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]


async def prune(engine: AsyncEngine, older_than: datetime) -> int:
    """Delete finished runs created before ``older_than`` (their steps and events cascade)."""
    async with engine.begin() as conn:
        ids = select(runs.c.id).where(
            runs.c.created_at < older_than, runs.c.status != MissionStatus.RUNNING.value
        )
        doomed = [r[0] for r in (await conn.execute(ids)).all()]
        if not doomed:
            return 0
        await conn.execute(
            update(runs).where(runs.c.parent_run_id.in_(doomed)).values(parent_run_id=None)
        )
        for table in (run_events, attempts, run_steps):
            await conn.execute(delete(table).where(table.c.run_id.in_(doomed)))
        await conn.execute(delete(runs).where(runs.c.id.in_(doomed)))
    return len(doomed)
