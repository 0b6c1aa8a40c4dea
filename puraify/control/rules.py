"""The policy's rules, pure: given what the registry holds, may this engine do this action?

A verdict names the rule that decided it (``reason``), checked in this order:

1. ``engine_unknown`` / ``engine_revoked``: no such engine, or its key was revoked;
2. ``platform_maintenance`` / ``platform_disabled`` / ``platform_deprecated``: the platform is
   not ``active`` (a platform nobody set is active);
3. ``flag_off``: the action is behind a feature flag that is off;
4. ``permission_missing``: the engine's permissions name neither the platform (or ``*``) with
   the action (or ``*``);
5. ``scopes_missing``: the scopes granted for the action (and, when the caller gives its own,
   those too) do not cover the action's ``required_scopes`` (a granted ``*`` covers all).

Otherwise ``allowed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ADMIN",
    "PLATFORM_STATUSES",
    "EngineRecord",
    "Permissions",
    "Verdict",
    "decide",
    "granted_scopes",
    "parse_permissions",
]

PlatformStatus = Literal["active", "maintenance", "disabled", "deprecated"]
PLATFORM_STATUSES: tuple[PlatformStatus, ...] = ("active", "maintenance", "disabled", "deprecated")
#: The permission that lets an engine change Engine Control itself: ``control: {admin: [...]}``,
#: named as such (a wildcard does not grant it).
ADMIN = ("control", "admin")

Permissions = Mapping[str, Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class EngineRecord:
    """What the policy needs of an engine (never its key)."""

    engine_id: str
    key_id: str
    permissions: Permissions
    revoked: bool = False
    depends_on: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        """Holds ``control:admin``, named explicitly: no wildcard grants it (the execution
        service's own engine, allowed every action, cannot change Engine Control)."""
        return self.permissions.get(ADMIN[0], {}).get(ADMIN[1]) is not None


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    required_scopes: tuple[str, ...] = ()
    platform_status: str = "active"
    message: str = ""
    flag: str | None = None
    missing_scopes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """The seed's answer, with this engine's additions."""
        body: dict[str, Any] = {
            "allowed": self.allowed,
            "required_scopes": list(self.required_scopes),
            "platform_status": self.platform_status,
            "reason": self.reason,
            "message": self.message,
        }
        if self.flag is not None:
            body["flag"] = self.flag
        if self.missing_scopes:
            body["missing_scopes"] = list(self.missing_scopes)
        return body


def granted_scopes(permissions: Permissions, platform: str, action: str) -> frozenset[str] | None:
    """The scopes ``permissions`` grant for ``action`` on ``platform`` (wildcards ``*`` for
    either), or ``None`` when they grant nothing there."""
    found: set[str] | None = None
    for p in (platform, "*"):
        actions = permissions.get(p)
        if not actions:
            continue
        for a in (action, "*"):
            scopes = actions.get(a)
            if scopes is not None:
                found = (found or set()) | set(scopes)
    return None if found is None else frozenset(found)


def decide(
    engine: EngineRecord | None,
    platform: str,
    action: str,
    *,
    required_scopes: Iterable[str] = (),
    given_scopes: Iterable[str] | None = None,
    platform_status: str = "active",
    platform_message: str | None = None,
    flag: str | None = None,
    flag_on: bool = True,
) -> Verdict:
    """The verdict for ``engine`` doing ``action`` on ``platform`` (see the module)."""
    required = tuple(sorted(set(required_scopes)))

    def verdict(allowed: bool, reason: str, message: str, **extra: Any) -> Verdict:
        return Verdict(allowed, reason, required, platform_status, message, **extra)

    if engine is None:
        return verdict(False, "engine_unknown", "no engine is registered with this id")
    if engine.revoked:
        return verdict(False, "engine_revoked", f"engine {engine.engine_id!r} was revoked")
    if platform_status != "active":
        why = f": {platform_message}" if platform_message else ""
        return verdict(
            False, f"platform_{platform_status}", f"platform {platform!r} is {platform_status}{why}"
        )
    if flag is not None and not flag_on:
        return verdict(
            False,
            "flag_off",
            f"the feature flag {flag!r} is off ({action} steps are behind it)",
            flag=flag,
        )
    granted = granted_scopes(engine.permissions, platform, action)
    if (platform, action) == ADMIN and not engine.is_admin:
        granted = None  # control:admin is granted by name only, never by a wildcard
    if granted is None:
        return verdict(
            False,
            "permission_missing",
            f"engine {engine.engine_id!r} has no permission for {platform}.{action}",
        )
    missing = tuple(s for s in required if "*" not in granted and s not in granted)
    if given_scopes is not None and not missing:
        given = set(given_scopes)
        missing = tuple(s for s in required if "*" not in given and s not in given)
    if missing:
        return verdict(
            False,
            "scopes_missing",
            f"{platform}.{action} needs the scopes {', '.join(missing)}",
            missing_scopes=missing,
        )
    return verdict(True, "allowed", f"engine {engine.engine_id!r} may run {platform}.{action}")


def parse_permissions(value: Any) -> dict[str, dict[str, list[str]]]:
    """``{platform: {action: [scopes]}}`` checked and copied; ``ValueError`` naming the part
    that is not."""
    if not isinstance(value, Mapping):
        raise ValueError("permissions must be an object {platform: {action_type: [scopes]}}")
    out: dict[str, dict[str, list[str]]] = {}
    for platform, actions in value.items():
        if not isinstance(platform, str) or not platform or len(platform) > 128:
            raise ValueError("each platform must be a name of 1 to 128 characters")
        if not isinstance(actions, Mapping):
            raise ValueError(f"permissions.{platform} must be an object {{action_type: [scopes]}}")
        out[platform] = {}
        for action, scopes in actions.items():
            if not isinstance(action, str) or not action or len(action) > 200:
                raise ValueError(f"permissions.{platform}: each action must be a name")
            if not isinstance(scopes, list) or not all(
                isinstance(s, str) and 0 < len(s) <= 200 for s in scopes
            ):
                raise ValueError(f"permissions.{platform}.{action} must be a list of scopes")
            out[platform][action] = sorted(set(scopes))
    return out
