"""Group commit: concurrent writers share one transaction.

A caller hands in either a job (an async function of a connection, for writes that read back,
like ``UPDATE ... RETURNING``) or a list of ``Write`` s (a cached statement and its parameters).
Writes of the same statement from every caller in a batch go to the database as one
``executemany``, in the statements' fixed ``rank`` order (parents before children), so a batch
of fifty step results costs a couple of round trips instead of a hundred. Each caller returns
once the transaction holding its work has committed, exactly as if it had committed alone. If a
batch fails (one write broke a constraint), every caller's work is run again in a transaction of
its own, so one bad write cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.base import Executable

from .sqlite_writer import SqliteWriter

__all__ = ["GroupCommit", "Statement", "Write"]

T = TypeVar("T")
Job = Callable[[AsyncConnection], Awaitable[Any]]


@dataclass(frozen=True, eq=False)
class Statement:
    """A cached statement with bound parameters, and where it runs within a batch."""

    sql: Executable
    rank: int


@dataclass(frozen=True)
class Write:
    statement: Statement
    params: dict[str, Any]


Work = Job | Sequence[Write]


class GroupCommit:
    """Batches concurrent writers into shared transactions (see the module docstring).

    With a ``writer`` (SQLite), batches made only of ``Write`` s go through it: one thread hop
    per batch instead of several per statement. Jobs always use the async engine.
    """

    def __init__(
        self, engine: AsyncEngine, *, writer: SqliteWriter | None = None, max_batch: int = 256
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.max_batch = max_batch
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def __call__(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run ``work`` (a job) in the next committed batch; its result."""
        return await self._submit(work)  # type: ignore[no-any-return]

    async def write(self, writes: Sequence[Write]) -> None:
        """Apply ``writes`` in the next committed batch."""
        if writes:
            await self._submit(writes)

    async def _submit(self, work: Work) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((work, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                results = await self._apply([work for work, _ in batch])
            except Exception:
                for work, future in batch:
                    await self._alone(work, future)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def _apply(self, works: list[Work]) -> list[Any]:
        if self.writer is not None and not any(callable(work) for work in works):
            await self.writer.apply(_grouped(works))
            return [None] * len(works)
        async with self.engine.begin() as conn:
            return await _apply(conn, works)

    async def _alone(self, work: Work, future: asyncio.Future[Any]) -> None:
        try:
            (result,) = await self._apply([work])
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(result)


def _grouped(works: list[Work]) -> list[tuple[Executable, list[dict[str, Any]]]]:
    """Every caller's writes, one entry per statement, in rank order (parents first)."""
    groups: dict[int, tuple[Statement, list[dict[str, Any]]]] = {}
    for work in works:
        if callable(work):
            continue
        for w in work:
            groups.setdefault(id(w.statement), (w.statement, []))[1].append(w.params)
    return [(st.sql, params) for st, params in sorted(groups.values(), key=lambda g: g[0].rank)]


async def _apply(conn: AsyncConnection, works: list[Work]) -> list[Any]:
    for sql, params in _grouped(works):
        await conn.execute(sql, params if len(params) > 1 else params[0])
    results: list[Any] = []
    for work in works:
        results.append(await work(conn) if callable(work) else None)
    return results
