"""The mission verdict and `when` truthiness (DESIGN.md §3), as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from puraify.mission.model import (
    Mission,
    MissionResult,
    MissionStatus,
    StepError,
    StepResult,
    StepStatus,
)
from puraify.mission.outcome import Interruption, cancelled_error, summarize, when_allows

MISSION = Mission.model_validate(
    {
        "steps": [
            {"id": "a", "step_type": "noop"},
            {"id": "b", "step_type": "noop", "continue_on_error": True},
            {"id": "c", "step_type": "noop", "depends_on": ["a"], "trigger_rule": "one_failed"},
        ]
    }
)
NOW = datetime.now(UTC)


def verdict(*statuses: StepStatus, interruption: Interruption | None = None) -> MissionResult:
    results = [
        StepResult(
            step_id=s.id,
            name=s.id,
            step_type="noop",
            status=status,
            error=StepError(code="boom", message=f"{s.id} broke")
            if status is StepStatus.FAILED
            else None,
        )
        for s, status in zip(MISSION.steps, statuses, strict=True)
    ]
    return summarize(
        MISSION,
        "r1",
        results,
        interruption,
        started_at=NOW,
        finished_at=NOW,
        duration_ms=1.0,
    )


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("", False),
        (" False ", False),
        ("0", False),
        ("NO", False),
        ("none", False),
        ("null", False),
        ("off", False),
        ("yes", True),
        ("anything", True),
        (0, False),
        ([], False),
        (None, False),
        (1, True),
        ([0], True),
        (True, True),
    ],
)
def test_when_truthiness(value: object, allowed: bool) -> None:
    assert when_allows(value) is allowed


def test_failures_that_continue_on_error_lets_pass_are_warnings() -> None:
    ok, failed, skipped = StepStatus.SUCCESS, StepStatus.FAILED, StepStatus.SKIPPED
    result = verdict(ok, failed, skipped)
    assert result.status is MissionStatus.COMPLETED
    assert result.error is None
    (warning,) = result.warnings
    assert "'b'" in warning and "b broke" in warning


def test_a_failure_or_a_cancellation_fails_the_mission_even_after_a_fallback() -> None:
    failed = verdict(StepStatus.FAILED, StepStatus.SUCCESS, StepStatus.SUCCESS)
    assert failed.status is MissionStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "boom" and "'a'" in failed.error.message
    cancelled = verdict(StepStatus.SUCCESS, StepStatus.SUCCESS, StepStatus.CANCELLED)
    assert cancelled.status is MissionStatus.FAILED


def test_interruptions_decide_the_verdict() -> None:
    steps = (StepStatus.CANCELLED, StepStatus.CANCELLED, StepStatus.CANCELLED)
    cancelled = verdict(*steps, interruption="cancelled")
    assert cancelled.status is MissionStatus.CANCELLED
    assert cancelled.error is not None and cancelled.error.code == "cancelled"
    late = verdict(*steps, interruption="deadline")
    assert late.status is MissionStatus.FAILED
    assert late.error is not None and late.error.code == "mission_timeout"
    assert "deadline" in cancelled_error("deadline").message
    assert "fail_fast" in cancelled_error(None).message
