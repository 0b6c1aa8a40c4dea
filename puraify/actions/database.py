"""Databases: ``database.create_record``, one row inserted with SQLAlchemy Core.

The database is the project's ``database_url`` credential of platform ``database``:
``postgresql://user:password@host:5432/db`` (asyncpg), ``mysql://`` or ``mariadb://``
(asyncmy), or ``sqlite:///orders.db``. SQLAlchemy Core, not hand-written SQL: the table is
read from the database (its columns, types and primary key), each value is a bound parameter,
and the names in the statement are the database's own, quoted by the dialect; no text from a
mission ever becomes SQL. A column the table does not have is ``invalid_parameters``; a table
it does not have, ``not_found``. Text is converted to what a column holds (dates, times,
numbers, UUIDs; base64 for binary columns), so a mission can pass JSON values.

Network databases: the host passes the egress policy (the SSRF guard) and the connection goes to
the address that was checked; over TLS the certificate is checked against the host's name.
TLS is on and verified unless the server is on loopback or the URL says ``sslmode=disable``
(``require``: encrypted, certificate not checked; ``verify-full``, the default elsewhere). No
other URL option is taken: ``host=/socket`` or ``unix_socket=`` would reach a server past the
guard. Nothing comes from the engine's environment (``PGPASSWORD``, ``~/.pgpass``, option
files).

SQLite: a database file of the project's own, named by a plain file name
(``sqlite:///orders.db``) and kept by the engine outside every workspace
(``<home>/databases/<project>/``, where the file and its tables are created with any SQLite
tool; the action never creates one). Not in the
workspace: SQLite opens a file by its path and follows links, so a command running beside the
step could swap the file for a link to another database (the engine's own included) between
any check and the open.

Each call opens one connection and closes it (the address is checked again each time).
Errors: a unique, foreign-key, not-null or check constraint → ``constraint_violation``; a value
of the wrong type → ``invalid_parameters``; authentication refused → ``credential_invalid``;
connection refused or lost → ``connection_error`` (retryable); ``timeout`` → ``timeout``. The
insert and its commit are one transaction: anything that goes wrong before the commit leaves
nothing stored, so a retry is safe; a connection that ends while the commit is answered is
``unknown_outcome`` (not retried: the record may be there).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import decimal
import ipaddress
import json
import re
import ssl
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import sqlalchemy as sa
from pydantic import AliasChoices, Field
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from ..codes import ErrorCode
from ..errors import ActionError
from .base import MISSING_OR_SCOPE, Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .platform import tls_for, too_slow

__all__ = ["CreateRecord"]

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_$]{0,62}"
_SQLITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}
_FAMILY = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+asyncmy": "mysql",
    "mariadb+asyncmy": "mysql",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
}
_TLS_OPTIONS = ("sslmode", "ssl_mode", "ssl-mode", "ssl")
_TLS_MODES = {
    "disable": "disable",
    "disabled": "disable",
    "false": "disable",
    "require": "require",
    "required": "require",
    "true": "require",
    "verify-ca": "verify",
    "verify_ca": "verify",
    "verify-full": "verify",
    "verify_identity": "verify",
}


def _refused(message: str) -> ActionError:
    return ActionError(message, code=ErrorCode.INVALID_CREDENTIAL)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _tls(url: URL, host: str) -> str:
    """``disable``, ``require`` or ``verify``: the URL's choice, else verify off loopback."""
    options = dict(url.query)
    unknown = sorted(set(options) - set(_TLS_OPTIONS))
    if unknown:
        raise _refused(
            f"the database URL's option {unknown[0]!r} is not taken "
            "(only sslmode: disable, require or verify-full)"
        )
    chosen = [str(v[-1] if isinstance(v, tuple) else v).lower() for v in options.values()]
    if not chosen:
        return "disable" if _loopback(host) else "verify"
    mode = _TLS_MODES.get(chosen[-1])
    if mode is None:
        raise _refused(f"sslmode {chosen[-1]!r} is not disable, require or verify-full")
    return mode


async def _engine_url(ctx: ActionContext, seconds: float) -> tuple[URL, dict[str, Any]]:
    """The SQLAlchemy URL to connect to and its driver's arguments."""
    credential = await ctx.credential("database")
    raw = credential.get("url")
    try:
        url = make_url(raw) if isinstance(raw, str) else None
    except (sa_exc.ArgumentError, ValueError):
        url = None
    family = _FAMILY.get(url.drivername) if url is not None else None
    if url is None or family is None:
        raise _refused(
            "the database credential is not a postgresql://, mysql://, mariadb:// or sqlite:/// URL"
        )
    if family == "sqlite":
        return _sqlite(ctx, url), {"timeout": seconds}
    if not url.host or url.host.startswith("/") or not url.username:
        raise _refused("the database URL needs a user and a host (user@host:port/database)")
    if "@" in url.host or "/" in url.host:
        # never echoed: with an @ left in the password, the host holds part of it
        raise _refused(
            "the database URL's host is not a host name; an @ or / in the password is "
            "written %40 or %2F"
        )
    port = url.port or (5432 if family == "postgresql" else 3306)
    mode = _tls(url, url.host)
    address = await ctx.hosts.address(url.host, port) if ctx.hosts is not None else url.host
    # encrypted and checked against the host's name; `require`: encrypted only, as libpq's
    context = tls_for(url.host, verify=mode == "verify") if mode != "disable" else None
    target = URL.create(
        _DRIVERS[family],
        username=url.username,
        password=url.password or "",
        # to the address that was checked (no second lookup to rebind); over TLS the
        # certificate is still checked against the host's name (tls_for)
        host=address,
        port=port,
        database=url.database or None,
    )
    if family == "postgresql":
        args: dict[str, Any] = {
            "timeout": seconds,
            "command_timeout": seconds,
            "ssl": context if context is not None else False,
            # given even when empty: asyncpg would take PGPASSWORD or ~/.pgpass instead
            "password": url.password or "",
        }
        if target.database is None:
            target = target.set(database=url.username)
    else:
        args = {"connect_timeout": seconds, "ssl": context, "local_infile": False}
    return target, args


def _sqlite(ctx: ActionContext, url: URL) -> URL:
    name = url.database or ""
    if not _SQLITE_NAME.match(name) or ctx.databases is None:
        raise _refused(
            "a SQLite database is named by a plain file name (sqlite:///orders.db); it is "
            "kept in the project's own database directory"
        )
    path: Path = ctx.databases / name
    if not path.is_file():  # never created here: an unknown name leaves nothing behind
        raise ActionError(
            f"the project has no SQLite database {name}; create it (and its tables) in the "
            "project's database directory first",
            code=ErrorCode.NOT_FOUND,
        )
    # opened read-write, never created (a file removed meanwhile is not made again)
    return URL.create(
        "sqlite+aiosqlite", database=f"file:{quote(str(path))}?mode=rw", query={"uri": "true"}
    )


def _convert(column: sa.Column[Any], value: Any) -> Any:
    """``value`` as the column's Python type when it came as JSON text or a number."""
    if value is None:
        return None
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return value
    if isinstance(value, dict | list):
        if kind in (dict, list, object):  # a JSON or array column: the dialect binds it
            return value
        if kind is str:  # JSON kept as text (MariaDB's JSON is LONGTEXT)
            return json.dumps(value, ensure_ascii=False)
        raise ActionError(
            f"an {'object' if isinstance(value, dict) else 'array'} cannot go into column "
            f"{column.name} ({kind.__name__})",
            code=ErrorCode.INVALID_PARAMETERS,
            field=f"values.{column.name}",
        )
    try:
        if kind is dt.datetime and isinstance(value, str):
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if kind is dt.date and isinstance(value, str):
            return dt.date.fromisoformat(value)
        if kind is dt.time and isinstance(value, str):
            return dt.time.fromisoformat(value)
        if kind is decimal.Decimal and isinstance(value, str | int | float):
            return decimal.Decimal(str(value))
        if kind is uuid.UUID and isinstance(value, str):
            return uuid.UUID(value)
        if kind is bytes and isinstance(value, str):
            return base64.b64decode(value, validate=True)
        if kind is int and isinstance(value, str):
            return int(value)
        if kind is float and isinstance(value, str | int):
            return float(value)
        if kind is bool and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    except (ValueError, decimal.InvalidOperation, binascii.Error):
        raise ActionError(
            f"{value!r} is not a {kind.__name__} (column {column.name})",
            code=ErrorCode.INVALID_PARAMETERS,
            field=f"values.{column.name}",
        ) from None
    return value


def _json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)  # Decimal, UUID


def _said(exc: BaseException) -> str:
    """The database's (or the driver's) own message, first line, shortened."""
    origin = getattr(exc, "orig", None) or exc
    text = str(origin).strip().splitlines()
    return (text[0] if text else type(origin).__name__)[:300]


def _failure(exc: Exception, *, connected: bool) -> ActionError:
    """What an error before the commit stands for (nothing was stored: a retry is safe),
    from the database's own code: a SQLSTATE (PostgreSQL), an error number (MariaDB, MySQL)
    or a result code (SQLite)."""
    if isinstance(exc, TimeoutError):
        return too_slow("the database")
    origin = _origin(exc)
    said = _said(exc)
    if isinstance(origin, ssl.SSLError):  # before ValueError: a certificate error is one
        return ActionError(
            f"the database's TLS was refused: {said}", code=ErrorCode.CONNECTION_ERROR
        )
    if isinstance(origin, TypeError | ValueError | OverflowError):  # the driver's own check
        return ActionError(
            f"the database driver refused a value: {said}",
            code=ErrorCode.INVALID_PARAMETERS,
            field="values",
        )
    kind = "connection" if isinstance(origin, OSError) else _kind(exc)
    if kind is None:
        # an error of the driver's own before any answer: the connection (retryable);
        # after it, an answer this action does not know (not retried)
        kind = "unknown" if connected else "connection"
    return _refusal(kind, said)


def _refusal(kind: str, said: str) -> ActionError:
    """The step's error for what the database said (``said``), by its kind."""
    if kind == "auth":
        return ActionError("the database refused the credential", code=ErrorCode.CREDENTIAL_INVALID)
    if kind == "privilege":
        return ActionError(
            f"{MISSING_OR_SCOPE}: the database says {said}",
            code=ErrorCode.INSUFFICIENT_SCOPE,
        )
    if kind == "constraint":
        return ActionError(
            f"the database refused the record: {said}", code=ErrorCode.CONSTRAINT_VIOLATION
        )
    if kind == "value":
        return ActionError(
            f"the database refused a value: {said}",
            code=ErrorCode.INVALID_PARAMETERS,
            field="values",
        )
    if kind == "missing":
        return ActionError(f"the database has no such table: {said}", code=ErrorCode.NOT_FOUND)
    if kind == "connection":
        return ActionError(
            f"the database could not be reached: {said}",
            code=ErrorCode.CONNECTION_ERROR,
            retryable=True,
        )
    if kind == "busy":  # the transaction was rolled back: another try may pass
        return ActionError(
            f"the database is busy: {said}", code=ErrorCode.UPSTREAM_ERROR, retryable=True
        )
    return ActionError(f"the database refused the insert: {said}", code=ErrorCode.UPSTREAM_ERROR)


def _origin(exc: BaseException) -> BaseException:
    """The driver's exception behind SQLAlchemy's (and its adapter's) wrapping."""
    seen = exc
    for _ in range(4):
        inner = getattr(seen, "orig", None) or seen.__cause__
        if inner is None or inner is seen:
            break
        seen = inner
    return seen


def _kind(exc: BaseException) -> str | None:
    """What the database said, by its own code, along the chain of wrapped exceptions."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str) and len(state) == 5:
            return _by_sqlstate(state)
        name = getattr(seen, "sqlite_errorname", None)
        if isinstance(name, str):
            return _by_sqlite(name)
        args = getattr(seen, "args", ())
        if args and isinstance(args[0], int) and not isinstance(args[0], bool):
            found = _MYSQL.get(args[0])
            if found is not None:
                return found
            if 1000 <= args[0] < 2000 or args[0] >= 3000:
                return "unknown"  # a server error this action does not name
            if 2000 <= args[0] < 3000:
                return "connection"  # the client library's own (CR_*): the connection
        if type(seen).__name__ == "InterfaceError" and "binding parameter" in str(seen):
            return "value"  # sqlite3: a value it cannot store
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None


def _by_sqlstate(state: str) -> str:
    if state == "42501":
        return "privilege"
    if state == "42P01":
        return "missing"
    return {
        "23": "constraint",
        "22": "value",
        "28": "auth",
        "08": "connection",
        "40": "busy",  # serialization failure, deadlock: the transaction was rolled back
        "53": "busy",  # insufficient resources
        "57": "busy",  # operator intervention (shutdown, cancel)
        "42": "value",  # a value the statement cannot take (datatype mismatch)
    }.get(state[:2], "unknown")


def _by_sqlite(name: str) -> str:
    if name.startswith("SQLITE_CONSTRAINT"):
        return "constraint"
    if name in ("SQLITE_MISMATCH", "SQLITE_TOOBIG", "SQLITE_RANGE"):
        return "value"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "busy"
    return "unknown"


# MariaDB and MySQL error numbers (server 1xxx/3xxx/4xxx, client 2xxx)
_MYSQL = {
    **dict.fromkeys((1044, 1045, 1698), "auth"),
    **dict.fromkeys((1142, 1143, 1227), "privilege"),
    **dict.fromkeys((1048, 1062, 1216, 1217, 1364, 1451, 1452, 1557, 3819, 4025), "constraint"),
    **dict.fromkeys((1264, 1265, 1292, 1366, 1367, 1406, 1411, 1690, 3140, 4038, 4078), "value"),
    1146: "missing",
    **dict.fromkeys((1040, 1203, 1205, 1213), "busy"),
}


class CreateRecord(Action):
    """Insert one record into a table; returns its primary key."""

    class Params(ParamsModel):
        table: str = Field(pattern=rf"^(?:{_IDENTIFIER}\.)?{_IDENTIFIER}$")
        values: dict[str, Any] = Field(
            min_length=1,
            max_length=1000,
            validation_alias=AliasChoices("values", "record", "data", "fields"),
        )
        timeout: float = Field(default=30.0, gt=0, le=300)

    class Output(OutputModel):
        table: str
        key: dict[str, Any] = Field(default_factory=dict)
        id: Any = None
        rowcount: int

    name = "database.create_record"
    aliases: ClassVar[tuple[str, ...]] = ("create_record",)
    platform: ClassVar[str] = "database"
    delivery: ClassVar = "unsafe"  # a record inserted twice is two records
    credential: ClassVar = "required"
    description = (
        "Insert a record into a PostgreSQL, MariaDB/MySQL or SQLite table (bound parameters "
        "only); returns its primary key."
    )
    example: ClassVar = {"table": "orders", "values": {"number": "A-1003", "total": 42.5}}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        url, args = await _engine_url(ctx, params.timeout)
        schema, _, table_name = params.table.rpartition(".")
        engine = create_async_engine(url, poolclass=NullPool, connect_args=args)
        committing = connected = False
        try:
            async with asyncio.timeout(params.timeout), engine.connect() as conn:
                connected = True
                transaction = await conn.begin()
                table = await _reflect(conn, table_name, schema or None, params.table)
                row = self._row(table, params.values)
                result = await conn.execute(table.insert().values(row))
                key = result.inserted_primary_key
                committing = True
                await transaction.commit()
                committing = False
        except ActionError:
            raise
        except Exception as exc:
            failure = _failure(exc, connected=connected)
            if committing and failure.code != ErrorCode.CONSTRAINT_VIOLATION:
                # the commit was sent and no answer came: the record may be stored (a
                # deferred constraint refusing it at commit is an answer: nothing stored)
                raise ActionError(
                    "the connection ended while the database committed the record, so whether "
                    "it was stored is unknown; check the table before running the step again",
                    code=ErrorCode.UNKNOWN_OUTCOME,
                ) from None
            raise failure from None
        finally:
            await engine.dispose()
        names = [c.name for c in table.primary_key.columns]
        found = {n: _json(v) for n, v in zip(names, key, strict=False)} if key is not None else {}
        return {
            "table": params.table,
            "key": found,
            "id": next(iter(found.values())) if len(found) == 1 else None,
            "rowcount": 1,
        }

    @staticmethod
    def _row(table: sa.Table, values: Mapping[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, value in values.items():
            column = table.columns.get(name)
            if column is None:
                raise ActionError(
                    f"{_shown(table)} has no column {name!r}",
                    code=ErrorCode.INVALID_PARAMETERS,
                    field=f"values.{name}",
                )
            row[name] = _convert(column, value)
        return row


def _shown(table: sa.Table) -> str:
    return f"{table.schema}.{table.name}" if table.schema else table.name


async def _reflect(conn: AsyncConnection, name: str, schema: str | None, shown: str) -> sa.Table:
    """The table as the database describes it (columns, types, primary key)."""

    def load(sync: sa.Connection) -> sa.Table:
        return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=sync)

    try:
        return await conn.run_sync(load)
    except sa_exc.NoSuchTableError:
        raise ActionError(
            f"the database has no table {shown}", code=ErrorCode.NOT_FOUND, field="table"
        ) from None
