"""Group commit: concurrent writers share one transaction.

Each caller hands in a job (an async function of a connection) and gets its result once the
transaction holding it has committed, exactly as if it had committed alone. While one batch
commits, the next one gathers. If a batch fails (one job broke a constraint), every job of it is
run again in a transaction of its own, so one bad job cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["GroupCommit"]

T = TypeVar("T")
Job = Callable[[AsyncConnection], Awaitable[Any]]


class GroupCommit:
    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._pending: list[tuple[Job, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, job: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                async with self.engine.begin() as conn:
                    results = [await job(conn) for job, _ in batch]
            except Exception:
                if len(batch) == 1:
                    await self._alone(*batch[0])
                else:
                    for job, future in batch:
                        await self._alone(job, future)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _alone(self, job: Job, future: asyncio.Future[Any]) -> None:
        try:
            async with self.engine.begin() as conn:
                result = await job(conn)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)
