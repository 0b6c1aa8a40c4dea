"""The run repository: runs, their steps and attempts, as the executor records them.

Implements ``runtime.recorder.RunRecorder``. Every method is one transaction. A run is
committed by ``create_run`` before its id is shown to anyone; an attempt is committed before it
is dispatched; terminal step states are committed before dependents start (the executor batches
them per scheduler tick). Leases say which process executes a run: the owner renews it; another
process may take the run over once the lease expired, or at once when the owner was a process on
this host that no longer exists (kill -9).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import StoreError
from ..mission.model import Mission, MissionResult, MissionStatus, StepError, StepResult, StepStatus
from .commit import GroupCommit, Statement, Write
from .database import Database
from .tables import attempts, run_events, run_steps, runs

__all__ = ["LEASE_SECONDS", "RunRecord", "RunStore", "StepRow"]

_log = structlog.get_logger("puraify.store")

LEASE_SECONDS = 30.0
TRUNCATED = "__puraify_truncated__"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def mission_hash(mission: Mission) -> str:
    """SHA-256 of the mission's canonical JSON (what ``runs.mission_hash`` holds)."""
    doc = mission.model_dump(mode="json")
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


#: A fence is ``epoch * FENCE_SPAN + attempt``: later attempts and later owners (a takeover
#: raises the run's lease epoch) always hold higher fences than anything before them.
FENCE_SPAN = 1_000_000

# Cached statements with bound parameters, ranked parents first (see store.commit).
_INSERT_RUN = Statement(insert(runs), 0)
_INSERT_STEPS = Statement(insert(run_steps), 1)
_START_STEP = Statement(
    update(run_steps)
    .where(
        run_steps.c.run_id == bindparam("p_run"),
        run_steps.c.step_id == bindparam("p_step"),
        run_steps.c.fence < bindparam("p_fence"),
    )
    .values(
        fence=bindparam("p_fence"),
        status=StepStatus.RUNNING.value,
        attempts=bindparam("p_attempt"),
        started_at=func.coalesce(run_steps.c.started_at, bindparam("p_now")),
    ),
    2,
)
_INSERT_ATTEMPT = Statement(insert(attempts), 3)
_FINISH_FIELDS = {
    "status": bindparam("p_status"),
    "attempts": bindparam("p_attempts"),
    "finished_at": bindparam("p_finished"),
    "duration_ms": bindparam("p_duration"),
    "output": bindparam("p_output", type_=run_steps.c.output.type),
    "error_code": bindparam("p_code"),
    "error_message": bindparam("p_message"),
}
_FINISH_STEP = Statement(  # a result of a dispatched attempt: only if its fence is the latest
    update(run_steps)
    .where(
        run_steps.c.run_id == bindparam("p_run"),
        run_steps.c.step_id == bindparam("p_step"),
        run_steps.c.fence == bindparam("p_fence"),
    )
    .values(**_FINISH_FIELDS),
    4,
)
_DECIDE_STEP = Statement(  # decided without running (skipped, cancelled, unknown_outcome)
    update(run_steps)
    .where(run_steps.c.run_id == bindparam("p_run"), run_steps.c.step_id == bindparam("p_step"))
    .values(**_FINISH_FIELDS),
    4,
)
_FINISH_ATTEMPT = Statement(
    update(attempts)
    .where(
        attempts.c.run_id == bindparam("p_run"),
        attempts.c.step_id == bindparam("p_step"),
        attempts.c.fence == bindparam("p_fence"),
    )
    .values(
        status=bindparam("p_status"),
        finished_at=bindparam("p_finished"),
        duration_ms=bindparam("p_duration"),
        error_code=bindparam("p_code"),
        error_message=bindparam("p_message"),
    ),
    5,
)
_FINISH_RUN = Statement(
    update(runs)
    .where(runs.c.id == bindparam("p_run"))
    .values(
        status=bindparam("p_status"),
        finished_at=bindparam("p_finished"),
        duration_ms=bindparam("p_duration"),
        error_code=bindparam("p_code"),
        error_message=bindparam("p_message"),
        warnings=bindparam("p_warnings", type_=runs.c.warnings.type),
        lease_owner=None,
        lease_until=None,
    ),
    6,
)
_INSERT_EVENT = Statement(insert(run_events), 7)


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


def new_run_id() -> str:
    """A run id: 32 hex digits, time-ordered (milliseconds since the epoch, then 80 random
    bits, the layout of a UUIDv7 without its version bits).

    Ids that grow with time land at the right edge of every index keyed by run id (runs,
    steps, attempts, events), so a batch of new runs dirties a few pages instead of one random
    page per run and index: SQLite's own work per run dropped by half under API load.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def owner_id() -> str:
    """``host:pid:random``: identifies this process as a lease owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_dead(owner: str | None) -> bool:
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine's process: only its lease expiry tells
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid_text}/stat") as fh:
            return fh.read().split()[2] == "Z"
    except OSError:
        return False


@dataclass
class _NewRun:
    run: dict[str, Any]
    steps: list[dict[str, Any]]
    event: dict[str, Any]

    def writes(self) -> list[Write]:
        return [
            Write(_INSERT_RUN, self.run),
            *(Write(_INSERT_STEPS, row) for row in self.steps),
            Write(_INSERT_EVENT, self.event),
        ]


class RunStore:
    """Runs in a SQL database (SQLite or PostgreSQL)."""

    heartbeat_interval: float | None = LEASE_SECONDS / 6

    def __init__(
        self,
        db: Database,
        *,
        max_output_bytes: int = 256 * 1024,
        redact: Callable[[Any], Any] | None = None,
        owner: str | None = None,
    ) -> None:
        self.db = db
        self.max_output_bytes = max_output_bytes
        # The vault (issue D) installs the secret redactor here; until then values pass through.
        self.redact: Callable[[Any], Any] = redact or (lambda value: value)
        self.owner = owner or owner_id()
        self._commit = GroupCommit(db.engine, writer=db.writer)
        self._epochs: dict[str, int] = {}  # run -> lease epoch held by this store
        self._deferred: dict[str, list[Write]] = {}  # run -> its creation, not yet written

    # -- helpers -------------------------------------------------------------------------------

    def _cap(self, output: dict[str, Any] | None) -> dict[str, Any] | None:
        if output is None:
            return None
        output = self.redact(output)
        text = json.dumps(output, default=str)
        if len(text) <= self.max_output_bytes:
            return output
        return {TRUNCATED: True, "size": len(text), "preview": text[: self.max_output_bytes]}

    def _message(self, message: str | None) -> str | None:
        return None if message is None else str(self.redact(message))[:4000]

    # -- creation ------------------------------------------------------------------------------

    async def create_run(
        self,
        mission: Mission,
        *,
        context: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        parent_run_id: str | None = None,
        workspace: str | None = None,
        reuse: dict[str, StepResult] | None = None,
        run_id: str | None = None,
        project_id: str | None = None,
        profile: str = "local",
        defer: bool = False,
    ) -> tuple[str, bool]:
        """Commit a new run (owned by this process) and its steps; ``(run_id, created)``.

        With an ``idempotency_key`` already used, the existing run's id comes back instead.
        ``reuse`` copies successful results from another run (``runs retry``). ``profile``:
        the safety profile the run is created under, kept for every later resume or retry.

        ``defer``: for a caller that shows the run id only once the run has ended (``POST
        /execute``), the run is committed in the same transaction as its first recorded event
        (the first attempt, which is always before any dispatch) instead of in one of its own:
        one round trip less per run, and still nothing is dispatched before the run is durable.
        """
        if idempotency_key is not None:
            existing = await self.find_by_key(idempotency_key)
            if existing is not None:
                return existing, False
        run_id = run_id or new_run_id()
        now = _now()
        doc = mission.model_dump(mode="json")
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        reuse = reuse or {}
        step_rows = []
        for position, step in enumerate(mission.steps):
            old = reuse.get(step.id)
            step_rows.append(
                {
                    "run_id": run_id,
                    "step_id": step.id,
                    "position": position,
                    "step_type": step.step_type,
                    "status": (old.status if old else StepStatus.PENDING).value,
                    "attempts": old.attempts if old else 0,
                    "fence": 0,
                    "started_at": old.started_at if old else None,
                    "finished_at": old.finished_at if old else None,
                    "duration_ms": old.duration_ms if old else None,
                    "output": self._cap(old.output) if old else None,
                    "error_code": None,
                    "error_message": None,
                    "reused_from": parent_run_id if old else None,
                }
            )
        run_row = {
            "id": run_id,
            "mission_name": mission.display_name,
            "mission_hash": digest,
            "mission_doc": doc,
            "context": self.redact(context or {}),
            "status": MissionStatus.RUNNING.value,
            "idempotency_key": idempotency_key,
            "parent_run_id": parent_run_id,
            "workspace": workspace,
            "created_at": now,
            "started_at": now,
            "finished_at": None,
            "duration_ms": None,
            "error_code": None,
            "error_message": None,
            "warnings": [],
            "lease_owner": self.owner,
            "lease_until": now + timedelta(seconds=LEASE_SECONDS),
            "cancel_requested": False,
            "project_id": project_id,
            "lease_epoch": 1,
            "profile": profile,
        }
        event_row = {
            "run_id": run_id,
            "at": now,
            "kind": "run_created",
            "step_id": None,
            "data": {"mission": mission.display_name, "parent_run_id": parent_run_id},
        }
        new = _NewRun(run_row, step_rows, event_row)
        if defer and idempotency_key is None:
            self._deferred[run_id] = new.writes()
            self._epochs[run_id] = 1
            return run_id, True
        try:
            await self._insert_run(new)
        except IntegrityError:
            if idempotency_key is not None:
                existing = await self.find_by_key(idempotency_key)
                if existing is not None:
                    return existing, False
            raise
        except OSError as exc:
            raise StoreError(
                f"cannot reach the database: {exc}", code="store_unavailable"
            ) from None
        return run_id, True

    async def _insert_run(self, new: _NewRun) -> None:
        """Runs created concurrently share one transaction (group commit)."""
        await self._commit.write(new.writes())
        self._epochs[new.run["id"]] = 1

    def forget(self, run_id: str) -> None:
        """Drop what this store holds for a run that is no longer executing here."""
        self._deferred.pop(run_id, None)
        self._epochs.pop(run_id, None)

    def _with_creation(self, run_id: str, writes: list[Write]) -> list[Write]:
        """``writes``, preceded by the run's own creation if it was deferred."""
        creation = self._deferred.pop(run_id, None)
        return writes if creation is None else [*creation, *writes]

    async def find_by_key(self, key: str) -> str | None:
        async with self.db.engine.connect() as conn:
            return (
                await conn.execute(select(runs.c.id).where(runs.c.idempotency_key == key))
            ).scalar()

    # -- recorder ------------------------------------------------------------------------------

    async def _epoch(self, run_id: str) -> int:
        epoch = self._epochs.get(run_id)
        if epoch is None:
            async with self.db.engine.connect() as conn:
                epoch = (
                    await conn.execute(select(runs.c.lease_epoch).where(runs.c.id == run_id))
                ).scalar()
            if epoch is None:
                raise StoreError(f"no run {run_id!r}", code="run_not_found")
            self._epochs[run_id] = int(epoch)
        return int(epoch)

    async def attempts_started(
        self, run_id: str, items: Sequence[tuple[str, int]]
    ) -> dict[str, int]:
        now = _now()
        epoch = await self._epoch(run_id)
        fences = {step_id: epoch * FENCE_SPAN + attempt for step_id, attempt in items}
        creation = self._deferred.pop(run_id, None)
        # A deferred run's steps are inserted in this very transaction: insert them already
        # running instead of inserting and then updating them.
        unwritten = {
            w.params["step_id"]: w.params for w in creation or () if w.statement is _INSERT_STEPS
        }
        writes: list[Write] = list(creation or ())
        for step_id, attempt in items:
            fence = fences[step_id]
            row = unwritten.get(step_id)
            if row is not None:
                row.update(
                    status=StepStatus.RUNNING.value, fence=fence, attempts=attempt, started_at=now
                )
            else:
                params = {
                    "p_run": run_id,
                    "p_step": step_id,
                    "p_fence": fence,
                    "p_attempt": attempt,
                    "p_now": now,
                }
                writes.append(Write(_START_STEP, params))
            writes.append(
                Write(
                    _INSERT_ATTEMPT,
                    {
                        "run_id": run_id,
                        "step_id": step_id,
                        "attempt": attempt,
                        "fence": fence,
                        "status": StepStatus.RUNNING.value,
                        "started_at": now,
                        "finished_at": None,
                        "duration_ms": None,
                        "error_code": None,
                        "error_message": None,
                    },
                )
            )
        await self._commit.write(writes)
        return fences

    async def steps_finished(
        self, run_id: str, items: Sequence[tuple[StepResult, int | None]]
    ) -> None:
        await self._commit.write(self._with_creation(run_id, self._step_writes(run_id, items)))

    def _step_writes(
        self, run_id: str, items: Sequence[tuple[StepResult, int | None]]
    ) -> list[Write]:
        now = _now()
        writes: list[Write] = []
        for result, fence in items:
            error = result.error
            params = {
                "p_run": run_id,
                "p_step": result.step_id,
                "p_fence": fence,
                "p_status": result.status.value,
                "p_attempts": result.attempts,
                "p_finished": result.finished_at or now,
                "p_duration": result.duration_ms,
                "p_output": self._cap(result.output),
                "p_code": error.code if error else None,
                "p_message": self._message(error.message if error else None),
            }
            if fence is None:
                writes.append(Write(_DECIDE_STEP, params))
                continue
            # I5: the WHERE on the fence drops a late result of an earlier attempt or lease.
            writes.append(Write(_FINISH_STEP, params))
            writes.append(Write(_FINISH_ATTEMPT, params))
        return writes

    async def attempt_failed(self, run_id: str, step_id: str, fence: int, error: StepError) -> None:
        params = {
            "p_run": run_id,
            "p_step": step_id,
            "p_fence": fence,
            "p_status": StepStatus.FAILED.value,
            "p_finished": _now(),
            "p_duration": None,
            "p_code": error.code,
            "p_message": self._message(error.message),
        }
        await self._commit.write(self._with_creation(run_id, [Write(_FINISH_ATTEMPT, params)]))

    async def run_finished(
        self, result: MissionResult, steps: Sequence[tuple[StepResult, int | None]] = ()
    ) -> None:
        """The run's end, with step results not yet recorded, in one transaction."""
        run_id = result.run_id
        ended = {
            "p_run": run_id,
            "p_status": result.status.value,
            "p_finished": result.finished_at,
            "p_duration": result.duration_ms,
            "p_code": result.error.code if result.error else None,
            "p_message": self._message(result.error.message if result.error else None),
            "p_warnings": [self._message(w) for w in result.warnings],
        }
        event = {
            "run_id": run_id,
            "at": _now(),
            "kind": "run_finished",
            "step_id": None,
            "data": {"status": result.status.value},
        }
        writes = [
            *self._step_writes(run_id, steps),
            Write(_FINISH_RUN, ended),
            Write(_INSERT_EVENT, event),
        ]
        await self._commit.write(self._with_creation(run_id, writes))
        self._epochs.pop(run_id, None)

    async def heartbeat(self, run_id: str) -> bool:
        await self._commit.write(self._with_creation(run_id, []))  # nothing if already written
        now = _now()

        async def job(conn: AsyncConnection) -> Any:
            row = (
                await conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.lease_owner == self.owner)
                    .values(lease_until=now + timedelta(seconds=LEASE_SECONDS))
                    .returning(runs.c.cancel_requested)
                )
            ).first()
            return row

        row = await self._commit(job)
        return bool(row[0]) if row is not None else False

    # -- ownership -----------------------------------------------------------------------------

    async def acquire(self, run_id: str) -> bool:
        """Take the lease of an unfinished run whose owner is gone; False if it is alive."""
        record = await self.get(run_id)
        if record.finished:
            return False
        now = _now()
        expired = record.lease_until is None or record.lease_until < now
        if (
            record.lease_owner not in (None, self.owner)
            and not expired
            and not _owner_dead(record.lease_owner)
        ):
            return False
        async with self.db.engine.begin() as conn:
            epoch = (
                await conn.execute(
                    update(runs)
                    .where(
                        runs.c.id == run_id,
                        runs.c.status == MissionStatus.RUNNING.value,
                        or_(runs.c.lease_owner.is_(None), runs.c.lease_owner == record.lease_owner),
                    )
                    .values(
                        lease_owner=self.owner,
                        lease_until=now + timedelta(seconds=LEASE_SECONDS),
                        lease_epoch=runs.c.lease_epoch + 1,  # fences of the old owner go stale
                    )
                    .returning(runs.c.lease_epoch)
                )
            ).scalar()
            changed = epoch is not None
            if changed:
                self._epochs[run_id] = int(epoch)
                await conn.execute(
                    insert(run_events).values(
                        run_id=run_id,
                        at=now,
                        kind="run_resumed",
                        step_id=None,
                        data={"previous_owner": record.lease_owner},
                    )
                )
        return bool(changed)

    async def orphans(self) -> list[str]:
        """Unfinished runs whose owner is gone: what an engine resumes when it starts."""
        now = _now()
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(runs.c.id, runs.c.lease_owner, runs.c.lease_until)
                    .where(runs.c.status == MissionStatus.RUNNING.value)
                    .order_by(runs.c.created_at)
                )
            ).all()
        return [
            r.id
            for r in rows
            if r.lease_owner is None
            or (_aware(r.lease_until) or now) < now
            or _owner_dead(r.lease_owner)
        ]

    async def request_cancel(self, run_id: str) -> MissionStatus:
        """Ask the owner to cancel; a run with no live owner is cancelled here and now."""
        record = await self.get(run_id)
        if record.finished:
            return record.status
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(runs).where(runs.c.id == run_id).values(cancel_requested=True)
            )
        if await self.acquire(run_id):
            now = _now()
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(run_steps)
                    .where(
                        run_steps.c.run_id == run_id,
                        run_steps.c.status.in_(
                            [StepStatus.PENDING.value, StepStatus.RUNNING.value]
                        ),
                    )
                    .values(
                        status=StepStatus.CANCELLED.value,
                        finished_at=now,
                        error_code="cancelled",
                        error_message="run cancelled",
                    )
                )
                await conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id)
                    .values(
                        status=MissionStatus.CANCELLED.value,
                        finished_at=now,
                        error_code="cancelled",
                        error_message="the run was cancelled",
                        lease_owner=None,
                        lease_until=None,
                    )
                )
            return MissionStatus.CANCELLED
        return MissionStatus.RUNNING

    # -- reading -------------------------------------------------------------------------------

    async def get(self, run_id: str, *, project_id: str | None = None) -> RunRecord:
        """A run with its steps; with ``project_id``, another project's run is "not found"
        (no existence oracle)."""
        query = select(runs).where(runs.c.id == run_id)
        if project_id is not None:
            query = query.where(runs.c.project_id == project_id)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                raise StoreError(f"no run {run_id!r}", code="run_not_found")
            steps = (
                await conn.execute(
                    select(run_steps)
                    .where(run_steps.c.run_id == run_id)
                    .order_by(run_steps.c.position)
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
            created_at=_aware(row.created_at) or _now(),
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            duration_ms=row.duration_ms,
            error=StepError(code=row.error_code, message=row.error_message or "")
            if row.error_code
            else None,
            warnings=list(row.warnings or []),
            lease_owner=row.lease_owner,
            lease_until=_aware(row.lease_until),
            cancel_requested=bool(row.cancel_requested),
            steps=[
                StepRow(
                    step_id=s.step_id,
                    step_type=s.step_type,
                    status=StepStatus(s.status),
                    attempts=s.attempts,
                    fence=s.fence,
                    output=s.output,
                    error=StepError(code=s.error_code, message=s.error_message or "")
                    if s.error_code
                    else None,
                    started_at=_aware(s.started_at),
                    finished_at=_aware(s.finished_at),
                    duration_ms=s.duration_ms,
                    reused_from=s.reused_from,
                )
                for s in steps
            ],
        )

    async def attempts_of(self, run_id: str) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
            rows = (
                (
                    await conn.execute(
                        select(attempts).where(attempts.c.run_id == run_id).order_by(attempts.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return [
            {
                **dict(r),
                "started_at": _aware(r["started_at"]),
                "finished_at": _aware(r["finished_at"]),
            }
            for r in rows
        ]

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        async with self.db.engine.connect() as conn:
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

    async def list_runs(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        mission: str | None = None,
        limit: int = 50,
        offset: int = 0,
        project_id: str | None = None,
    ) -> list[dict[str, Any]]:
        query = select(
            runs.c.id,
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
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            {
                **dict(r),
                "created_at": _aware(r["created_at"]),
                "finished_at": _aware(r["finished_at"]),
            }
            for r in rows
        ]

    async def prune(self, older_than: datetime) -> int:
        """Delete finished runs created before ``older_than`` (their steps and events cascade)."""
        async with self.db.engine.begin() as conn:
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
