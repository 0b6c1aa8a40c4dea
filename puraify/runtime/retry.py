"""Retry decisions: which errors retry, and how long to wait before the next attempt."""

from __future__ import annotations

import random

from ..errors import ActionError, GuardError
from ..mission.model import RetryPolicy

__all__ = ["MAX_RETRY_AFTER_SECONDS", "backoff_delay", "is_retryable"]

#: A platform's ``Retry-After`` is honoured up to this bound (the mission deadline still applies).
MAX_RETRY_AFTER_SECONDS = 3600.0


#: Failures no new try can change: the step's own input or a refusal by a guard or a policy.
_REFUSALS = frozenset(
    {
        "invalid_parameters",
        "policy_denied",
        "template_error",
        "template_reference_error",
        "template_security_error",
        "template_limit",
        "unknown_outcome",
        "internal_error",
    }
)


def is_retryable(error: BaseException, retry_on: str = "transient") -> bool:
    """Whether another attempt may help, for a step's ``retry_on`` (see ``RetryPolicy``):
    transient errors (connection, timeout, 5xx, 408, 429) always; other failures under
    ``failures`` unless they are a 4xx answer, and under ``any`` even then; refusals never."""
    if not isinstance(error, ActionError):
        return False
    if error.retryable:
        return True
    if retry_on == "transient" or isinstance(error, GuardError) or error.code in _REFUSALS:
        return False
    client_error = error.status is not None and 400 <= error.status < 500
    return retry_on == "any" or not client_error


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
