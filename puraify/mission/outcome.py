"""What step results mean for the mission: its verdict, and whether ``when`` lets a step run.

Pure rules of DESIGN.md §3, applied by the executor:
- a mission ends ``failed`` if any step failed without ``continue_on_error`` or was cancelled
  (a fallback's success does not rewrite what happened), ``cancelled`` when the run was
  cancelled, ``failed`` with ``mission_timeout`` at its deadline, ``completed`` otherwise;
  failures that ``continue_on_error`` let pass are listed in ``warnings``;
- a rendered ``when`` is false when it is falsy, or a string reading ``false``, ``0``, ``no``,
  ``off``, ``none``, ``null`` or nothing (any case, surrounding spaces ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from .model import Mission, MissionResult, MissionStatus, StepError, StepResult, StepStatus

__all__ = ["Interruption", "cancelled_error", "summarize", "when_allows"]

#: Why a run stopped before its plan was done: the user (or caller) cancelled it, or its
#: deadline passed.
Interruption = Literal["cancelled", "deadline"]

_FALSE = frozenset({"", "false", "0", "no", "none", "null", "off"})


def when_allows(value: Any) -> bool:
    """Whether a step whose ``when`` rendered ``value`` runs (False: it is skipped)."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


def cancelled_error(interruption: Interruption | None) -> StepError:
    """The error of a step cancelled before it started, saying why."""
    if interruption == "cancelled":
        message = "run cancelled before this step started"
    elif interruption == "deadline":
        message = "mission deadline reached before this step started"
    else:
        message = "not started: an earlier step failed (fail_fast)"
    return StepError(code="cancelled", message=message)


def summarize(
    mission: Mission,
    run_id: str,
    results: Sequence[StepResult],
    interruption: Interruption | None,
    *,
    started_at: datetime,
    finished_at: datetime,
    duration_ms: float,
) -> MissionResult:
    """The run's result from every step's result (``results`` in declaration order)."""
    warnings = tuple(
        f"step {r.step_id!r} failed but continue_on_error let the mission go on: "
        f"{r.error.message if r.error else ''}"
        for r, s in zip(results, mission.steps, strict=True)
        if r.status is StepStatus.FAILED and s.continue_on_error
    )
    error = None
    if interruption == "cancelled":
        status = MissionStatus.CANCELLED
        error = StepError(code="cancelled", message="the run was cancelled")
    elif interruption == "deadline":
        status = MissionStatus.FAILED
        error = StepError(
            code="mission_timeout",
            message=f"mission deadline of {mission.config.timeout_seconds}s reached",
        )
    else:
        bad = [
            r
            for r, s in zip(results, mission.steps, strict=True)
            if (r.status is StepStatus.FAILED and not s.continue_on_error)
            or r.status is StepStatus.CANCELLED
        ]
        status = MissionStatus.FAILED if bad else MissionStatus.COMPLETED
        first = next((r for r in bad if r.status is StepStatus.FAILED), None)
        if first is not None and first.error is not None:
            error = StepError(
                code=first.error.code,
                message=f"step {first.step_id!r} failed: {first.error.message}",
            )
    return MissionResult(
        run_id=run_id,
        mission_name=mission.display_name,
        status=status,
        steps=tuple(results),
        started_at=started_at,
        finished_at=finished_at,
        duration_ms=duration_ms,
        warnings=warnings,
        error=error,
    )
