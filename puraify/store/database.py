"""Database connection and schema management for the run store.

Embedded default: SQLite at ``$PURAIFY_HOME/puraify.db`` in WAL mode with foreign keys on and
``synchronous=NORMAL``: every commit survives a crash of the process (kill -9), which is what the
run store promises; a power cut may lose the last commits. Set ``sqlite_synchronous = "FULL"``
to survive that too, at the cost of an fsync per commit. PostgreSQL through
``PURAIFY_DATABASE_URL`` (``postgresql+asyncpg://...``).
"""

from __future__ import annotations

import asyncio
import fcntl
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..errors import StoreError
from .sqlite_writer import SqliteWriter

__all__ = ["HEAD_REVISION", "Database", "sqlite_url"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"

#: The newest migration. A test keeps it equal to Alembic's head, so the common path (schema
#: already current) can check it with one query and never import Alembic (~0.25 s).
HEAD_REVISION = "0010"


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


class Database:
    """An async SQLAlchemy engine plus migrations; one per process."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL", echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.sqlite_synchronous = sync = sqlite_synchronous.upper()
        self._path = url.split("///", 1)[-1] if self.is_sqlite else ""
        self._writer: SqliteWriter | None = None
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            # One connection: writes are serialised anyway, and no "database is locked" surprises.
            kwargs.update(pool_size=1, max_overflow=0)
            if self._path and self._path != ":memory:":
                Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        #: the SQLite database file (None for PostgreSQL and in-memory databases)
        self.file: Path | None = (
            Path(self._path) if self.is_sqlite and self._path and self._path != ":memory:" else None
        )
        if self.is_sqlite:
            if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
                raise StoreError(f"sqlite_synchronous must be NORMAL, FULL or EXTRA, not {sync!r}")

            @event.listens_for(self.engine.sync_engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA synchronous={sync}")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.close()

    def _alembic(self) -> Any:
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        return cfg

    async def revision(self) -> str | None:
        """The schema's current Alembic revision (None on an empty database)."""
        async with self.engine.connect() as conn:
            exists = await conn.run_sync(lambda c: c.dialect.has_table(c, "alembic_version"))
            if not exists:
                return None
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()

    def head(self) -> str | None:
        """Alembic's head revision, read from the migration scripts."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic()).get_current_head()

    async def upgrade(self) -> str | None:
        """Apply every pending migration; returns the revision reached."""
        from alembic import command

        cfg = self._alembic()
        try:
            async with self.engine.begin() as conn:

                def run(sync_conn: Any) -> None:
                    cfg.attributes["connection"] = sync_conn
                    command.upgrade(cfg, "head")

                await conn.run_sync(run)
        except OSError as exc:
            raise StoreError(
                f"cannot reach the database: {exc}", code="store_unavailable"
            ) from None
        return await self.revision()

    async def ensure_schema(self) -> None:
        """Upgrade if behind (used on first use of the embedded default). Processes starting
        together on a fresh file take turns (an exclusive lock beside the database), so only
        the first migrates and the others find the schema current."""
        if await self.revision() == HEAD_REVISION:
            return
        if not self.is_sqlite or self._path in ("", ":memory:"):
            await self.upgrade()
            return
        loop = asyncio.get_running_loop()
        lock = await loop.run_in_executor(None, _exclusive, Path(self._path + ".migrate-lock"))
        try:
            if await self.revision() != HEAD_REVISION:
                await self.upgrade()
        finally:
            lock.close()  # closing the descriptor releases the lock

    async def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` (``ok`` when healthy); PostgreSQL: orphan count."""
        async with self.engine.connect() as conn:
            if self.is_sqlite:
                return str((await conn.execute(text("PRAGMA integrity_check"))).scalar())
            orphans = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM run_steps s LEFT JOIN runs r ON r.id = s.run_id "
                        "WHERE r.id IS NULL) + (SELECT count(*) FROM step_attempts a LEFT JOIN runs r "
                        "ON r.id = a.run_id WHERE r.id IS NULL)"
                    )
                )
            ).scalar()
            return "ok" if orphans == 0 else f"{orphans} orphaned rows"

    @property
    def writer(self) -> SqliteWriter | None:
        """The batch writer for a SQLite file (None for PostgreSQL and in-memory SQLite)."""
        if self._writer is None and self.is_sqlite and self._path not in ("", ":memory:"):
            self._writer = SqliteWriter(
                self._path, self.engine.dialect, synchronous=self.sqlite_synchronous
            )
        return self._writer

    async def dispose(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await asyncio.get_running_loop().run_in_executor(None, writer.close)
        await self.engine.dispose()


def _exclusive(path: Path) -> Any:
    """An open file holding an exclusive ``flock`` on ``path`` (blocks until it is free)."""
    handle = open(path, "a")  # noqa: SIM115 - held until the caller closes it
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    return handle
