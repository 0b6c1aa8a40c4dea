"""The async executor: drives a ``Plan`` with real concurrency, deadlines, retries and hooks.

One pure core (``mission.plan.Plan``), one async driver (this module). The executor never
aborts without a result: a step that raises anything becomes ``failed`` with a code, and the
mission always ends ``completed``, ``failed`` or ``cancelled`` with every step accounted for.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from ..errors import ActionError, PuraifyError, StepTimeout
from ..mission.compile import CompiledMission, CompiledStep, TemplateSlot
from ..mission.model import (
    Mission,
    MissionResult,
    MissionStatus,
    MissionStep,
    StepError,
    StepResult,
    StepStatus,
)
from ..mission.plan import Plan
from ..templating.render import TemplateEngine
from ..templating.scope import Scope
from .hooks import Hooks, HookSet, RunInfo
from .recorder import NullRecorder, RunRecorder
from .retry import backoff_delay, is_retryable
from .runner import StepInvocation, StepRunner

__all__ = ["Executor", "RunHandle"]

_log = structlog.get_logger("puraify.executor")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Record:
    step: MissionStep
    status: StepStatus = StepStatus.PENDING
    output: dict[str, Any] | None = None
    error: StepError | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    t0: float | None = None
    duration_ms: float | None = None
    fence: int | None = None

    def result(self) -> StepResult:
        return StepResult(
            step_id=self.step.id,
            name=self.step.display_name,
            step_type=self.step.step_type,
            status=self.status,
            output=self.output,
            error=self.error,
            attempts=self.attempts,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=self.duration_ms,
        )


@dataclass
class RunHandle:
    """A live run's id and its cancel switch (Ctrl-C, API cancel)."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _cancelled: bool = False
    _listeners: list[Callable[[], None]] = field(default_factory=list)

    def cancel(self) -> None:
        """Ask the run to stop: running steps are cancelled, pending ones never start."""
        if not self._cancelled:
            self._cancelled = True
            for listener in list(self._listeners):
                listener()

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class Executor:
    """Runs missions. Built once (by ``Engine``) and reused for many runs."""

    def __init__(
        self,
        runner: StepRunner,
        *,
        templates: TemplateEngine | None = None,
        hooks: Hooks | None = None,
        env: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
        recorder: RunRecorder | None = None,
    ) -> None:
        self.runner = runner
        self.recorder: RunRecorder = recorder or NullRecorder()
        self.templates = templates or TemplateEngine()
        self.hooks = hooks or HookSet()
        self.env = env or {}
        self.rng = rng or random.Random()

    async def execute(
        self,
        compiled: CompiledMission,
        *,
        handle: RunHandle | None = None,
        context: Mapping[str, Any] | None = None,
        restore: Mapping[str, StepResult] | None = None,
        attempts_done: Mapping[str, int] | None = None,
        fail_on_start: Mapping[str, StepError] | None = None,
    ) -> MissionResult:
        """Run ``mission`` to a terminal state and return its result (steps in declaration order).

        ``restore`` puts back results of an earlier execution of the same run (resume) or of the
        run being retried; those steps do not run again. ``attempts_done`` continues attempt
        numbering for steps that were interrupted. ``fail_on_start`` ends the named steps
        ``failed`` with the given error when their turn comes, through the normal rules (an
        interrupted unsafe step: ``unknown_outcome``).
        """
        handle = handle or RunHandle()
        mission = compiled.mission
        run = RunInfo(handle.run_id, mission)
        steps = {c.id: c for c in compiled.steps}
        records = {s.id: _Record(s) for s in mission.steps}
        plan = Plan.from_mission(mission)
        scope = Scope(run_id=handle.run_id, mission=mission, context=context or {}, env=self.env)
        limit = mission.config.max_concurrent_steps
        started_at, t_start = _now(), time.monotonic()
        deadline = (
            t_start + mission.config.timeout_seconds if mission.config.timeout_seconds else None
        )
        running: dict[asyncio.Future[Any], str] = {}
        # resolved by handle.cancel(); a plain future, not a task waiting on an event
        cancel_wait: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_cancel() -> None:
            if not cancel_wait.done():
                cancel_wait.set_result(None)

        handle._listeners.append(on_cancel)
        if handle.cancelled:
            on_cancel()
        # Finished tasks report here, so each completion costs O(1) instead of re-waiting on
        # every running task (asyncio.wait registers a callback on each, every time).
        finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        cancel_wait.add_done_callback(finished.put_nowait)
        outcome: str | None = None  # "cancelled" | "deadline"
        unrecorded: list[tuple[StepResult, int | None]] = []
        for sid, old in (restore or {}).items():
            rec = records[sid]
            rec.status, rec.output, rec.error, rec.attempts = (
                old.status,
                old.output,
                old.error,
                old.attempts,
            )
            rec.started_at, rec.finished_at, rec.duration_ms = (
                old.started_at,
                old.finished_at,
                old.duration_ms,
            )
            if old.status is StepStatus.SUCCESS:
                scope.add_output(sid, old.output or {})
        if restore:
            plan.restore({sid: r.status for sid, r in restore.items()})
        for sid, n in (attempts_done or {}).items():
            records[sid].attempts = n
        heartbeat = self._start_heartbeat(handle)
        await self.hooks.on_run_start(run)

        async def report(rec: _Record) -> None:
            result = rec.result()
            unrecorded.append((result, rec.fence))
            await self.hooks.after_step(run, result)

        async def flush() -> None:
            # Durable before anything that depends on these results starts; the last results
            # of a run are written with the run's end instead (one transaction).
            if unrecorded:
                batch = list(unrecorded)
                unrecorded.clear()
                await self.recorder.steps_finished(run.run_id, batch)

        async def decided(sid: str, st: StepStatus) -> None:
            rec = records[sid]
            rec.status = st
            rec.finished_at = _now()
            if st is StepStatus.CANCELLED:
                rec.error = StepError(code="cancelled", message=_why_cancelled(outcome))
            await report(rec)

        async def finish(step_id: str, status: StepStatus, error: StepError | None = None) -> None:
            rec = records[step_id]
            rec.status = status
            if error is not None:
                rec.error = error
            rec.finished_at = rec.finished_at or _now()
            if rec.t0 is not None and rec.duration_ms is None:
                rec.duration_ms = round((time.monotonic() - rec.t0) * 1000, 3)
            if status is StepStatus.SUCCESS:
                scope.add_output(step_id, rec.output or {})
            for decided_id, decided in plan.complete(step_id, status):
                drec = records[decided_id]
                drec.status = decided
                drec.finished_at = _now()
                if decided is StepStatus.CANCELLED:
                    drec.error = StepError(code="cancelled", message=_why_cancelled(outcome))
                await report(drec)
            await report(rec)

        async def stop_running(
            status: StepStatus, error: StepError, *, handlers_too: bool = True
        ) -> None:
            tasks = [
                t
                for t, sid in running.items()
                if handlers_too or records[sid].step.trigger_rule == "all_success"
            ]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                sid = running.pop(task)
                await finish(sid, status, error)

        try:
            while True:
                if outcome is None:
                    if running or plan.has_ready():
                        await flush()
                    starting: list[_Record] = []
                    for step_id in plan.ready(limit - len(running)):
                        rec = records[step_id]
                        preset = (fail_on_start or {}).get(step_id)
                        if preset is not None:
                            await finish(step_id, StepStatus.FAILED, preset)
                            continue
                        skip = await self._when_says_skip(steps[step_id], scope)
                        if skip is not None:
                            rec.output = None
                            if skip.code == "when_false":
                                await finish(step_id, StepStatus.SKIPPED)
                            else:
                                rec.attempts = 0
                                await finish(step_id, StepStatus.FAILED, skip)
                            continue
                        starting.append(rec)
                    if starting:
                        await flush()  # `when` skips decided just now
                        fences = await self.recorder.attempts_started(
                            run.run_id, [(r.step.id, r.attempts + 1) for r in starting]
                        )
                        for rec in starting:
                            rec.fence = fences[rec.step.id]
                            task: asyncio.Future[Any] = asyncio.create_task(
                                self._run_step(run, rec, steps[rec.step.id], scope)
                            )
                            running[task] = rec.step.id
                            task.add_done_callback(finished.put_nowait)
                    if not running and plan.has_ready():
                        continue  # `when` skips freed more steps
                if not running:
                    break
                done = await _next_finished(finished, deadline)
                if cancel_wait in done and outcome is None:
                    outcome = "cancelled"
                    for sid, st in plan.cancel():
                        await decided(sid, st)
                    await stop_running(
                        StepStatus.CANCELLED, StepError(code="cancelled", message="run cancelled")
                    )
                    continue
                if not done and outcome is None:
                    outcome = "deadline"
                    for sid, st in plan.cancel():
                        await decided(sid, st)
                    await stop_running(
                        StepStatus.FAILED,
                        StepError(
                            code="timeout",
                            retryable=True,
                            message=f"mission deadline of {mission.config.timeout_seconds}s reached",
                        ),
                    )
                    continue
                for task in done:
                    if task is cancel_wait or task not in running:
                        continue  # a task stopped above reports late; it is already settled
                    sid = running.pop(task)
                    task.result()  # _run_step never raises; surface bugs loudly
                    await finish(sid, records[sid].status)
                if plan.stopping and running and outcome is None:
                    failed = next(
                        (
                            r.step.id
                            for r in records.values()
                            if r.status is StepStatus.FAILED and not r.step.continue_on_error
                        ),
                        None,
                    )
                    # Cleanup and fallback steps (all_done / one_failed) keep running.
                    await stop_running(
                        StepStatus.CANCELLED,
                        StepError(
                            code="cancelled",
                            message=f"cancelled: step {failed!r} failed (fail_fast)",
                        ),
                        handlers_too=False,
                    )
        except asyncio.CancelledError:
            # The caller's task was cancelled (e.g. Ctrl-C at the top): stop cleanly, then re-raise.
            outcome = "cancelled"
            for sid, st in plan.cancel():
                records[sid].status = st
            tasks = list(running)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                rec = records[running.pop(task)]
                rec.status = StepStatus.CANCELLED
                rec.error = StepError(code="cancelled", message="run cancelled")
            raise
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            handle._listeners.remove(on_cancel)
            cancel_wait.cancel()

        result = self._result(mission, handle.run_id, records, outcome, started_at, t_start)
        last = list(unrecorded)
        unrecorded.clear()
        await self.recorder.run_finished(result, last)
        await self.hooks.on_run_end(run, result)
        return result

    def _start_heartbeat(self, handle: RunHandle) -> _Heartbeat | None:
        interval = getattr(self.recorder, "heartbeat_interval", None)
        if not interval:
            return None
        return _Heartbeat(self.recorder, handle, interval)

    async def _when_says_skip(self, cstep: CompiledStep, scope: Scope) -> StepError | None:
        when = cstep.when
        if when is None:
            return None
        try:
            value = self.templates.render(when, scope.names(cstep.when_roots), field="when")
        except PuraifyError as exc:
            return StepError(code=exc.code, message=exc.message)
        if isinstance(value, str):
            value = value.strip().lower() not in ("", "false", "0", "no", "none", "null", "off")
        if value:
            return None
        return StepError(code="when_false", message=f"`when` was false: {cstep.step.when}")

    async def _run_step(
        self, run: RunInfo, rec: _Record, cstep: CompiledStep, scope: Scope
    ) -> None:
        step = rec.step
        rec.started_at, rec.t0 = _now(), time.monotonic()
        policy = cstep.retry
        timeout = cstep.timeout
        try:
            params = self._render(cstep, scope)
        except PuraifyError as exc:
            rec.attempts = 1
            rec.status, rec.error = (
                StepStatus.FAILED,
                StepError(code=exc.code, message=str(exc.message)),
            )
            return
        attempt = rec.attempts
        registered = rec.fence is not None  # the first attempt was recorded with its batch
        while True:
            attempt += 1
            if not registered:
                fences = await self.recorder.attempts_started(run.run_id, [(step.id, attempt)])
                rec.fence = fences[step.id]
            registered = False
            rec.attempts = attempt
            await self.hooks.before_step(run, step, attempt)
            invocation = StepInvocation(
                run.run_id, step.id, cstep.action, attempt, params, params=cstep.params
            )
            error: ActionError
            try:
                async with asyncio.timeout(timeout) as cm:
                    output = await self.runner.run(invocation)
                rec.status, rec.output = StepStatus.SUCCESS, output
                return
            except TimeoutError:
                if not cm.expired():
                    error = ActionError("the action timed out", code="timeout", retryable=True)
                else:
                    error = StepTimeout(f"step ran past its {timeout:g}s timeout and was stopped")
            except ActionError as exc:
                error = exc
            except PuraifyError as exc:
                error = ActionError(exc.message, code=exc.code)
            except Exception as exc:  # an action bug must not abort the mission
                _log.exception("action_crashed", run_id=run.run_id, step_id=step.id)
                error = ActionError(f"{type(exc).__name__}: {exc}", code="internal_error")
            if is_retryable(error) and attempt <= policy.attempts:
                delay = backoff_delay(policy, attempt, retry_after=error.retry_after, rng=self.rng)
                if rec.fence is not None:
                    await self.recorder.attempt_failed(
                        run.run_id,
                        step.id,
                        rec.fence,
                        StepError(code=error.code, message=error.message, status=error.status),
                    )
                await self.hooks.on_retry(run, step, attempt, _error_dict(error), delay)
                await asyncio.sleep(delay)
                continue
            rec.status = StepStatus.FAILED
            rec.error = StepError(
                code=error.code,
                message=error.message,
                retryable=error.retryable,
                status=error.status,
            )
            return

    def _render(self, cstep: CompiledStep, scope: Scope) -> dict[str, Any]:
        parameters = cstep.step.parameters
        if not cstep.templated:
            return parameters
        names = scope.names(cstep.roots)
        return {
            k: self._fill(cstep.templated[k], names) if k in cstep.templated else v
            for k, v in parameters.items()
        }

    def _fill(self, value: Any, names: Mapping[str, Any]) -> Any:
        if isinstance(value, TemplateSlot):
            return self.templates.render(value.template, names, field=value.field)
        if isinstance(value, dict):
            return {k: self._fill(v, names) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, names) for v in value]
        return value

    def _result(
        self,
        mission: Mission,
        run_id: str,
        records: Mapping[str, _Record],
        outcome: str | None,
        started_at: datetime,
        t_start: float,
    ) -> MissionResult:
        results = tuple(records[s.id].result() for s in mission.steps)
        warnings = tuple(
            f"step {r.step_id!r} failed but continue_on_error let the mission go on: "
            f"{r.error.message if r.error else ''}"
            for r, s in zip(results, mission.steps, strict=True)
            if r.status is StepStatus.FAILED and s.continue_on_error
        )
        error = None
        if outcome == "cancelled":
            status = MissionStatus.CANCELLED
            error = StepError(code="cancelled", message="the run was cancelled")
        elif outcome == "deadline":
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
            steps=results,
            started_at=started_at,
            finished_at=_now(),
            duration_ms=round((time.monotonic() - t_start) * 1000, 3),
            warnings=warnings,
            error=error,
        )


class _Heartbeat:
    """Renews a run's lease every ``interval`` seconds and relays cancel requests.

    A timer until the first beat is due, and a task only after that: most runs (single actions)
    end long before their first beat, and a timer costs far less to start and stop.
    """

    def __init__(self, recorder: RunRecorder, handle: RunHandle, interval: float) -> None:
        self.recorder = recorder
        self.handle = handle
        self.interval = interval
        self.task: asyncio.Task[None] | None = None
        self.timer = asyncio.get_running_loop().call_later(interval, self._first)

    def _first(self) -> None:
        self.task = asyncio.create_task(self._beat())

    async def _beat(self) -> None:
        while True:
            try:
                if await self.recorder.heartbeat(self.handle.run_id):
                    self.handle.cancel()
            except Exception as exc:  # the lease expires on its own if this keeps failing
                _log.warning("heartbeat_failed", run_id=self.handle.run_id, error=repr(exc))
            await asyncio.sleep(self.interval)

    def cancel(self) -> None:
        self.timer.cancel()
        if self.task is not None:
            self.task.cancel()


async def _next_finished(
    queue: asyncio.Queue[asyncio.Future[Any]], deadline: float | None
) -> list[asyncio.Future[Any]]:
    """Every finished future queued so far (waiting for at least one); [] at the deadline."""
    try:
        async with asyncio.timeout(
            None if deadline is None else max(0.0, deadline - time.monotonic())
        ):
            first = await queue.get()
    except TimeoutError:
        return []
    items = [first]
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


def _why_cancelled(outcome: str | None) -> str:
    if outcome == "cancelled":
        return "run cancelled before this step started"
    if outcome == "deadline":
        return "mission deadline reached before this step started"
    return "not started: an earlier step failed (fail_fast)"


def _error_dict(error: ActionError) -> dict[str, Any]:
    return {"code": error.code, "message": error.message, "status": error.status}
