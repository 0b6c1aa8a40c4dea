"""Engine Control's use cases, for the API and the CLI alike: authenticate an engine, check an
action, read and change engines, platform statuses and flags, log engine events, bootstrap.

Every change clears this process's policy cache at once (other processes see it within the
cache's time). Who made a change (``by``) is an engine id, or ``cli``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import __version__
from ..errors import ControlError
from ..store.cache import SingleFlightCache
from .policy import AuditLog, LocalPolicy
from .registry import ControlRegistry
from .rules import ADMIN, EngineRecord, Permissions, Verdict

__all__ = ["EXECUTION_PERMISSIONS", "Bootstrap", "ControlService"]

#: What the execution service's own engine may do until an operator narrows it: everything.
EXECUTION_PERMISSIONS: Permissions = {"*": {"*": ["*"]}}
ADMIN_PERMISSIONS: Permissions = {ADMIN[0]: {ADMIN[1]: ["*"]}}
MAX_EVENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Bootstrap:
    """What ``init`` did: the keys are shown once, ``None`` when the engine existed."""

    admin_id: str
    admin_key: str | None
    execution_id: str
    execution_key: str | None

    @property
    def changed(self) -> bool:
        return self.admin_key is not None or self.execution_key is not None


class ControlService:
    """``auth_cache_seconds``: how long a verified engine key is trusted before the store is
    asked again (keyed by the key's hash, never the key; failures are never kept; a change
    made here forgets them all at once)."""

    def __init__(
        self,
        registry: ControlRegistry,
        policy: LocalPolicy,
        audit: AuditLog,
        *,
        auth_cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.policy = policy
        self.audit = audit
        self._verified: SingleFlightCache[tuple[str, str], EngineRecord | None] = SingleFlightCache(
            auth_cache_seconds, maxsize=4096, clock=clock
        )

    # -- callers ------------------------------------------------------------------------------

    async def authenticate(self, engine_id: str, key: str) -> EngineRecord | None:
        cache_key = (engine_id, hashlib.sha256(key.encode()).hexdigest())
        found = self._verified.get(cache_key)
        if found is None:  # failures are never kept
            found = await self._verified.load(
                cache_key, lambda: self.registry.authenticate(engine_id, key)
            )
        return found

    def _changed(self) -> None:
        """A change was made here: every verdict and verified key is asked again."""
        self._verified.forget()
        self.policy.invalidate()

    async def check(
        self,
        engine_id: str,
        platform: str,
        action: str,
        *,
        scopes: Sequence[str] | None = None,
        request_id: str | None = None,
        asked_by: str | None = None,
    ) -> Verdict:
        context: dict[str, Any] = {"request_id": request_id}
        if asked_by is not None and asked_by != engine_id:
            context["asked_by"] = asked_by
        return await self.policy.check(
            engine_id,
            platform,
            action,
            scopes=None if scopes is None else tuple(sorted(set(scopes))),
            context=context,
        )

    async def platforms(self, *, detail: bool = False) -> dict[str, Any]:
        stored = await self.registry.platforms()
        if not detail:
            return {name: state["status"] for name, state in sorted(stored.items())}
        return {
            name: {
                "status": state["status"],
                "version": state["version"],
                "message": state["message"],
                "updated_at": state["updated_at"].isoformat(),
            }
            for name, state in sorted(stored.items())
        }

    async def global_config(self) -> dict[str, Any]:
        return {"api_version": __version__, "feature_flags": await self.policy.flags()}

    async def log_event(
        self, engine_id: str, event: Mapping[str, Any], *, request_id: str | None
    ) -> None:
        """Store an engine's own event (any JSON object), findable by engine, platform, time."""
        platform = event.get("platform")
        action = event.get("action_type", event.get("action"))
        self.audit.add(
            {
                "kind": "event",
                "request_id": request_id,
                "engine_id": engine_id,
                "platform": platform if isinstance(platform, str) else None,
                "action": action if isinstance(action, str) else None,
                "allowed": None,
                "reason": None,
                "data": dict(event),
            }
        )

    async def events(self, **filters: Any) -> list[dict[str, Any]]:
        await self.audit.flush()
        rows = await self.registry.events(**filters)
        for row in rows:
            at = row.get("at")
            if isinstance(at, datetime):
                row["at"] = at.isoformat()
        return rows

    # -- changes ------------------------------------------------------------------------------

    def canonical_permissions(self, permissions: Permissions) -> Permissions:
        """Permissions with every action alias the catalogue knows on its platform spelled as
        the action's own name (the name each step is checked by)."""
        if not isinstance(permissions, Mapping):
            return permissions  # the registry says what is wrong with it
        out: dict[str, dict[str, Any]] = {}
        for platform, actions in permissions.items():
            if not isinstance(actions, Mapping):
                return permissions
            merged: dict[str, Any] = {}
            for action, scopes in actions.items():
                name = self.policy.canonical(str(platform), str(action))
                if name in merged and isinstance(scopes, list) and isinstance(merged[name], list):
                    merged[name] = sorted(set(merged[name]) | set(scopes))
                else:
                    merged[name] = scopes
            out[str(platform)] = merged
        return out

    async def prune(self, older_than: datetime) -> int:
        return await self.registry.prune(older_than)

    async def register(
        self,
        engine_id: str,
        permissions: Permissions,
        *,
        depends_on: Sequence[str] = (),
        description: str = "",
        by: str,
    ) -> str:
        key = await self.registry.register(
            engine_id,
            self.canonical_permissions(permissions),
            depends_on=depends_on,
            description=description,
            by=by,
        )
        self._changed()
        return key

    async def revoke(self, engine_id: str, *, by: str) -> None:
        await self.registry.revoke(engine_id, by=by)
        self._changed()

    async def rotate_key(self, engine_id: str, *, by: str) -> str:
        key = await self.registry.rotate_key(engine_id, by=by)
        self._changed()
        return key

    async def set_permissions(
        self, engine_id: str, permissions: Permissions, *, merge: bool, by: str
    ) -> dict[str, dict[str, list[str]]]:
        result = await self.registry.set_permissions(
            engine_id, self.canonical_permissions(permissions), merge=merge, by=by
        )
        self._changed()
        return result

    async def set_platform(
        self,
        platform: str,
        status: str,
        *,
        version: str | None = None,
        message: str | None = None,
        by: str,
    ) -> None:
        await self.registry.set_platform(platform, status, version=version, message=message, by=by)
        self._changed()

    async def set_flag(self, name: str, enabled: bool, *, by: str) -> None:
        await self.registry.set_flag(name, enabled, by=by)
        self._changed()

    async def engines(self) -> list[dict[str, Any]]:
        rows = await self.registry.engines()
        for row in rows:
            for key in ("created_at", "updated_at", "revoked_at"):
                if isinstance(row.get(key), datetime):
                    row[key] = row[key].isoformat()
        return rows

    async def bootstrap(self, *, admin_id: str, execution_id: str) -> Bootstrap:
        """The bootstrap admin engine and the execution service's own engine, each unless it
        exists; their keys, shown once."""
        admin_key = execution_key = None
        if await self.registry.engine(admin_id) is None:
            admin_key = await self.register(
                admin_id, ADMIN_PERMISSIONS, description="bootstrap admin", by="cli"
            )
        if await self.registry.engine(execution_id) is None:
            execution_key = await self.register(
                execution_id,
                EXECUTION_PERMISSIONS,
                description="the execution service's own engine",
                by="cli",
            )
        return Bootstrap(admin_id, admin_key, execution_id, execution_key)

    async def require_admin(self, engine: EngineRecord) -> None:
        if not engine.is_admin:
            raise ControlError(
                f"engine {engine.engine_id!r} does not hold control:admin",
                code="forbidden",
            )
