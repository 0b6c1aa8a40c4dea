"""Idempotency-Key records for run-creating API calls: the same key and body return the first
answer; the same key with another body is a conflict (409); a key too long to store is the
caller's mistake (400)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
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

    def __init__(self, db: Database, *, wait_seconds: float = 30.0) -> None:
        self.db = db
        self.wait_seconds = wait_seconds

    async def run(
        self,
        project_id: str,
        key: str,
        request: bytes,
        produce: Callable[[], Awaitable[tuple[int, Any]]],
    ) -> tuple[int, Any]:
        """Answer with ``produce()`` the first time; with the stored answer afterwards."""
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
                        created_at=datetime.now(UTC),
                    )
                )
        except IntegrityError:
            return await self._existing(project_id, key, digest)
        try:
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

    async def _existing(self, project_id: str, key: str, digest: str) -> tuple[int, Any]:
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
                    "this Idempotency-Key was already used with a different request body"
                )
            if row.status_code is not None:
                return int(row.status_code), row.response
            if asyncio.get_running_loop().time() > deadline:
                raise IdempotencyConflict(
                    "a request with this Idempotency-Key is still in progress"
                )
            await asyncio.sleep(0.05)
