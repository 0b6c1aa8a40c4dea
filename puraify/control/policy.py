"""Asking Engine Control: the policy (``Policy``: in this process, or over HTTP in
``client.py``), its short cache, the audit log every check goes to, and the gate that puts it in
front of every step (``EngineGate``).

A verdict is cached for ``cache_seconds`` (per engine, platform, action and scopes); a change
made through this process's ``ControlService`` clears the cache at once, one made by another
process applies within that time. Failures are never cached. Every check, cached or not, is an
audit event: written to the store in batches (``AuditLog``: at most ``flush_seconds`` later)
and to the JSON log as ``policy_check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from ..actions.base import Action
from ..actions.registry import ActionRegistry
from ..codes import ErrorCode
from ..errors import ActionError
from ..store.cache import SingleFlightCache
from .registry import ControlRegistry
from .rules import Verdict, decide

__all__ = ["AuditLog", "EngineGate", "LocalPolicy", "Policy"]

_log = structlog.get_logger("puraify.control")


class Policy(Protocol):
    async def check(
        self,
        engine_id: str,
        platform: str,
        action: str,
        *,
        scopes: tuple[str, ...] | None = None,
        context: Mapping[str, Any] | None = None,
        flag_default: bool | None = None,
        audit: bool = True,
    ) -> Verdict:
        """The verdict (``ActionError`` with ``policy_unavailable`` when it cannot be had);
        ``audit``: false for a preview (a dry run), which changes nothing.
        ``flag_default``: whether a feature flag nobody set is on (default: the policy's
        own defaults, those of the profile it was built for)."""


class AuditLog:
    """Audit events, written to the store in batches off the caller's path and logged."""

    def __init__(
        self, registry: ControlRegistry, *, flush_seconds: float = 0.2, log_allowed: bool = True
    ) -> None:
        self.registry = registry
        self.flush_seconds = flush_seconds
        self.log_allowed = log_allowed  # a command line logs only the checks that said no
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(self, event: dict[str, Any]) -> None:
        event.setdefault("at", datetime.now(UTC))
        self._pending.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        # until nothing is pending: events added while a batch was being written go next
        while self._pending:
            await asyncio.sleep(self.flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        """Write what is pending now (and log it)."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            for event in batch:
                if event.get("allowed") and not self.log_allowed:
                    continue
                _log.info(
                    "policy_check" if event["kind"] == "check" else "engine_event",
                    engine_id=event.get("engine_id"),
                    platform=event.get("platform"),
                    action=event.get("action"),
                    allowed=event.get("allowed"),
                    reason=event.get("reason"),
                    request_id=event.get("request_id"),
                    **{k: v for k, v in event["data"].items() if k in ("run_id", "step_id")},
                )
            try:
                await self.registry.record(batch)
            except Exception as exc:  # the store is down: the log above still has them
                _log.error("audit_write_failed", events=len(batch), error=type(exc).__name__)

    async def aclose(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


class LocalPolicy:
    """The policy read from this process's store (see the module)."""

    def __init__(
        self,
        registry: ControlRegistry,
        catalogue: ActionRegistry,
        audit: AuditLog,
        *,
        flag_defaults: Mapping[str, bool],
        cache_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.catalogue = catalogue
        self.audit = audit
        self.flag_defaults = dict(flag_defaults)
        self._verdicts: SingleFlightCache[tuple[Any, ...], Verdict] = SingleFlightCache(
            cache_seconds, clock=clock
        )

    def invalidate(self) -> None:
        """Forget every cached verdict (a change was made), and any being read now."""
        self._verdicts.forget()

    def canonical(self, platform: str, action: str) -> str:
        """An action's own name for one of its aliases (``run_command``: ``command``), when
        the catalogue has it on ``platform``; any other name as it is."""
        try:
            known = self.catalogue.get(action)
        except KeyError:
            return action
        return known.name if known.platform == platform else action

    def requirements(self, platform: str, action: str) -> tuple[tuple[str, ...], str | None]:
        """The catalogue's required scopes and feature flag for ``action`` on ``platform``."""
        try:
            known = self.catalogue.get(action)
        except KeyError:
            return (), None
        if known.platform != platform:
            return (), None
        return known.required_scopes, known.flag

    async def flags(self) -> dict[str, bool]:
        return {**self.flag_defaults, **(await self.registry.flags())}

    async def check(
        self,
        engine_id: str,
        platform: str,
        action: str,
        *,
        scopes: tuple[str, ...] | None = None,
        context: Mapping[str, Any] | None = None,
        flag_default: bool | None = None,
        audit: bool = True,
    ) -> Verdict:
        action = self.canonical(platform, action)
        key = (engine_id, platform, action, scopes, flag_default)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = await self._verdicts.load(
                key, lambda: self._decide(engine_id, platform, action, scopes, flag_default)
            )
        if audit:
            self.audit.add(_event(engine_id, platform, action, verdict, context))
        return verdict

    async def _decide(
        self,
        engine_id: str,
        platform: str,
        action: str,
        scopes: tuple[str, ...] | None,
        flag_default: bool | None,
    ) -> Verdict:
        required, flag = self.requirements(platform, action)
        try:
            engine, state, flags = await self.registry.state(engine_id, platform)
            flag_on = True
            if flag is not None:
                stored = flags.get(flag)
                default = (
                    self.flag_defaults.get(flag, True) if flag_default is None else flag_default
                )
                flag_on = default if stored is None else stored
        except Exception as exc:  # the store cannot be read: fail closed
            raise ActionError(
                f"Engine Control could not be asked ({type(exc).__name__})",
                code="policy_unavailable",
                retryable=True,
            ) from None
        return decide(
            engine,
            platform,
            action,
            required_scopes=required,
            given_scopes=scopes,
            platform_status=state["status"] if state else "active",
            platform_message=state["message"] if state else None,
            flag=flag,
            flag_on=flag_on,
        )


def _event(
    engine_id: str,
    platform: str,
    action: str,
    verdict: Verdict,
    context: Mapping[str, Any] | None,
) -> dict[str, Any]:
    data = dict(context or {})
    request_id = data.pop("request_id", None)
    return {
        "kind": "check",
        "request_id": request_id,
        "engine_id": engine_id,
        "platform": platform,
        "action": action,
        "allowed": verdict.allowed,
        "reason": verdict.reason,
        "data": data,
    }


class EngineGate:
    """The gate in front of every step (``runtime.policy.StepPolicy``): the execution
    service's own engine asks ``policy`` for each attempt. ``flag_default``: whether a feature
    flag nobody set is on for the runs it gates (their profile's: dangerous actions are off in
    the server profile, on in the local one)."""

    def __init__(self, policy: Policy, engine_id: str, *, flag_default: bool | None = None) -> None:
        self.policy = policy
        self.engine_id = engine_id
        self.flag_default = flag_default  # the profile of the runs it gates: flags' defaults

    async def verdict(self, action: Action, **context: Any) -> Verdict:
        return await self.policy.check(
            self.engine_id,
            action.platform,
            action.name,
            scopes=None,
            context={k: v for k, v in context.items() if v is not None},
            flag_default=self.flag_default,
        )

    async def preview(self, action: Action) -> Verdict:
        """The verdict ``action`` would get now, not audited (a dry run changes nothing)."""
        return await self.policy.check(
            self.engine_id,
            action.platform,
            action.name,
            flag_default=self.flag_default,
            audit=False,
        )

    async def authorize(self, action: Action, *, run_id: str, step_id: str) -> tuple[str, ...]:
        verdict = await self.verdict(
            action, run_id=run_id, step_id=step_id, request_id=_request_id()
        )
        if verdict.allowed:
            return verdict.required_scopes
        unavailable = verdict.platform_status != "active"
        code = ErrorCode.PLATFORM_UNAVAILABLE if unavailable else ErrorCode.POLICY_DENIED
        raise ActionError(
            f"Engine Control refused {action.platform}.{action.name} ({verdict.reason}): "
            f"{verdict.message}",
            code=code,
            retryable=unavailable,
            details={"rule": verdict.reason},
        )


def _request_id() -> str | None:
    bound = structlog.contextvars.get_contextvars().get("request_id")
    return str(bound) if bound is not None else None
