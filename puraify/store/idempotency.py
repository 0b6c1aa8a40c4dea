"""Idempotency-Key records for run-creating API calls: the same key and request return the first
answer; the same key with another request is a conflict (409); a key too long to store is the
caller's mistake (400).

The request answering a key holds it by a lease it renews while it works. A repeat that finds
the key pending waits for the answer; once the lease has run out (its request died with its
process), the repeat takes the key over and answers it itself, instead of waiting for an answer
that will never come."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..codes import ErrorCode
from ..errors import StoreError
from .database import Database
from .tables import idempotency_records

__all__ = ["IdempotencyConflict", "IdempotencyStore", "InvalidIdempotencyKey"]

MAX_KEY_LENGTH = 200  # the width of idempotency_records.key


class IdempotencyConflict(StoreError):
    """The key was used with another request, or its first request has not answered yet."""

    default_code = ErrorCode.IDEMPOTENCY_CONFLICT
    http_status = HTTPStatus.CONFLICT


class InvalidIdempotencyKey(StoreError):
    """The key cannot be stored: it is longer than ``MAX_KEY_LENGTH`` characters."""

    default_code = ErrorCode.INVALID_IDEMPOTENCY_KEY
    http_status = HTTPStatus.BAD_REQUEST


class IdempotencyStore:
    """Idempotency-Key records in the run store: each key's first answer, replayed on repeats."""

    def __init__(
        self,
        db: Database,
        *,
        wait_seconds: float = 30.0,
        lease_seconds: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self.clock = clock

    def _lease(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease_seconds)

    async def run(
        self,
        project_id: str,
        key: str,
        request: bytes,
        produce: Callable[[], Awaitable[tuple[int, Any]]],
    ) -> tuple[int, Any]:
        """Answer with ``produce()`` the first time; with the stored answer afterwards."""
        if not key.strip():
            raise InvalidIdempotencyKey(
                "Idempotency-Key is empty; send a unique key per operation, or none",
                field="Idempotency-Key",
            )
        if len(key) > MAX_KEY_LENGTH:
            raise InvalidIdempotencyKey(
                f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters; send a shorter key",
                field="Idempotency-Key",
            )
        digest = hashlib.sha256(request).hexdigest()
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    insert(idempotency_records).values(
                        project_id=project_id,
                        key=key,
                        request_hash=digest,
                        status_code=None,
                        response=None,
                        created_at=self.clock(),
                        lease_until=self._lease(),
                    )
                )
        except IntegrityError:
            answer = await self._existing(project_id, key, digest)
            if answer is not None:
                return answer
        return await self._answer(project_id, key, produce)

    async def _answer(
        self, project_id: str, key: str, produce: Callable[[], Awaitable[tuple[int, Any]]]
    ) -> tuple[int, Any]:
        """Produce the answer of a key this request holds, renewing its lease meanwhile."""
        try:
            async with self._renewing(project_id, key):
                status, body = await produce()
        except BaseException:
            # nothing was answered: free the key so the caller can try again
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    delete(idempotency_records).where(
                        idempotency_records.c.project_id == project_id,
                        idempotency_records.c.key == key,
                    )
                )
            raise
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(idempotency_records)
                .where(
                    idempotency_records.c.project_id == project_id, idempotency_records.c.key == key
                )
                .values(status_code=status, response=body)
            )
        return status, body

    @contextlib.asynccontextmanager
    async def _renewing(self, project_id: str, key: str) -> AsyncIterator[None]:
        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease_seconds / 3)
                async with self.db.engine.begin() as conn:
                    await conn.execute(
                        update(idempotency_records)
                        .where(
                            idempotency_records.c.project_id == project_id,
                            idempotency_records.c.key == key,
                            idempotency_records.c.status_code.is_(None),
                        )
                        .values(lease_until=self._lease())
                    )

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _take_over(self, project_id: str, key: str, lease: datetime | None) -> bool:
        """Take a pending key whose lease ran out; False if another request took it first."""
        held = idempotency_records.c.lease_until
        async with self.db.engine.begin() as conn:
            taken = await conn.execute(
                update(idempotency_records)
                .where(
                    idempotency_records.c.project_id == project_id,
                    idempotency_records.c.key == key,
                    idempotency_records.c.status_code.is_(None),
                    held.is_(None) if lease is None else held == lease,
                )
                .values(lease_until=self._lease())
            )
        return bool(taken.rowcount)

    async def _existing(self, project_id: str, key: str, digest: str) -> tuple[int, Any] | None:
        """The stored answer of a key used before; None once this request took the key over
        from a request that died (it must answer it now)."""
        deadline = asyncio.get_running_loop().time() + self.wait_seconds
        while True:
            async with self.db.engine.connect() as conn:
                row = (
                    await conn.execute(
                        select(idempotency_records).where(
                            idempotency_records.c.project_id == project_id,
                            idempotency_records.c.key == key,
                        )
                    )
                ).first()
            if row is None:
                raise IdempotencyConflict("Idempotency-Key record vanished; retry the request")
            if row.request_hash != digest:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used with a different request (method, "
                    "path, query or body)"
                )
            if row.status_code is not None:
                return int(row.status_code), row.response
            expired = row.lease_until is None or row.lease_until < self.clock()
            if expired and await self._take_over(project_id, key, row.lease_until):
                return None
            if asyncio.get_running_loop().time() > deadline:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in progress"
                )
            await asyncio.sleep(0.05)
