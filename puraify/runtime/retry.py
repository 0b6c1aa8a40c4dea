"""Retry decisions: which errors retry, and how long to wait before the next attempt."""

from __future__ import annotations

import random

from ..errors import ActionError, PuraifyError
from ..mission.model import RetryPolicy

__all__ = ["MAX_RETRY_AFTER_SECONDS", "backoff_delay", "is_retryable"]

#: A platform's ``Retry-After`` is honoured up to this bound (the mission deadline still applies).
MAX_RETRY_AFTER_SECONDS = 3600.0


def is_retryable(error: BaseException) -> bool:
    """Connection errors, timeouts, 5xx and 429 retry; 4xx, validation and guard errors do not."""
    return isinstance(error, ActionError) and error.retryable and isinstance(error, PuraifyError)


def backoff_delay(
    policy: RetryPolicy,
    retry_number: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds before retry ``retry_number`` (1 = the first retry)."""
    base = float(policy.delay_ms)
    if policy.backoff == "exponential":
        base *= 2 ** (retry_number - 1)
    base = min(base, float(policy.max_delay_ms))
    if policy.jitter:
        base += base * policy.jitter * (rng or random).random()
    delay = base / 1000.0
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return delay
