"""Turning a stored run back into executor inputs: resume (after a crash) and retry.

Resume (DESIGN.md §6): finished steps keep their results; an interrupted attempt of a ``keyed``
or ``idempotent`` step is dispatched again (same ``Idempotency-Key``, next attempt number); an
interrupted ``unsafe`` step ends ``failed`` with ``unknown_outcome`` unless it sets
``retry_on_unknown: true``. Retry: a new run that reuses every successful output of the old one
and executes the failed, skipped and cancelled steps again.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..actions.registry import ActionRegistry
from ..mission.model import StepError, StepResult, StepStatus
from .runs import RunRecord

__all__ = ["ResumePlan", "resume_plan", "reusable_results"]


@dataclass(frozen=True)
class ResumePlan:
    restore: dict[str, StepResult]
    attempts_done: dict[str, int]
    fail_on_start: dict[str, StepError]
    redispatched: list[str]


def resume_plan(record: RunRecord, registry: ActionRegistry) -> ResumePlan:
    """What the executor needs to continue ``record`` where it stopped."""
    names = {s.id: s for s in record.mission.steps}
    restore: dict[str, StepResult] = {}
    attempts_done: dict[str, int] = {}
    fail_on_start: dict[str, StepError] = {}
    redispatched: list[str] = []
    for row in record.steps:
        step = names[row.step_id]
        if row.status.terminal:
            restore[row.step_id] = row.result(step.display_name)
            continue
        attempts_done[row.step_id] = row.attempts
        if row.status is not StepStatus.RUNNING:
            continue
        delivery = registry.get(step.step_type).delivery
        if delivery == "unsafe" and not step.retry_on_unknown:
            fail_on_start[row.step_id] = StepError(
                code="unknown_outcome",
                message=(
                    f"attempt {row.attempts} was interrupted (engine stopped) and {step.step_type} "
                    "is not safe to repeat; check the target, then `puraify runs retry` it or set "
                    "retry_on_unknown: true"
                ),
            )
        else:
            redispatched.append(row.step_id)
    return ResumePlan(restore, attempts_done, fail_on_start, redispatched)


def reusable_results(record: RunRecord) -> dict[str, StepResult]:
    """The successful steps of ``record``, to reuse in a retry."""
    names = {s.id: s.display_name for s in record.mission.steps}
    return {
        row.step_id: row.result(names[row.step_id])
        for row in record.steps
        if row.status is StepStatus.SUCCESS
    }
