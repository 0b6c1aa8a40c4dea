"""SQLite's write path for group commits: one thread, one connection, one hop per batch.

Through SQLAlchemy's async engine on aiosqlite, every statement of a batch costs several trips
between the event loop and aiosqlite's thread (cursor, execute, close; then commit), each with a
future, a wake-up of the loop and SQLAlchemy's execution context around it: measured under API
load, ~400 us of CPU per one-step run for nine rows. Here a whole batch (``BEGIN IMMEDIATE``,
one ``executemany`` per statement, ``COMMIT``) runs in a single call on a dedicated thread.

Statements stay SQLAlchemy Core objects: each is compiled once for SQLite by SQLAlchemy, and
parameters pass through the column types' own bind processors (JSON, DateTime, Boolean), so rows
are stored exactly as the async engine stores them and read back the same way. Only plain writes
come here; jobs that read back (``UPDATE ... RETURNING``) still use the async engine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DatabaseError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.sql.base import Executable

__all__ = ["SqliteWriter"]

Rows = list[tuple[Any, ...]]

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


class _Compiled:
    """A statement compiled for SQLite for one set of parameter names."""

    def __init__(self, sql: Executable, keys: Sequence[str], dialect: Dialect) -> None:
        compiled = sql.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
        if getattr(compiled, "insert_prefetch", None):
            # a Python-side column default would need SQLAlchemy's execution context
            raise ValueError(f"{sql} needs values for every column with a Python default")
        self.text = compiled.string
        self.compiled = compiled
        names: list[str] = list(compiled.positiontup or [])
        self.plan: list[tuple[str, Callable[[Any], Any] | None]] = [
            (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in names
        ]
        # Our statements name every bind after a parameter key; anything else (a literal
        # bind, a renamed one) goes through SQLAlchemy's construct_params.
        self.direct = set(names) <= set(keys)

    def rows(self, params: list[dict[str, Any]]) -> Rows:
        plan = self.plan
        if not self.direct:
            construct = self.compiled.construct_params
            params = [construct(p) for p in params]
        return [
            tuple(p[name] if process is None else process(p[name]) for name, process in plan)
            for p in params
        ]


def _translate(exc: sqlite3.Error, statement: str) -> DBAPIError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(statement, None, exc)
    if isinstance(exc, sqlite3.OperationalError):
        return OperationalError(statement, None, exc)
    return DatabaseError(statement, None, exc)


def _try_begin(conn: sqlite3.Connection) -> bool:
    """``BEGIN IMMEDIATE``; False while another connection holds the write lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorcode", None) not in (_SQLITE_BUSY, _SQLITE_LOCKED):
            raise
        return False
    return True


def _backoff(seconds: float, *, cap: float = 2e-4) -> Iterator[float]:
    """Pauses between tries for the write lock: 50 us doubling up to ``cap``, for ``seconds``."""
    deadline = time.monotonic() + seconds
    delay = 50e-6
    while time.monotonic() < deadline:
        yield delay
        delay = min(delay * 2, cap)
    raise sqlite3.OperationalError(f"database is locked (waited {seconds:g}s)")


class SqliteWriter:
    """Applies batches of writes to a SQLite file on one dedicated thread."""

    def __init__(
        self,
        path: str,
        dialect: Dialect,
        *,
        synchronous: str = "NORMAL",
        busy_seconds: float = 10.0,
    ) -> None:
        self.path = path
        self.busy_seconds = busy_seconds
        self.dialect = dialect
        self.synchronous = synchronous
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="puraify-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._compiled: dict[tuple[int, tuple[str, ...]], _Compiled] = {}
        # Without an fsync per commit (NORMAL, OFF), a batch is a few hundred microseconds of C
        # and runs in the event loop itself (checkpoints, which do fsync, on their own thread);
        # with FULL or EXTRA every commit waits for the disk, so batches go to the thread.
        self.inline = synchronous.upper() in ("NORMAL", "OFF")
        self.checkpoint_seconds = 0.5
        self._inline: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    def compile(self, sql: Executable, keys: Sequence[str]) -> _Compiled:
        """``sql`` compiled for these parameter names, once (callers are on the event loop)."""
        key = (id(sql), tuple(keys))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(sql, keys, self.dialect)
        return compiled

    async def apply(self, groups: list[tuple[Executable, list[dict[str, Any]]]]) -> None:
        """Run ``(statement, parameter sets)`` in order in one transaction; raises on failure
        (nothing of the batch is then committed)."""
        prepared = []
        for sql, params in groups:
            compiled = self.compile(sql, list(params[0]))
            prepared.append((compiled.text, compiled.rows(params)))
        if self.inline:
            await self._apply_inline(prepared)
        else:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._run, prepared)

    async def _apply_inline(self, prepared: list[tuple[str, Rows]]) -> None:
        conn = self._inline_connection()
        delays = _backoff(self.busy_seconds)
        try:
            # another process's lock: nothing here can signal its release, so poll
            while not _try_begin(conn):  # noqa: ASYNC110
                await asyncio.sleep(next(delays))  # the loop serves others meanwhile
        except sqlite3.Error as exc:
            raise _translate(exc, "BEGIN IMMEDIATE") from exc
        self._body(conn, prepared)

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            conn = self._connect(check_same_thread=False)
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
            self._inline = conn
            self._checkpointer = threading.Thread(
                target=self._checkpoints, name="puraify-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()
        return self._inline

    def _checkpoints(self) -> None:
        conn = self._connect()
        try:
            while not self._stop.wait(self.checkpoint_seconds):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    continue  # the next round tries again
        finally:
            conn.close()

    def _connect(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        # busy_timeout 0: waiting for another process's write lock is done by _try_begin and
        # _backoff, because SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms
        # between tries, for a lock that another API process holds well under a millisecond.
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=0, check_same_thread=check_same_thread
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        return conn

    def _run(self, prepared: list[tuple[str, Rows]]) -> None:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        delays = _backoff(self.busy_seconds)
        try:
            while not _try_begin(conn):  # take the write lock now, not halfway through
                time.sleep(next(delays))
        except sqlite3.Error as exc:
            raise _translate(exc, "BEGIN IMMEDIATE") from exc
        self._body(conn, prepared)

    @staticmethod
    def _body(conn: sqlite3.Connection, prepared: list[tuple[str, Rows]]) -> None:
        """The batch's statements and COMMIT, in a transaction already begun."""
        text = ""
        try:
            try:
                for text, rows in prepared:
                    if len(rows) == 1:
                        conn.execute(text, rows[0])
                    else:
                        conn.executemany(text, rows)
                text = "COMMIT"
                conn.execute(text)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            # the same exception classes the async engine raises (callers catch IntegrityError)
            raise _translate(exc, text) from exc

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connections and stop the threads (waits for a batch under way)."""
        self._pool.submit(self._close).result()
        self._pool.shutdown(wait=True)
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
        if self._inline is not None:
            self._inline.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._inline.close()
            self._inline = None
