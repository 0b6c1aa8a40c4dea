"""Continuing a stored run: resume (after a crash) and retry, as one value the executor takes.

Resume (DESIGN.md §6): finished steps keep their results; an interrupted attempt of a ``keyed``
or ``idempotent`` step is dispatched again (same ``Idempotency-Key``, next attempt number); an
interrupted ``unsafe`` step ends ``failed`` with ``unknown_outcome`` unless it sets
``retry_on_unknown: true``, and that ending closes the interrupted attempt. Retry: a new run
that reuses every successful output of the old one and executes the failed, skipped and
cancelled steps again.

Deciding which interrupted steps may be dispatched again needs the actions' delivery classes,
so this is a runtime rule; the run store only hands back what it recorded (``StoredRun``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..actions.registry import ActionRegistry
from ..mission.model import Mission, StepError, StepResult, StepStatus

__all__ = ["ResumeState", "StoredRun", "StoredStep", "resume_plan", "reusable_results"]


class StoredStep(Protocol):
    """A step as the run store recorded it."""

    @property
    def step_id(self) -> str: ...

    @property
    def status(self) -> StepStatus: ...

    @property
    def attempts(self) -> int: ...

    @property
    def fence(self) -> int:
        """The fencing token of the step's latest attempt."""

    def result(self, name: str) -> StepResult:
        """The step's recorded result, shown under ``name``."""


class StoredRun(Protocol):
    """A run as the run store recorded it."""

    @property
    def mission(self) -> Mission: ...

    @property
    def steps(self) -> Sequence[StoredStep]: ...


@dataclass(frozen=True)
class ResumeState:
    """Where an earlier execution left a run, for the executor to continue from.

    ``restore``: results put back as they are (those steps do not run again);
    ``attempts_done``: attempt numbering continues from these counts;
    ``fail_on_start``: these steps end ``failed`` with the given error when their turn comes,
    through the normal rules; ``interrupted``: the fences of their interrupted attempts, which
    that ending closes; ``redispatched``: the interrupted steps that will run again.
    """

    restore: Mapping[str, StepResult] = field(default_factory=dict)
    attempts_done: Mapping[str, int] = field(default_factory=dict)
    fail_on_start: Mapping[str, StepError] = field(default_factory=dict)
    interrupted: Mapping[str, int] = field(default_factory=dict)
    redispatched: list[str] = field(default_factory=list)


def resume_plan(record: StoredRun, registry: ActionRegistry) -> ResumeState:
    """What the executor needs to continue ``record`` where it stopped."""
    steps = {s.id: s for s in record.mission.steps}
    restore: dict[str, StepResult] = {}
    attempts_done: dict[str, int] = {}
    fail_on_start: dict[str, StepError] = {}
    interrupted: dict[str, int] = {}
    redispatched: list[str] = []
    for row in record.steps:
        step = steps[row.step_id]
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
            interrupted[row.step_id] = row.fence
        else:
            redispatched.append(row.step_id)
    return ResumeState(restore, attempts_done, fail_on_start, interrupted, redispatched)


def reusable_results(record: StoredRun) -> dict[str, StepResult]:
    """The successful steps of ``record``, to reuse in a retry (``ResumeState(restore=...)``)."""
    names = {s.id: s.display_name for s in record.mission.steps}
    return {
        row.step_id: row.result(names[row.step_id])
        for row in record.steps
        if row.status is StepStatus.SUCCESS
    }
