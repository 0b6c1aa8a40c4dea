"""A declarative policy file (``control_policy_file``, e.g. ``policy.yaml``) applied at start::

    engines:
      slack-bot:
        permissions: {slack: {send_message: ["slack:write"]}}
        description: posts the daily digest
      puraify-execution:
        permissions: {"*": {"*": ["*"]}}
    platforms:
      slack: maintenance
      gmail: {status: active, version: v1, message: ""}
    flags:
      command: false

Each engine listed gets exactly these permissions (registered if missing: its key is not kept,
``puraify engines rotate-key`` gives one); each platform and flag listed gets this state. What
the file does not list is left as it is, so changes made from the API or the CLI to other
engines, platforms and flags stay. Every change is audited (``by``: the file's name).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from ..errors import ControlError, LoadError
from ..mission.parse import parse_document
from .rules import parse_permissions
from .service import ControlService

__all__ = ["reconcile"]

_log = structlog.get_logger("puraify.control")


async def reconcile(control: ControlService, path: Path) -> list[str]:
    """Apply the file at ``path``; what changed, one line each."""
    try:
        text = await asyncio.to_thread(path.read_bytes)
        data = parse_document(text, filename=str(path)).data
    except OSError as exc:
        raise ControlError(
            f"cannot read the policy file {path}: {exc.strerror}", code="file_error"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"engines", "platforms", "flags"}:
        raise LoadError(
            "a policy file is an object with engines, platforms and flags",
            code="invalid_mission",
            file=str(path),
        )
    by = f"file:{path.name}"
    changes: list[str] = []
    known = {e["engine_id"]: e for e in await control.engines()}
    for engine_id, spec in _mapping(data, "engines").items():
        if not isinstance(spec, dict):
            raise LoadError(
                f"engines.{engine_id} must be an object with permissions", code="invalid_mission"
            )
        try:  # compared as stored: sorted, aliases spelled as their actions
            permissions = parse_permissions(
                control.canonical_permissions(spec.get("permissions", {}))
            )
        except ValueError as exc:
            raise LoadError(f"engines.{engine_id}: {exc}", code="invalid_mission") from None
        if engine_id not in known:
            await control.register(
                engine_id, permissions, description=str(spec.get("description", "")), by=by
            )
            changes.append(f"engine {engine_id} registered")
        elif known[engine_id]["permissions"] != permissions:
            await control.set_permissions(engine_id, permissions, merge=False, by=by)
            changes.append(f"engine {engine_id} permissions set")
    platforms = await control.platforms(detail=True)
    for name, spec in _mapping(data, "platforms").items():
        wanted: dict[str, Any] = spec if isinstance(spec, dict) else {"status": spec}
        now = platforms.get(name)
        state = {
            "status": str(wanted.get("status", "active")),
            "version": None if wanted.get("version") is None else str(wanted["version"]),
            "message": None if wanted.get("message") is None else str(wanted["message"]),
        }
        if now is None or any(now[k] != v for k, v in state.items()):
            await control.set_platform(name, str(state["status"]), **_text(state), by=by)
            changes.append(f"platform {name} {state['status']}")
    flags = await control.policy.registry.flags()
    for name, enabled in _mapping(data, "flags").items():
        if not isinstance(enabled, bool):
            raise LoadError(f"flags.{name} must be true or false", code="invalid_mission")
        if flags.get(name) != enabled:
            await control.set_flag(name, enabled, by=by)
            changes.append(f"flag {name} {'on' if enabled else 'off'}")
    for change in changes:
        _log.info("policy_reconciled", file=str(path), change=change)
    return changes


def _mapping(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise LoadError(f"{key} must be an object", code="invalid_mission")
    return {str(k): v for k, v in value.items()}


def _text(state: dict[str, Any]) -> dict[str, str | None]:
    return {k: None if state[k] is None else str(state[k]) for k in ("version", "message")}
