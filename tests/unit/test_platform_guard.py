"""The circuit breaker of a platform credential: opens after its failures, lets one probe
through after its pause, and never stays stuck when that probe is cancelled or crashes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from puraify.actions import default_registry
from puraify.errors import ActionError
from puraify.runtime.platforms import PlatformGuard, PlatformRunner
from puraify.runtime.runner import StepInvocation
from tests.helpers import ManualClock


class Scripted:
    def __init__(self) -> None:
        self.outcomes: list[Any] = []

    async def run(self, invocation: StepInvocation) -> dict[str, Any]:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return {"ok": True}


def invocation() -> StepInvocation:
    return StepInvocation(
        "r", "s", "slack.send_message", 1, {}, credentials={"slack": {"token": "t"}}
    )


async def test_a_probe_that_is_cancelled_or_crashes_never_leaves_it_stuck() -> None:
    clock = ManualClock()
    guard = PlatformGuard({}, failures=1, reset_seconds=30, clock=clock.monotonic)
    inner = Scripted()
    runner = PlatformRunner(inner, guard, default_registry(entry_points=False), project="p")
    inner.outcomes.append(ActionError("down", code="upstream_error", retryable=True))
    with pytest.raises(ActionError):
        await runner.run(invocation())
    with pytest.raises(ActionError) as paused:
        await runner.run(invocation())
    assert paused.value.code == "circuit_open"
    clock.advance(31)
    inner.outcomes.append(asyncio.CancelledError())  # the probe's step was cancelled
    with pytest.raises(asyncio.CancelledError):
        await runner.run(invocation())
    inner.outcomes.append(ValueError("an answer it could not read"))  # the next one probes
    with pytest.raises(ValueError):
        await runner.run(invocation())
    clock.advance(31)
    inner.outcomes.append(None)
    assert await runner.run(invocation()) == {"ok": True}  # closed again


async def test_refusals_of_what_was_asked_do_not_open_it_and_projects_have_their_own() -> None:
    guard = PlatformGuard({}, failures=2, reset_seconds=30)
    registry = default_registry(entry_points=False)
    inner = Scripted()
    mine = PlatformRunner(inner, guard, registry, project="a")
    theirs = PlatformRunner(inner, guard, registry, project="b")
    for _ in range(3):  # 4xx: the step's own mistake
        inner.outcomes.append(ActionError("no", code="http_error", status=404))
        with pytest.raises(ActionError):
            await mine.run(invocation())
    for _ in range(2):  # 5xx: the platform's
        inner.outcomes.append(ActionError("down", code="upstream_error", retryable=True))
        with pytest.raises(ActionError):
            await mine.run(invocation())
    with pytest.raises(ActionError) as paused:
        await mine.run(invocation())
    assert paused.value.code == "circuit_open"
    inner.outcomes.append(None)
    assert await theirs.run(invocation()) == {"ok": True}  # another project's calls go on


def test_one_project_flooding_breakers_never_pushes_out_anothers() -> None:
    guard = PlatformGuard({}, failures=1, reset_seconds=3600)
    theirs = guard.breaker("b", "webhook", "receiver")
    theirs.record(False, guard.failures)
    assert not theirs.admit(guard.failures, guard.reset_seconds)  # open
    for i in range(10_000):  # past any one project's share: it pushes out only its own
        guard.breaker("a", "webhook", f"receiver-{i}")
    again = guard.breaker("b", "webhook", "receiver")
    assert again is theirs and not again.admit(guard.failures, guard.reset_seconds)
