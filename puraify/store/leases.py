"""Who executes a run: leases, takeovers, orphans and cancel requests.

The executing process holds a run's lease and renews it (``renewal``, at every heartbeat, which
also tells it about cancel requests). Another process may take a run over once its lease
expired, or at once when the owner was a process on this host that no longer exists (kill -9).
Each takeover raises the run's lease epoch, from which fences derive (``writes.FENCE_SPAN``), so
a late result of the old owner can never overwrite the new owner's.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..mission.model import MissionStatus, StepStatus
from .database import Database
from .records import read_state, run_not_found
from .tables import attempts, run_events, run_steps, runs

__all__ = ["LEASE_SECONDS", "Leases", "owner_dead", "owner_id"]

LEASE_SECONDS = 30.0


def _now() -> datetime:
    return datetime.now(UTC)


def owner_id() -> str:
    """``host:pid:random``: identifies this process as a lease owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_dead(owner: str | None) -> bool:
    """Whether ``owner`` is known to be gone: no owner, or a process of this host that exited."""
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


class Leases:
    """This process's leases on runs, and the lease epoch it holds for each."""

    def __init__(self, db: Database, owner: str) -> None:
        self.db = db
        self.owner = owner
        self._epochs: dict[str, int] = {}  # run -> lease epoch held by this process

    def hold(self, run_id: str, epoch: int) -> None:
        """Remember that this process executes ``run_id`` under ``epoch``."""
        self._epochs[run_id] = epoch

    def release(self, run_id: str) -> None:
        """Forget ``run_id``: it ended or is no longer executed here."""
        self._epochs.pop(run_id, None)

    async def epoch(self, run_id: str) -> int:
        """The lease epoch of ``run_id``: the one held here, else the stored one."""
        epoch = self._epochs.get(run_id)
        if epoch is None:
            async with self.db.engine.connect() as conn:
                epoch = (
                    await conn.execute(select(runs.c.lease_epoch).where(runs.c.id == run_id))
                ).scalar()
            if epoch is None:
                raise run_not_found(run_id)
            self._epochs[run_id] = int(epoch)
        return int(epoch)

    def renewal(self, run_id: str) -> Callable[[AsyncConnection], Awaitable[bool]]:
        """A job that extends this process's lease on ``run_id``; it returns True when
        someone asked to cancel the run."""

        async def renew(conn: AsyncConnection) -> bool:
            row = (
                await conn.execute(
                    update(runs)
                    .where(runs.c.id == run_id, runs.c.lease_owner == self.owner)
                    .values(lease_until=_now() + timedelta(seconds=LEASE_SECONDS))
                    .returning(runs.c.cancel_requested)
                )
            ).first()
            return bool(row[0]) if row is not None else False

        return renew

    async def acquire(self, run_id: str) -> bool:
        """Take the lease of an unfinished run whose owner is gone; False if it is alive."""
        async with self.db.engine.connect() as conn:
            state = await read_state(conn, run_id)
        if state.finished:
            return False
        now = _now()
        expired = state.lease_until is None or state.lease_until < now
        if (
            state.lease_owner not in (None, self.owner)
            and not expired
            and not owner_dead(state.lease_owner)
        ):
            return False
        async with self.db.engine.begin() as conn:
            epoch = (
                await conn.execute(
                    update(runs)
                    .where(
                        runs.c.id == run_id,
                        runs.c.status == MissionStatus.RUNNING.value,
                        or_(runs.c.lease_owner.is_(None), runs.c.lease_owner == state.lease_owner),
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
                        data={"previous_owner": state.lease_owner},
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
            if r.lease_owner is None or (r.lease_until or now) < now or owner_dead(r.lease_owner)
        ]

    async def request_cancel(self, run_id: str) -> MissionStatus:
        """Ask the owner to cancel; a run with no live owner is cancelled here and now."""
        async with self.db.engine.connect() as conn:
            state = await read_state(conn, run_id)
        if state.finished:
            return state.status
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(runs).where(runs.c.id == run_id).values(cancel_requested=True)
            )
        if await self.acquire(run_id):
            await self.end(run_id, MissionStatus.CANCELLED, "cancelled", "the run was cancelled")
            return MissionStatus.CANCELLED
        return MissionStatus.RUNNING

    async def end(self, run_id: str, status: MissionStatus, code: str, message: str) -> None:
        """End a run this process holds (``acquire``d, or its engine stopped) and that will not
        run on: unfinished steps and their open attempts end with it, pending ones cancelled,
        running ones with ``status`` and the reason."""
        now = _now()
        if status is MissionStatus.CANCELLED:
            step_status, step_code, step_message = (
                StepStatus.CANCELLED,
                "cancelled",
                "run cancelled",
            )
        else:
            step_status, step_code, step_message = StepStatus.FAILED, code, message
        ended = {"finished_at": now}
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(run_steps)
                .where(run_steps.c.run_id == run_id, run_steps.c.status == StepStatus.PENDING.value)
                .values(
                    status=StepStatus.CANCELLED.value,
                    error_code="cancelled",
                    error_message="run cancelled",
                    **ended,
                )
            )
            for table in (run_steps, attempts):  # running steps, and attempts of a gone engine
                await conn.execute(
                    update(table)
                    .where(table.c.run_id == run_id, table.c.status == StepStatus.RUNNING.value)
                    .values(
                        status=step_status.value,
                        error_code=step_code,
                        error_message=step_message,
                        **ended,
                    )
                )
            await conn.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    status=status.value,
                    finished_at=now,
                    error_code=code,
                    error_message=message,
                    lease_owner=None,
                    lease_until=None,
                )
            )
        self.release(run_id)
