"""Stored runs as values: ``RunRecord`` and ``StepRow``, read from their rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import StoreError
from ..mission.model import Mission, MissionResult, MissionStatus, StepError, StepResult, StepStatus
from .tables import run_steps, runs

__all__ = ["RunRecord", "RunState", "StepRow", "read_record", "read_state", "run_not_found"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StepRow:
    """A step's stored state."""

    step_id: str
    step_type: str
    status: StepStatus
    attempts: int
    fence: int
    output: dict[str, Any] | None
    error: StepError | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    reused_from: str | None

    def result(self, name: str) -> StepResult:
        return StepResult(
            step_id=self.step_id,
            name=name,
            step_type=self.step_type,
            status=self.status,
            output=self.output,
            error=self.error,
            attempts=self.attempts,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=self.duration_ms,
        )


@dataclass(frozen=True)
class RunRecord:
    """A stored run with its steps (declaration order)."""

    id: str
    project_id: str | None
    profile: str
    mission: Mission
    mission_hash: str
    context: dict[str, Any]
    status: MissionStatus
    idempotency_key: str | None
    parent_run_id: str | None
    workspace: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: float | None
    error: StepError | None
    warnings: list[str]
    lease_owner: str | None
    lease_until: datetime | None
    cancel_requested: bool
    steps: list[StepRow]

    @property
    def finished(self) -> bool:
        return self.status is not MissionStatus.RUNNING

    def result(self) -> MissionResult:
        """The run as a ``MissionResult`` (for a finished run, the one it ended with)."""
        names = {s.id: s.display_name for s in self.mission.steps}
        return MissionResult(
            run_id=self.id,
            mission_name=self.mission.display_name,
            status=self.status if self.finished else MissionStatus.RUNNING,
            steps=tuple(row.result(names[row.step_id]) for row in self.steps),
            started_at=self.started_at or self.created_at,
            finished_at=self.finished_at or _now(),
            duration_ms=self.duration_ms or 0.0,
            warnings=tuple(self.warnings),
            error=self.error,
        )


@dataclass(frozen=True)
class RunState:
    """A run's status and lease, without its mission and steps."""

    status: MissionStatus
    lease_owner: str | None
    lease_until: datetime | None

    @property
    def finished(self) -> bool:
        return self.status is not MissionStatus.RUNNING


def run_not_found(run_id: str) -> StoreError:
    """The error for a run that does not exist (or belongs to another project)."""
    return StoreError(f"no run {run_id!r}", code="run_not_found")


def _error(
    code: str | None,
    message: str | None,
    retryable: bool | None = None,
    status: int | None = None,
) -> StepError | None:
    if not code:
        return None
    return StepError(code=code, message=message or "", retryable=bool(retryable), status=status)


async def read_state(
    conn: AsyncConnection, run_id: str, *, project_id: str | None = None
) -> RunState:
    """A run's status and lease (one small row); "not found" exactly as ``read_record``."""
    query = select(runs.c.status, runs.c.lease_owner, runs.c.lease_until).where(runs.c.id == run_id)
    if project_id is not None:
        query = query.where(runs.c.project_id == project_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise run_not_found(run_id)
    return RunState(MissionStatus(row.status), row.lease_owner, row.lease_until)


async def read_record(
    conn: AsyncConnection, run_id: str, *, project_id: str | None = None
) -> RunRecord:
    """A run with its steps; with ``project_id``, another project's run is "not found"
    (no existence oracle)."""
    query = select(runs).where(runs.c.id == run_id)
    if project_id is not None:
        query = query.where(runs.c.project_id == project_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise run_not_found(run_id)
    steps = (
        await conn.execute(
            select(run_steps).where(run_steps.c.run_id == run_id).order_by(run_steps.c.position)
        )
    ).all()
    return RunRecord(
        id=row.id,
        project_id=row.project_id,
        profile=row.profile,
        mission=Mission.model_validate(row.mission_doc),
        mission_hash=row.mission_hash,
        context=dict(row.context or {}),
        status=MissionStatus(row.status),
        idempotency_key=row.idempotency_key,
        parent_run_id=row.parent_run_id,
        workspace=row.workspace,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_ms=row.duration_ms,
        error=_error(row.error_code, row.error_message),
        warnings=list(row.warnings or []),
        lease_owner=row.lease_owner,
        lease_until=row.lease_until,
        cancel_requested=bool(row.cancel_requested),
        steps=[
            StepRow(
                step_id=s.step_id,
                step_type=s.step_type,
                status=StepStatus(s.status),
                attempts=s.attempts,
                fence=s.fence,
                output=s.output,
                error=_error(s.error_code, s.error_message, s.error_retryable, s.error_status),
                started_at=s.started_at,
                finished_at=s.finished_at,
                duration_ms=s.duration_ms,
                reused_from=s.reused_from,
            )
            for s in steps
        ],
    )
