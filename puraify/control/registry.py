"""What Engine Control holds, in the store: engines (keys only as hashes), platform statuses,
feature flags, and the audit log of checks, engine events and admin changes.

An engine key reads ``pek_<key id>_<secret>``: the id names the key in logs and audit events
(the key itself never appears), and the secret is never stored; verification hashes the
presented key and compares it with the stored hash in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import ControlError
from ..mission.data import json_safe, safe_text
from ..store.database import Database
from ..store.tables import control_engines, control_events, control_flags, control_platforms
from .rules import PLATFORM_STATUSES, EngineRecord, Permissions, parse_permissions

__all__ = ["KEY_PREFIX", "ControlRegistry", "PlatformState"]

KEY_PREFIX = "pek_"
_MAX_KEY = 200


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_key() -> tuple[str, str]:
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def _record(row: Any) -> EngineRecord:
    return EngineRecord(
        engine_id=row.engine_id,
        key_id=row.key_id,
        permissions=row.permissions,
        revoked=row.revoked_at is not None,
        depends_on=tuple(row.depends_on or ()),
    )


class PlatformState(dict[str, Any]):
    """A platform's stored state: ``status``, ``version``, ``message``, ``updated_at``."""


class ControlRegistry:
    """Reads and writes Engine Control's state. Every write is also an ``admin`` audit event
    naming who made it (``by``: an engine id, or ``cli``)."""

    def __init__(self, db: Database, *, now: Callable[[], datetime] = _utcnow) -> None:
        self.db = db
        self._now = now

    # -- engines ------------------------------------------------------------------------------

    async def register(
        self,
        engine_id: str,
        permissions: Permissions,
        *,
        depends_on: Sequence[str] = (),
        description: str = "",
        by: str,
    ) -> str:
        """A new engine; returns its key (shown once, stored as a hash). ``engine_exists`` if
        the id is taken (revoked or not: ids are never reused)."""
        _check_id(engine_id)
        checked = _permissions(permissions)
        key_id, key = _new_key()
        now = self._now()
        async with self.db.engine.begin() as conn:
            taken = await conn.scalar(  # `Admin` next to `admin` would be mistaken for it
                select(control_engines.c.engine_id).where(
                    func.lower(control_engines.c.engine_id) == engine_id.lower()
                )
            )
            if taken is not None:
                raise ControlError(
                    f"an engine {engine_id!r} is registered already", code="engine_exists"
                )
            try:
                await conn.execute(
                    insert(control_engines).values(
                        engine_id=engine_id,
                        key_id=key_id,
                        key_hash=_hash(key),
                        permissions=checked,
                        depends_on=list(depends_on),
                        description=description,
                        created_at=now,
                        updated_at=now,
                        revoked_at=None,
                    )
                )
            except IntegrityError:  # made by another process meanwhile
                raise ControlError(
                    f"an engine {engine_id!r} is registered already", code="engine_exists"
                ) from None
            await self._admin(conn, by, "register", engine_id=engine_id, key_id=key_id)
        return key

    async def ensure(self, engine_id: str, permissions: Permissions, *, description: str) -> bool:
        """Register ``engine_id`` unless it exists (its key is not kept: ``rotate_key`` gives
        one). Whether it was created."""
        if await self.engine(engine_id) is not None:
            return False
        try:
            await self.register(engine_id, permissions, description=description, by="puraify")
        except ControlError:  # another process made it meanwhile
            return False
        return True

    async def state(
        self, engine_id: str, platform: str
    ) -> tuple[EngineRecord | None, PlatformState | None, dict[str, bool]]:
        """What one check needs, read on one connection: the engine, the platform's stored
        state, the flags set."""
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(control_engines).where(control_engines.c.engine_id == engine_id)
                )
            ).first()
            found = (
                (
                    await conn.execute(
                        select(control_platforms).where(control_platforms.c.platform == platform)
                    )
                )
                .mappings()
                .first()
            )
            flags = (await conn.execute(select(control_flags))).all()
        state = None
        if found is not None:
            state = PlatformState(
                status=found["status"],
                version=found["version"],
                message=found["message"],
                updated_at=found["updated_at"],
            )
        return (
            None if row is None else _record(row),
            state,
            {r.name: bool(r.enabled) for r in flags},
        )

    async def engine(self, engine_id: str) -> EngineRecord | None:
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(control_engines).where(control_engines.c.engine_id == engine_id)
                )
            ).first()
        return None if row is None else _record(row)

    async def authenticate(self, engine_id: str, key: str) -> EngineRecord | None:
        """The engine whose id and key these are, unrevoked; ``None`` for anything else (an
        unknown id, a wrong key, another engine's key, a revoked engine)."""
        if not key.startswith(KEY_PREFIX) or len(key) > _MAX_KEY or len(engine_id) > 128:
            return None
        async with self.db.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(control_engines).where(control_engines.c.engine_id == engine_id)
                )
            ).first()
        presented = _hash(key)
        if row is None:
            hmac.compare_digest(presented, presented)  # the same work as a real comparison
            return None
        if not hmac.compare_digest(row.key_hash, presented) or row.revoked_at is not None:
            return None
        return _record(row)

    async def engines(self) -> list[dict[str, Any]]:
        query = select(
            control_engines.c.engine_id,
            control_engines.c.key_id,
            control_engines.c.permissions,
            control_engines.c.depends_on,
            control_engines.c.description,
            control_engines.c.created_at,
            control_engines.c.updated_at,
            control_engines.c.revoked_at,
        ).order_by(control_engines.c.created_at)
        async with self.db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def revoke(self, engine_id: str, *, by: str) -> None:
        await self._change_active(
            engine_id, by, "revoke", revoked_at=self._now(), updated_at=self._now()
        )

    async def rotate_key(self, engine_id: str, *, by: str) -> str:
        """A new key for ``engine_id`` (the old one stops working at once); shown once."""
        key_id, key = _new_key()
        await self._change_active(
            engine_id,
            by,
            "rotate_key",
            audit_key_id=key_id,
            key_id=key_id,
            key_hash=_hash(key),
            updated_at=self._now(),
        )
        return key

    async def _change_active(
        self, engine_id: str, by: str, what: str, *, audit_key_id: str | None = None, **values: Any
    ) -> None:
        """Set ``values`` on an engine that is not revoked (``engine_unknown`` otherwise), and
        audit it as ``what``."""
        async with self.db.engine.begin() as conn:
            changed = (
                await conn.execute(
                    update(control_engines)
                    .where(
                        control_engines.c.engine_id == engine_id,
                        control_engines.c.revoked_at.is_(None),
                    )
                    .values(**values)
                )
            ).rowcount
            if not changed:
                raise _unknown(engine_id)
            extra = {} if audit_key_id is None else {"key_id": audit_key_id}
            await self._admin(conn, by, what, engine_id=engine_id, **extra)

    async def set_permissions(
        self, engine_id: str, permissions: Permissions, *, merge: bool, by: str
    ) -> dict[str, dict[str, list[str]]]:
        """Replace (or, ``merge``, add to) an engine's permissions; the result."""
        checked = _permissions(permissions)
        async with self.db.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(control_engines.c.permissions).where(
                        control_engines.c.engine_id == engine_id
                    )
                )
            ).first()
            if row is None:
                raise _unknown(engine_id)
            result = checked
            if merge:
                result = {p: {a: list(s) for a, s in acts.items()} for p, acts in row[0].items()}
                for platform, actions in checked.items():
                    for action, scopes in actions.items():
                        held = result.setdefault(platform, {}).setdefault(action, [])
                        result[platform][action] = sorted(set(held) | set(scopes))
            await conn.execute(
                update(control_engines)
                .where(control_engines.c.engine_id == engine_id)
                .values(permissions=result, updated_at=self._now())
            )
            await self._admin(
                conn, by, "grant" if merge else "set_permissions", engine_id=engine_id, data=result
            )
        return result

    # -- platforms and flags ------------------------------------------------------------------

    async def platforms(self) -> dict[str, PlatformState]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(control_platforms))).mappings().all()
        return {
            r["platform"]: PlatformState(
                status=r["status"],
                version=r["version"],
                message=r["message"],
                updated_at=r["updated_at"],
            )
            for r in rows
        }

    async def set_platform(
        self,
        platform: str,
        status: str,
        *,
        version: str | None = None,
        message: str | None = None,
        by: str,
    ) -> None:
        if status not in PLATFORM_STATUSES:
            raise ControlError(
                f"unknown platform status {status!r}; one of {', '.join(PLATFORM_STATUSES)}",
                code="invalid_status",
                field="status",
            )
        _check_id(platform, what="platform")
        for name, text in (("version", version), ("message", message)):
            if text is not None and not text.isprintable():
                raise ControlError(
                    f"{name} must be printable text", code="invalid_request", field=name
                )
        values = {"status": status, "version": version, "message": message}
        async with self.db.engine.begin() as conn:
            await conn.execute(
                delete(control_platforms).where(control_platforms.c.platform == platform)
            )
            await conn.execute(
                insert(control_platforms).values(
                    platform=platform, updated_at=self._now(), **values
                )
            )
            await self._admin(conn, by, "set_platform", platform=platform, data=values)

    async def flags(self) -> dict[str, bool]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(control_flags))).all()
        return {r.name: bool(r.enabled) for r in rows}

    async def set_flag(self, name: str, enabled: bool, *, by: str) -> None:
        _check_id(name, what="flag")
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(control_flags).where(control_flags.c.name == name))
            await conn.execute(
                insert(control_flags).values(name=name, enabled=enabled, updated_at=self._now())
            )
            await self._admin(conn, by, "set_flag", data={"flag": name, "enabled": enabled})

    # -- audit --------------------------------------------------------------------------------

    async def record(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Store audit events (``kind``, ``at`` and the rest of ``control_events``' columns),
        each cut to what its column holds and made storable; a batch the store refuses is
        written row by row, so one bad row loses only itself. How many were stored."""
        rows = [_storable(e) for e in events]
        if not rows:
            return 0
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(insert(control_events), rows)
            return len(rows)
        except DBAPIError:
            stored = 0
            for row in rows:
                try:
                    async with self.db.engine.begin() as conn:
                        await conn.execute(insert(control_events), [row])
                    stored += 1
                except DBAPIError:
                    continue
            return stored

    async def prune(self, older_than: datetime) -> int:
        """Delete audit events from before ``older_than``; how many."""
        async with self.db.engine.begin() as conn:
            deleted = await conn.execute(
                delete(control_events).where(control_events.c.at < older_than)
            )
        return int(deleted.rowcount or 0)

    async def events(
        self,
        *,
        engine_id: str | None = None,
        platform: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit events, newest first."""
        where = []
        if engine_id is not None:
            where.append(control_events.c.engine_id == engine_id)
        if platform is not None:
            where.append(control_events.c.platform == platform)
        if kind is not None:
            where.append(control_events.c.kind == kind)
        if since is not None:
            where.append(control_events.c.at >= since)
        if until is not None:
            where.append(control_events.c.at < until)
        query = select(control_events).order_by(control_events.c.id.desc()).limit(limit)
        if where:
            query = query.where(and_(*where))
        async with self.db.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings().all()]

    async def _admin(
        self, conn: AsyncConnection, by: str, what: str, *, data: Any = None, **columns: Any
    ) -> None:
        key_id = columns.pop("key_id", None)
        body: dict[str, Any] = {"change": what, "by": by}
        if data is not None:
            body["value"] = data
        if key_id is not None:
            body["key_id"] = key_id
        await conn.execute(
            insert(control_events).values(
                at=self._now(), kind="admin", action=what, data=body, **columns
            )
        )


#: Engine ids, platforms and flags: what an HTTP header carries as sent (ASCII), unambiguous
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


_WIDTHS = {"request_id": 64, "engine_id": 128, "platform": 128, "action": 200, "reason": 64}


def _storable(event: Mapping[str, Any]) -> dict[str, Any]:
    """An audit event as its row: text cut to its column, NUL and lone surrogates replaced,
    the data made JSON (``json_safe``)."""
    row = {c.name: None for c in control_events.columns if c.name != "id"} | dict(event)
    for column, width in _WIDTHS.items():
        value = row.get(column)
        if value is not None:
            row[column] = safe_text(str(value))[:width]
    row["data"] = json_safe(row.get("data") or {})
    return row


def _check_id(value: str, *, what: str = "engine_id") -> None:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ControlError(
            f"{what} must be 1 to 128 characters: letters, digits and . _ : @ -, starting "
            "with a letter or digit",
            code="invalid_request",
            field=what,
        )


def _permissions(value: Any) -> dict[str, dict[str, list[str]]]:
    try:
        return parse_permissions(value)
    except ValueError as exc:
        raise ControlError(str(exc), code="invalid_request", field="permissions") from None


def _unknown(engine_id: str) -> ControlError:
    return ControlError(
        f"no engine {engine_id!r} is registered (or it was revoked)", code="engine_unknown"
    )
