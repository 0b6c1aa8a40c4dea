"""A run whose engine fails (not one of its steps) ends failed with the reason: it is never left
running, never resumed into the same fault, and other runs go on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from puraify.mission.model import MissionStatus, StepStatus
from puraify.service import compose
from puraify.settings import Settings

TEXT = (
    "steps:\n  - {id: a, step_type: noop}\n  - {id: b, step_type: noop, depends_on: [a]}\n"
    "  - {id: c, step_type: noop, depends_on: [b]}\n"
)


async def test_a_run_whose_engine_fails_ends_failed_and_the_next_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home", workspace=tmp_path / "ws", mode="local")
    async with compose(settings, listen=None, environ={}, cwd=tmp_path) as app:
        compiled = app.preparer.prepare(TEXT).compiled
        real = app.store.attempts_started
        calls = {"n": 0}

        async def faulty(run_id: str, items: Any, finished: Any = ()) -> dict[str, int]:
            calls["n"] += 1
            if calls["n"] == 2:  # the store fails once, in the middle of the first run
                raise RuntimeError("disk on fire")
            return await real(run_id, items, finished)

        monkeypatch.setattr(app.store, "attempts_started", faulty)
        broken, _ = await app.runs.submit(compiled, project_id=None, context={})
        with pytest.raises(RuntimeError):
            await app.runs.wait(broken)
        record = await app.store.get(broken)
        assert record.status is MissionStatus.FAILED
        assert record.error is not None and record.error.code == "internal_error"
        assert "RuntimeError" in record.error.message
        assert "disk on fire" not in record.error.message  # an exception's text may hold data
        statuses = {s.step_id: s.status for s in record.steps}
        # a's result was in the write that failed: the store never learnt it, so a ends with
        # the run's reason; what had not started is cancelled
        assert statuses == {
            "a": StepStatus.FAILED,
            "b": StepStatus.CANCELLED,
            "c": StepStatus.CANCELLED,
        }
        assert broken not in await app.store.orphans()  # nothing for a resume to run into

        healthy, _ = await app.runs.submit(compiled, project_id=None, context={})
        result = await app.runs.wait(healthy)
        assert result is not None and result.status is MissionStatus.COMPLETED


async def test_a_single_action_whose_engine_fails_is_answered_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(home=tmp_path / "home", workspace=tmp_path / "ws", mode="local")
    async with compose(settings, listen=None, environ={}, cwd=tmp_path) as app:

        async def faulty(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("store gone")

        monkeypatch.setattr(app.store, "run_finished", faulty)
        outcome = await app.runs.run_action(
            "noop", platform=None, parameters={}, context={}, project_id=None
        )
        assert outcome.step is not None and outcome.step.status is StepStatus.FAILED
        assert outcome.step.error is not None and outcome.step.error.code == "internal_error"
        assert (await app.store.get(outcome.run_id)).status is MissionStatus.FAILED
