"""Asking a separate Engine Control (``puraify serve control``) over HTTP: the same ``Policy``
as in-process, through ``POST /actions/check`` with this engine's ``X-Engine-ID`` and
``X-Engine-Key``. Verdicts are cached as in-process; anything but a verdict (unreachable, a
timeout, an error status, a body that is not one) is ``policy_unavailable``: the engine fails
closed. The server audits every check it answers; this side logs every check, cached or not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import structlog

from ..errors import ActionError
from ..runtime.remote import engine_client
from ..store.cache import SingleFlightCache
from .rules import Verdict

__all__ = ["HttpPolicy"]

_log = structlog.get_logger("puraify.control")


class HttpPolicy:
    def __init__(
        self,
        url: str,
        engine_id: str,
        key: str,
        *,
        cache_seconds: float = 5.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = engine_client(url, engine_id, key, timeout=timeout, transport=transport)
        self._verdicts: SingleFlightCache[tuple[Any, ...], Verdict] = SingleFlightCache(
            cache_seconds, clock=clock
        )

    def invalidate(self) -> None:
        self._verdicts.forget()

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
        # flags' defaults are Engine Control's to decide, and it audits what it answers
        key = (engine_id, platform, action, scopes)
        verdict = self._verdicts.get(key)
        cached = verdict is not None
        if verdict is None:
            verdict = await self._verdicts.load(
                key, lambda: self._ask(engine_id, platform, action, scopes)
            )
        _log.info(
            "policy_check",
            engine_id=engine_id,
            platform=platform,
            action=action,
            allowed=verdict.allowed,
            reason=verdict.reason,
            cached=cached,
            **dict(context or {}),
        )
        return verdict

    async def _ask(
        self, engine_id: str, platform: str, action: str, scopes: tuple[str, ...] | None
    ) -> Verdict:
        body: dict[str, Any] = {"engine_id": engine_id, "platform": platform, "action_type": action}
        if scopes is not None:
            body["scopes"] = list(scopes)
        try:
            answer = await self._client.post("/actions/check", json=body)
            answer.raise_for_status()
            data = answer.json()
            if not isinstance(data.get("allowed"), bool) or not isinstance(data.get("reason"), str):
                raise ValueError("not a verdict")  # anything but one is no answer: fail closed
            return Verdict(
                allowed=data["allowed"],
                reason=data["reason"],
                required_scopes=tuple(data.get("required_scopes", ())),
                platform_status=str(data.get("platform_status", "active")),
                message=str(data.get("message", "")),
                flag=data.get("flag"),
                missing_scopes=tuple(data.get("missing_scopes", ())),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ActionError(
                f"Engine Control could not be asked ({_why(exc)})",
                code="policy_unavailable",
                retryable=True,
            ) from None

    async def flags(self) -> dict[str, bool]:
        try:
            answer = await self._client.get("/config/global")
            answer.raise_for_status()
            return {str(k): bool(v) for k, v in answer.json()["feature_flags"].items()}
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            return {}

    async def aclose(self) -> None:
        await self._client.aclose()


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"it answered {exc.response.status_code}"
    return type(exc).__name__
