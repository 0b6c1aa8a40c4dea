"""The run repository: ``RunStore`` creates runs and records them as the executor reports.

Implements ``runtime.recorder.RunRecorder``. Every method is one transaction. A run is
committed by ``create_run`` before its id is shown to anyone; an attempt is committed before it
is dispatched; terminal step states are committed before dependents start (the executor batches
them per scheduler tick). ``RunStore`` composes the pieces of the store: rows are built by
``writes``, read back by ``records``, leases are kept by ``leases`` and past runs are read by
``history``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..codes import ErrorCode
from ..errors import StoreError
from ..mission.data import safe_text
from ..mission.model import Mission, MissionResult, MissionStatus, StepError, StepResult
from ..redaction import OPERATOR
from . import history
from .commit import GroupCommit, Write
from .database import Database
from .leases import LEASE_SECONDS, Leases, owner_id
from .records import RunRecord, StepRow, read_record, read_state
from .tables import runs
from .writes import FENCE_SPAN, NewRun, Rows

__all__ = ["LEASE_SECONDS", "RunRecord", "RunStore", "RunWriter", "StepRow", "new_run_id"]

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    """A run id: 32 hex digits, time-ordered (milliseconds since the epoch, then 80 random
    bits, the layout of a UUIDv7 without its version bits).

    Ids that grow with time land at the right edge of every index keyed by run id (runs,
    steps, attempts, events), so a batch of new runs dirties a few pages instead of one random
    page per run and index: SQLite's own work per run dropped by half under API load.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class RunWriter:
    """The one path to the database for what the recorder writes about a run.

    A run created with ``defer`` waits here, unwritten, as a ``NewRun``; it goes in front of
    the first write for that run, in the same transaction (``NewRun.before``). Every write and
    every read-back job for a run passes through ``write`` or ``job`` with the run's id, so no
    write can reach the database ahead of its run, whichever recorder method sends it.
    """

    def __init__(self, commit: GroupCommit) -> None:
        self.commit = commit
        self._pending: dict[str, NewRun] = {}  # run -> its creation, not yet written

    async def create(self, new: NewRun) -> None:
        """Commit a run's creation now (runs created concurrently share a transaction)."""
        await self.commit.write(new.writes())

    def defer(self, new: NewRun) -> None:
        """Hold a run's creation until its first write."""
        self._pending[new.run_id] = new

    def holds(self, run_id: str) -> bool:
        """Whether ``run_id``'s creation is still waiting for its first write."""
        return run_id in self._pending

    def forget(self, run_id: str) -> None:
        """Drop a held creation: its run ended without writing anything (nothing to keep)."""
        self._pending.pop(run_id, None)

    async def write(self, run_id: str, writes: Sequence[Write]) -> None:
        """Commit ``writes`` for ``run_id``, with its creation in front if it is held here."""
        await self.commit.write(self._writes_for(run_id, writes))

    async def job(self, run_id: str, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a job that reads back (``UPDATE ... RETURNING``) once ``run_id`` is written."""
        await self.write(run_id, ())
        return await self.commit(job)

    def _writes_for(self, run_id: str, writes: Sequence[Write]) -> Sequence[Write]:
        pending = self._pending.pop(run_id, None)
        return writes if pending is None else pending.before(writes)


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
        # a safety net (steps' results come redacted of their run's values): known token
        # shapes and the operator's secrets, unless told otherwise
        self.rows = Rows(max_output_bytes, redact or OPERATOR.value)
        self.owner = owner or owner_id()
        self.leases = Leases(db, self.owner)
        self._writer = RunWriter(GroupCommit(db.engine, writer=db.writer))

    @property
    def max_output_bytes(self) -> int:
        return self.rows.max_output_bytes

    @property
    def redact(self) -> Callable[[Any], Any]:
        return self.rows.redact

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

        With an ``idempotency_key`` already used for the same mission, the existing run's id
        comes back instead; used for another mission, ``idempotency_conflict``.
        ``reuse`` copies successful results from another run (``runs retry``). ``profile``:
        the safety profile the run is created under, kept for every later resume or retry.

        ``defer``: for a caller that shows the run id only once the run has ended (``POST
        /execute``), the run is committed in the same transaction as its first recorded event
        (the first attempt, which is always before any dispatch) instead of in one of its own:
        one round trip less per run, and still nothing is dispatched before the run is durable.
        """
        run_id = run_id or new_run_id()
        new = self.rows.new_run(
            mission,
            run_id=run_id,
            now=_now(),
            owner=self.owner,
            lease_seconds=LEASE_SECONDS,
            context=context,
            idempotency_key=idempotency_key,
            parent_run_id=parent_run_id,
            workspace=workspace,
            reuse=reuse or {},
            project_id=project_id,
            profile=profile,
        )
        if idempotency_key is not None:
            existing = await self._keyed(idempotency_key, new.run["mission_hash"])
            if existing is not None:
                return existing, False
        if defer and idempotency_key is None:
            self._writer.defer(new)
            self.leases.hold(run_id, 1)
            return run_id, True
        try:
            await self._writer.create(new)
        except IntegrityError:
            if idempotency_key is not None:
                existing = await self._keyed(idempotency_key, new.run["mission_hash"])
                if existing is not None:
                    return existing, False
            raise
        except OSError as exc:
            raise StoreError(
                f"cannot reach the database: {exc}", code="store_unavailable"
            ) from None
        self.leases.hold(run_id, 1)
        return run_id, True

    def forget(self, run_id: str) -> None:
        """Drop what this store holds for a run that is no longer executing here."""
        self._writer.forget(run_id)
        self.leases.release(run_id)

    async def _keyed(self, key: str, mission_hash: str) -> str | None:
        """The run created with ``key``, which must be of the same mission."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(runs.c.id, runs.c.mission_hash).where(runs.c.idempotency_key == key)
                )
            ).first()
        if row is None:
            return None
        if row.mission_hash != mission_hash:
            raise StoreError(
                f"this idempotency key belongs to run {row.id}, of another mission; use a new "
                "key for this one",
                code="idempotency_conflict",
                run_id=row.id,
            )
        return str(row.id)

    async def find_by_key(self, key: str) -> str | None:
        """The run created with idempotency key ``key``, if any."""
        async with self.db.engine.connect() as conn:
            return (
                await conn.execute(select(runs.c.id).where(runs.c.idempotency_key == key))
            ).scalar()

    # -- recorder ------------------------------------------------------------------------------

    async def attempts_started(
        self,
        run_id: str,
        items: Sequence[tuple[str, int]],
        finished: Sequence[tuple[StepResult, int | None]] = (),
    ) -> dict[str, int]:
        now = _now()
        epoch = await self.leases.epoch(run_id)
        fences = {step_id: epoch * FENCE_SPAN + attempt for step_id, attempt in items}
        writes: list[Write] = list(self.rows.steps(run_id, finished, now)) if finished else []
        for step_id, attempt in items:
            writes.append(self.rows.start_step(run_id, step_id, attempt, fences[step_id], now))
            writes.append(self.rows.attempt(run_id, step_id, attempt, fences[step_id], now))
        await self._writer.write(run_id, writes)
        return fences

    async def steps_finished(
        self, run_id: str, items: Sequence[tuple[StepResult, int | None]]
    ) -> None:
        await self._writer.write(run_id, self.rows.steps(run_id, items, _now()))

    async def attempts_interrupted(self, run_id: str, step_ids: Sequence[str]) -> None:
        """End the attempts of ``step_ids`` still marked running (their engine is gone; the
        steps are about to be dispatched again): ``failed`` with ``interrupted``."""
        if step_ids:
            writes = self.rows.interrupted(run_id, step_ids, _now())
            await self._writer.write(run_id, writes)

    async def attempt_failed(self, run_id: str, step_id: str, fence: int, error: StepError) -> None:
        write = self.rows.attempt_failed(run_id, step_id, fence, error, _now())
        await self._writer.write(run_id, [write])

    async def run_finished(
        self, result: MissionResult, steps: Sequence[tuple[StepResult, int | None]] = ()
    ) -> None:
        """The run's end, with step results not yet recorded, in one transaction."""
        await self._writer.write(result.run_id, self.rows.run_end(result, steps, _now()))
        self.leases.release(result.run_id)

    async def heartbeat(self, run_id: str) -> bool:
        return await self._writer.job(run_id, self.leases.renewal(run_id))

    # -- ownership -----------------------------------------------------------------------------

    async def acquire(self, run_id: str) -> bool:
        """Take the lease of an unfinished run whose owner is gone; False if it is alive."""
        return await self.leases.acquire(run_id)

    async def orphans(self) -> list[str]:
        """Unfinished runs whose owner is gone: what an engine resumes when it starts."""
        return await self.leases.orphans()

    async def request_cancel(self, run_id: str) -> MissionStatus:
        """Ask the owner to cancel; a run with no live owner is cancelled here and now."""
        return await self.leases.request_cancel(run_id)

    async def abandon(self, run_id: str, reason: str) -> None:
        """End a run this process executes and cannot go on with (its engine failed): the run
        and its unfinished steps end ``failed`` with ``internal_error`` and ``reason``, so it is
        never left ``running`` nor resumed into the same failure."""
        await self.leases.end(
            run_id, MissionStatus.FAILED, ErrorCode.INTERNAL_ERROR, safe_text(reason)[:4000]
        )

    # -- reading -------------------------------------------------------------------------------

    async def get(self, run_id: str, *, project_id: str | None = None) -> RunRecord:
        """A run with its steps; with ``project_id``, another project's run is "not found"
        (no existence oracle)."""
        async with self.db.engine.connect() as conn:
            return await read_record(conn, run_id, project_id=project_id)

    async def status(self, run_id: str, *, project_id: str | None = None) -> MissionStatus:
        """A run's status without loading it: what cancel and event streams need. A missing
        run (or another project's, with ``project_id``) raises as ``get`` does."""
        async with self.db.engine.connect() as conn:
            return (await read_state(conn, run_id, project_id=project_id)).status

    async def attempts_of(self, run_id: str) -> list[dict[str, Any]]:
        """Every attempt of a run's steps, in the order they started."""
        return await history.attempts_of(self.db.engine, run_id)

    async def events(self, run_id: str) -> list[dict[str, Any]]:
        """A run's events (created, resumed, finished), oldest first."""
        return await history.events(self.db.engine, run_id)

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
        """Runs, newest first, as summary rows; ``mission`` matches part of the name."""
        return await history.list_runs(
            self.db.engine,
            status=status,
            since=since,
            mission=mission,
            limit=limit,
            offset=offset,
            project_id=project_id,
        )

    async def prune(self, older_than: datetime) -> int:
        """Delete finished runs created before ``older_than`` (their steps and events cascade)."""
        return await history.prune(self.db.engine, older_than)
