"""What every call to a platform passes: its rate limit and its circuit breaker, per credential.

- Rate limits come from ``platform_rate_limits`` (``{"slack": "50/minute"}``, the ``limits``
  library's notation, several separated by ``;``), counted per platform and credential with a
  moving window, in this process (``memory://``) or shared by every process through Redis
  (``redis_url``). An attempt over the budget waits for the window to admit it (within the
  step's timeout), as a queue would, instead of failing.
- A circuit breaker per credential opens after ``circuit_failures`` consecutive failures of the
  platform's side (5xx, timeouts, connection errors), fails attempts fast with ``circuit_open``
  (retryable) for ``circuit_reset_seconds``, then lets one attempt through (half open): a
  success closes it, a failure opens it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cachetools import TTLCache
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ..actions.registry import ActionRegistry
from ..codes import ErrorCode
from ..errors import ActionError
from .runner import StepInvocation, StepRunner

__all__ = ["Breaker", "PlatformGuard", "PlatformRunner"]

# failures of the platform's side: what opens a breaker
_PLATFORM_FAULTS = frozenset(
    {"upstream_error", "timeout", "connection_error", "http_error", "step_timeout"}
)


@dataclass
class Breaker:
    """One credential's circuit breaker."""

    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def admit(self, threshold: int, reset_seconds: float) -> bool:
        """Whether an attempt may go now (closed, or the one probe of a half-open breaker)."""
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at < reset_seconds or self.probing:
            return False
        self.probing = True  # half open: this attempt tells
        return True

    def record(self, ok: bool, threshold: int) -> None:
        self.probing = False
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= threshold or self.opened_at is not None:
            self.opened_at = self.clock()


class PlatformGuard:
    """Rate limits and circuit breakers of every platform this process calls."""

    def __init__(
        self,
        limits: Mapping[str, str],
        *,
        storage_url: str | None = None,
        failures: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.items: dict[str, list[RateLimitItem]] = {
            platform: parse_many(spec) for platform, spec in limits.items() if spec
        }
        found = storage_from_string("async+" + (storage_url or "memory://"))
        assert isinstance(found, Storage)  # the async+ scheme makes an asyncio storage
        self.storage = found
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.failures = failures
        self.reset_seconds = reset_seconds
        self.clock = clock
        # each project's breakers of recently used credentials and receivers (a refreshed
        # token is a new one), kept apart: however many one project makes, it only ever
        # pushes out its own
        self._breakers: TTLCache[str, TTLCache[str, Breaker]] = TTLCache(
            maxsize=65536, ttl=24 * 3600
        )

    async def acquire(self, platform: str, key: str) -> None:
        """Wait until ``platform``'s budget for ``key`` admits one more call."""
        for item in self.items.get(platform, ()):
            while not await self.limiter.hit(item, platform, key):
                stats = await self.limiter.get_window_stats(item, platform, key)
                await asyncio.sleep(max(0.01, stats.reset_time - time.time()))

    def breaker(self, project: str, platform: str, key: str) -> Breaker:
        mine = self._breakers.get(project)
        if mine is None:
            mine = self._breakers[project] = TTLCache(maxsize=4096, ttl=24 * 3600)
        name = f"{platform}:{key}"
        found = mine.get(name)
        if found is None:
            found = mine[name] = Breaker(clock=self.clock)
        return found


class PlatformRunner:
    """A ``StepRunner`` that passes every attempt of a platform's action (one that is not
    ``local``) through its rate limit and circuit breaker, keyed by the credential it uses."""

    def __init__(
        self,
        inner: StepRunner,
        guard: PlatformGuard,
        registry: ActionRegistry,
        *,
        project: str | None = None,
    ) -> None:
        self.inner = inner
        self.guard = guard
        self.registry = registry
        self.project = project or ""  # budgets and breakers are never another project's

    async def run(self, invocation: StepInvocation) -> dict[str, Any]:
        action = self.registry.get(invocation.step_type)
        platform = action.platform
        if platform == "local":
            return await self.inner.run(invocation)
        key = f"{self.project}:{_credential_key(invocation.credentials.get(platform))}"
        endpoint = action.endpoint(invocation.parameters)
        if endpoint is not None:  # its endpoints fail apart: a breaker and budget each
            key += ":" + hashlib.sha256(endpoint.encode()).hexdigest()[:16]
        breaker = self.guard.breaker(self.project, platform, key)
        if not breaker.admit(self.guard.failures, self.guard.reset_seconds):
            raise ActionError(
                f"{platform} failed {breaker.failures} times in a row for this credential; "
                f"calls are paused for {self.guard.reset_seconds:g}s",
                code=ErrorCode.CIRCUIT_OPEN,
                retryable=True,
                retry_after=self.guard.reset_seconds,
            )
        recorded = False
        try:
            await self.guard.acquire(platform, key)
            output = await self.inner.run(invocation)
        except ActionError as exc:
            # the platform's failures count (5xx, timeouts, unreachable), never a refusal of
            # what the step asked (4xx): a caller cannot open the breaker with bad requests
            fault = exc.retryable and exc.code in _PLATFORM_FAULTS
            breaker.record(not fault, self.guard.failures)
            recorded = True
            raise
        except Exception:
            breaker.record(False, self.guard.failures)
            recorded = True
            raise
        finally:
            if not recorded and breaker.probing:
                breaker.probing = False  # cancelled before it could tell: the next one probes
        breaker.record(True, self.guard.failures)
        return output


def _credential_key(credential: Any) -> str:
    """A credential's identity for limits and breakers: a digest of its value (never the
    value), ``anonymous`` without one."""
    if not credential:
        return "anonymous"
    secret = {k: v for k, v in dict(credential).items() if k not in ("type", "scopes")}
    return hashlib.sha256(repr(sorted(secret.items())).encode()).hexdigest()[:16]
