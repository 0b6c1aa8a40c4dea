"""Credentials in the store, sealed (``crypto``): set, read for a step, describe, delete, and
re-seal under a new key.

A credential belongs to a project and a platform, optionally to one of the project's users; a
user's credential wins over the project's when a step runs for that user. Its metadata (type,
scopes, expiry, status, times) is readable; its value only through ``value``, which a step's
context calls at the last moment, and which records when it was last used.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import TTLCache
from sqlalchemy import bindparam, delete, insert, select, update

from ..errors import VaultError
from ..redaction import SECRET_FIELDS
from ..store.cache import SingleFlightCache
from ..store.database import Database
from ..store.tables import vault_credentials
from .crypto import Keyring, aad

__all__ = ["TYPES", "Credential", "VaultStore"]

#: Credential types, and the fields each value holds (a plain string is taken as the first).
TYPES: Mapping[str, tuple[str, ...]] = {
    "token": ("token",),
    "api_key": ("api_key",),
    "basic": ("username", "password"),
    "oauth2": ("access_token", "refresh_token", "token_type"),
    "smtp": ("host", "port", "username", "password", "security", "from_address"),
    "database_url": ("url",),
    "ssh_key": ("private_key", "passphrase"),
    "webhook_secret": ("secret",),
}


# the credential of a project's platform, its own and a user's: built once (building the
# statement cost more than running it)
_BY_OWNER = select(vault_credentials).where(
    vault_credentials.c.project_id == bindparam("project_id"),
    vault_credentials.c.platform == bindparam("platform"),
    vault_credentials.c.user_id.in_(bindparam("owners", expanding=True)),
)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Credential:
    """A credential's metadata; ``value`` only when read for use."""

    id: str
    project_id: str
    platform: str
    user_id: str | None
    type: str
    scopes: tuple[str, ...]
    expires_at: datetime | None
    status: str
    version: int
    key_id: str
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    value: Mapping[str, Any] | None = field(default=None, repr=False)

    def describe(self) -> dict[str, Any]:
        """Everything but the value."""
        out = {
            "id": self.id,
            "project_id": self.project_id,
            "platform": self.platform,
            "user_id": self.user_id,
            "type": self.type,
            "scopes": list(self.scopes),
            "status": self.status,
            "version": self.version,
            "key_id": self.key_id,
        }
        for name in ("expires_at", "created_at", "updated_at", "last_used_at"):
            when = getattr(self, name)
            out[name] = when.isoformat() if when is not None else None
        return out


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _shape(kind: str, value: str | Mapping[str, Any]) -> dict[str, Any]:
    fields = TYPES.get(kind)
    if fields is None:
        raise VaultError(
            f"unknown credential type {kind!r}; one of {', '.join(TYPES)}",
            code="invalid_credential",
            field="type",
        )
    if isinstance(value, str):
        if not value:
            raise VaultError("the value is empty", code="invalid_credential", field="value")
        if fields[0] not in SECRET_FIELDS:  # a basic's username, an smtp's host: not the secret
            raise VaultError(
                f"a {kind} credential is an object of {', '.join(fields)}",
                code="invalid_credential",
                field="value",
            )
        return {fields[0]: value}
    if not isinstance(value, Mapping) or not value:
        raise VaultError("the value is empty", code="invalid_credential", field="value")
    unknown = set(value) - set(fields) - {"expires_in", "scope"}
    if unknown:
        # a key is named only when it looks like a field name (a pasted secret must not be
        # printed back)
        named = sorted(k for k in unknown if isinstance(k, str) and _FIELD_NAME.fullmatch(k))
        others = len(unknown) - len(named)
        listed = ", ".join(named + ([f"{others} other(s)"] if others else []))
        raise VaultError(
            f"a {kind} credential holds {', '.join(fields)}; not {listed}",
            code="invalid_credential",
            field="value",
        )
    for name, given in value.items():
        secret = name in SECRET_FIELDS
        if secret and given is not None and not isinstance(given, str):
            raise VaultError(
                f"{name} must be text", code="invalid_credential", field=f"value.{name}"
            )
        if not secret and not isinstance(given, str | int | bool | None):
            raise VaultError(
                f"{name} must be text, a number or true/false",
                code="invalid_credential",
                field=f"value.{name}",
            )
    return dict(value)


class VaultStore:
    """``keyring``: the vault's keys, or a function that loads them when first needed, told
    whether it may make one (only to seal a first credential: a vault that holds something
    must find the key that sealed it)."""

    def __init__(
        self,
        db: Database,
        keyring: Keyring | Callable[[bool], Keyring],
        *,
        now: Callable[[], datetime] = _utcnow,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self._keyring = keyring
        self._now = now
        # opened credentials, kept cache_seconds (a change made here forgets them at once);
        # a credential's last use is written at most once a minute
        self._opened: SingleFlightCache[tuple[str, str, str], Credential | None] = (
            SingleFlightCache(cache_seconds, maxsize=4096, clock=clock)
        )
        self._used: TTLCache[str, bool] = TTLCache(maxsize=65536, ttl=60.0, timer=clock)

    def forget(self) -> None:
        """Drop every opened credential (a change was made)."""
        self._opened.forget()

    def _keys(self, *, create: bool = False) -> Keyring:
        if not isinstance(self._keyring, Keyring):
            self._keyring = self._keyring(create)
        return self._keyring

    @property
    def keyring(self) -> Keyring:
        return self._keys()

    @keyring.setter
    def keyring(self, value: Keyring) -> None:
        self._keyring = value

    def keyring_for_sealing(self) -> Keyring:
        """The keys, made if this vault has none yet (sealing needs a current key)."""
        return self._keys(create=True)

    async def check_keys(self) -> None:
        """Raise ``VaultError`` unless this vault's keys open what it holds (the newest
        credential of each key it uses): a server with the wrong key must not start."""
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(vault_credentials))).all()
        newest: dict[str, Any] = {}
        for row in rows:
            if row.key_id not in newest or row.updated_at > newest[row.key_id].updated_at:
                newest[row.key_id] = row
        for row in newest.values():
            self.keyring.open(
                row.key_id,
                row.sealed,
                aad(row.id, row.project_id, row.platform, row.user_id, row.version),
            )

    async def put(
        self,
        project_id: str,
        platform: str,
        kind: str,
        value: str | Mapping[str, Any],
        *,
        user_id: str | None = None,
        scopes: Sequence[str] = (),
        expires_at: datetime | None = None,
    ) -> Credential:
        """Store (or replace) the credential of a project's platform (or one user's)."""
        if not project_id or not platform:
            raise VaultError(
                "a credential needs a project and a platform", code="invalid_credential"
            )
        shaped = _shape(kind, value)
        user = user_id or ""
        now = self._now()
        async with self.db.engine.begin() as conn:
            row = (
                await conn.execute(
                    select(vault_credentials.c.id, vault_credentials.c.version).where(
                        vault_credentials.c.project_id == project_id,
                        vault_credentials.c.platform == platform,
                        vault_credentials.c.user_id == user,
                    )
                )
            ).first()
            record_id = row.id if row is not None else secrets.token_hex(8)
            version = row.version + 1 if row is not None else 1
            key_id, sealed = self._keys(create=True).seal(
                json.dumps(shaped).encode(), aad(record_id, project_id, platform, user, version)
            )
            values = {
                "type": kind,
                "scopes": sorted(set(scopes)),
                "expires_at": expires_at,
                "status": "valid",
                "refresh_owner": None,
                "refresh_until": None,
                "version": version,
                "key_id": key_id,
                "sealed": sealed,
                "updated_at": now,
            }
            if row is None:
                await conn.execute(
                    insert(vault_credentials).values(
                        id=record_id,
                        project_id=project_id,
                        platform=platform,
                        user_id=user,
                        created_at=now,
                        last_used_at=None,
                        **values,
                    )
                )
            else:
                await conn.execute(
                    update(vault_credentials)
                    .where(vault_credentials.c.id == record_id)
                    .values(**values)
                )
        self.forget()
        found = await self.describe(project_id, platform, user_id=user_id)
        assert found is not None
        return found

    async def _row(self, project_id: str, platform: str, user_id: str | None) -> Any:
        owners = [user_id, ""] if user_id else [""]
        async with self.db.engine.connect() as conn:
            rows = (
                await conn.execute(
                    _BY_OWNER, {"project_id": project_id, "platform": platform, "owners": owners}
                )
            ).all()
        by_owner = {r.user_id: r for r in rows}
        return next((by_owner[o] for o in owners if o in by_owner), None)

    async def describe(
        self, project_id: str, platform: str, *, user_id: str | None = None
    ) -> Credential | None:
        """The metadata of the credential a step of ``user_id`` (else the project) would get."""
        row = await self._row(project_id, platform, user_id)
        return None if row is None else _credential(row)

    async def value(
        self, project_id: str, platform: str, *, user_id: str | None = None, fresh: bool = False
    ) -> Credential | None:
        """The credential with its value (for a step, at call time); ``None`` if there is
        none. ``VaultError`` if it does not open: never an empty credential. ``fresh``: read
        the store, not what was opened earlier."""
        key = (project_id, platform, user_id or "")
        if fresh:
            return await self._open(project_id, platform, user_id)
        found = self._opened.get(key)
        if found is None:
            found = await self._opened.load(key, lambda: self._open(project_id, platform, user_id))
        return found

    async def _open(self, project_id: str, platform: str, user_id: str | None) -> Credential | None:
        row = await self._row(project_id, platform, user_id)
        if row is None:
            return None
        plain = self.keyring.open(
            row.key_id,
            row.sealed,
            aad(row.id, row.project_id, row.platform, row.user_id, row.version),
        )
        if row.id not in self._used:
            self._used[row.id] = True
            async with self.db.engine.begin() as conn:
                await conn.execute(
                    update(vault_credentials)
                    .where(vault_credentials.c.id == row.id)
                    .values(last_used_at=self._now())
                )
        return _credential(row, json.loads(plain))

    async def set_status(self, credential: Credential, status: str) -> None:
        """Mark ``credential`` (``invalid``: its refresh was refused); a credential stored
        again afterwards is ``valid`` again."""
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(vault_credentials)
                .where(
                    vault_credentials.c.id == credential.id,
                    vault_credentials.c.version == credential.version,
                )
                .values(status=status, updated_at=self._now())
            )
        self.forget()

    async def claim_refresh(self, credential: Credential, owner: str, seconds: float) -> bool:
        """Whether ``owner`` may refresh ``credential`` now: it takes the claim unless another
        holds one that has not expired, or the credential changed since it was read."""
        now = self._now()
        async with self.db.engine.begin() as conn:
            taken = await conn.execute(
                update(vault_credentials)
                .where(
                    vault_credentials.c.id == credential.id,
                    vault_credentials.c.version == credential.version,
                    (vault_credentials.c.refresh_until.is_(None))
                    | (vault_credentials.c.refresh_until < now)
                    | (vault_credentials.c.refresh_owner == owner),
                )
                .values(refresh_owner=owner, refresh_until=now + timedelta(seconds=seconds))
            )
        return bool(taken.rowcount)

    async def release_refresh(self, credential: Credential, owner: str) -> None:
        """Give up ``owner``'s claim (its refresh ended, stored or failed)."""
        async with self.db.engine.begin() as conn:
            await conn.execute(
                update(vault_credentials)
                .where(
                    vault_credentials.c.id == credential.id,
                    vault_credentials.c.refresh_owner == owner,
                )
                .values(refresh_owner=None, refresh_until=None)
            )

    async def list(self, project_id: str | None = None) -> list[Credential]:
        query = select(vault_credentials).order_by(
            vault_credentials.c.project_id,
            vault_credentials.c.platform,
            vault_credentials.c.user_id,
        )
        if project_id is not None:
            query = query.where(vault_credentials.c.project_id == project_id)
        async with self.db.engine.connect() as conn:
            return [_credential(r) for r in (await conn.execute(query)).all()]

    async def delete(self, project_id: str, platform: str, *, user_id: str | None = None) -> bool:
        self.forget()
        async with self.db.engine.begin() as conn:
            gone = await conn.execute(
                delete(vault_credentials).where(
                    vault_credentials.c.project_id == project_id,
                    vault_credentials.c.platform == platform,
                    vault_credentials.c.user_id == (user_id or ""),
                )
            )
        return bool(gone.rowcount)

    async def reseal(self, keyring: Keyring) -> int:
        """Open every credential with this vault's keys and seal it again under ``keyring``'s
        current key (in one transaction); how many. The vault uses ``keyring`` from then on."""
        async with self.db.engine.begin() as conn:
            rows = (await conn.execute(select(vault_credentials))).all()
            for row in rows:
                bound = aad(row.id, row.project_id, row.platform, row.user_id, row.version)
                plain = self.keyring.open(row.key_id, row.sealed, bound)
                key_id, sealed = keyring.seal(plain, bound)
                await conn.execute(
                    update(vault_credentials)
                    .where(vault_credentials.c.id == row.id)
                    .values(key_id=key_id, sealed=sealed)
                )
        self.keyring = keyring
        self.forget()
        return len(rows)

    async def keys_in_use(self) -> set[str]:
        async with self.db.engine.connect() as conn:
            rows = (await conn.execute(select(vault_credentials.c.key_id).distinct())).all()
        return {r[0] for r in rows}


def _credential(row: Any, value: Mapping[str, Any] | None = None) -> Credential:
    return Credential(
        id=row.id,
        project_id=row.project_id,
        platform=row.platform,
        user_id=row.user_id or None,
        type=row.type,
        scopes=tuple(row.scopes),
        expires_at=row.expires_at,
        status=row.status,
        version=row.version,
        key_id=row.key_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        last_used_at=row.last_used_at,
        value=value,
    )
