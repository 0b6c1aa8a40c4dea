"""The async executor: drives a ``Plan`` with real concurrency, deadlines, retries and hooks.

One pure core (``mission.plan.Plan``, ``mission.outcome``), one async driver (this module).
``Executor`` is built once and runs many missions; each run is a ``_Run`` that owns the run's
state (step records, running tasks, the scope, what is not recorded yet) and its moves: start
what the plan allows, finish a step, report what the plan decided, stop running steps, flush
results to the recorder, and summarize. A step's attempts are ``attempts.Attempts``'s.

The executor never aborts without a result: a step that raises anything becomes ``failed``
with a code, and the mission always ends ``completed``, ``failed`` or ``cancelled`` with every
step accounted for.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ActionError, PuraifyError
from ..mission.compile import CompiledMission, CompiledStep, Template, TemplateSlot
from ..mission.model import MissionResult, StepError, StepResult, StepStatus
from ..mission.outcome import Interruption, cancelled_error, summarize, when_allows
from ..mission.plan import Plan
from ..redaction import RUNS, redact
from ..templating.render import TemplateEngine
from ..templating.scope import Scope
from .attempts import Attempts, StepRecord
from .credentials import Credentials
from .hooks import Hooks, HookSet, RunInfo
from .recorder import Heartbeat, NullRecorder, RunRecorder
from .resume import ResumeState
from .runner import StepRunner

__all__ = ["Executor", "RunHandle"]


def _now() -> datetime:
    return datetime.now(UTC)


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

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` when the run is cancelled (at once if it already is)."""
        self._listeners.append(listener)
        if self._cancelled:
            listener()

    def remove_listener(self, listener: Callable[[], None]) -> None:
        """Stop calling ``listener``."""
        self._listeners.remove(listener)


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
        output_aliases: Mapping[str, Mapping[str, str]] | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.runner = runner
        self.credentials = credentials  # what ``{{ secrets.<platform> }}`` reads
        self.recorder: RunRecorder = recorder or NullRecorder()
        self.templates = templates or TemplateEngine()
        self.hooks = hooks or HookSet()
        self.env = env or {}
        self.output_aliases = output_aliases or {}
        self.attempts = Attempts(runner, self.recorder, self.hooks, rng or random.Random())

    async def execute(
        self,
        compiled: CompiledMission,
        *,
        handle: RunHandle | None = None,
        context: Mapping[str, Any] | None = None,
        resume: ResumeState | None = None,
    ) -> MissionResult:
        """Run a compiled mission to a terminal state; its result lists steps in declaration
        order. ``resume``: where an earlier execution of the run (or the run being retried)
        left off; those results are kept, and those steps do not run again."""
        run = _Run(self, compiled, handle or RunHandle(), context or {}, resume or ResumeState())
        if self.credentials is not None:  # what its project's steps were given stays hidden
            RUNS.bind(run.info.run_id, self.credentials.project_id)
        interval = self.recorder.heartbeat_interval
        heartbeat = (
            Heartbeat(self.recorder, run.info.run_id, interval, run.handle.cancel)
            if interval
            else None
        )
        try:
            await self.hooks.on_run_start(run.info)
            while True:
                if run.interruption is None:
                    await run.start_ready()
                if not run.running:
                    break
                await run.settle(await run.next_finished())
        except asyncio.CancelledError:
            # The caller's task was cancelled (e.g. Ctrl-C at the top): stop cleanly, re-raise.
            await run.abort()
            RUNS.end(run.info.run_id)
            raise
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            run.close()
        try:
            result = run.result()
            await self.recorder.run_finished(result, run.take_unrecorded())
            await self.hooks.on_run_end(run.info, result)
        finally:
            RUNS.end(run.info.run_id)  # what it was given stays hidden a while, then goes
        return result


class _Run:
    """One execution of one compiled mission: the state its loop shares, and its moves."""

    def __init__(
        self,
        executor: Executor,
        compiled: CompiledMission,
        handle: RunHandle,
        context: Mapping[str, Any],
        resume: ResumeState,
    ) -> None:
        mission = compiled.mission
        self.executor = executor
        self.handle = handle
        self.info = RunInfo(handle.run_id, mission, _user_of(context))
        self.records = {c.id: StepRecord(c) for c in compiled.steps}
        self.plan = Plan.from_mission(mission)
        self.scope = Scope(run_id=handle.run_id, mission=mission, context=context, env=executor.env)
        self.limit = mission.config.max_concurrent_steps
        self.resume = resume
        self.started_at, self.t_start = _now(), time.monotonic()
        timeout = mission.config.timeout_seconds
        self.deadline = self.t_start + timeout if timeout else None
        self.running: dict[asyncio.Future[Any], str] = {}
        self.unrecorded: list[tuple[StepResult, int | None]] = []
        self.interruption: Interruption | None = None
        # Finished tasks report here, so each completion costs O(1) instead of re-waiting on
        # every running task (asyncio.wait registers a callback on each, every time).
        self.finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        # Resolved by handle.cancel(): a plain future, not a task waiting on an event.
        self.cancel_wait: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.cancel_wait.add_done_callback(self.finished.put_nowait)
        for sid, old in resume.restore.items():
            rec = self.records[sid] = StepRecord.restored(self.records[sid].compiled, old)
            self._publish(rec)
        if resume.restore:
            self.plan.restore({sid: r.status for sid, r in resume.restore.items()})
        for sid, n in resume.attempts_done.items():
            self.records[sid].attempts = n
        handle.add_listener(self._on_cancel)

    def _on_cancel(self) -> None:
        if not self.cancel_wait.done():
            self.cancel_wait.set_result(None)

    def close(self) -> None:
        """Detach from the handle (the run is over, or its task was cancelled)."""
        self.handle.remove_listener(self._on_cancel)
        self.cancel_wait.cancel()

    # -- moves -------------------------------------------------------------------------------

    async def start_ready(self) -> None:
        """Start every step the plan allows now, up to the concurrency limit; steps that
        ``when`` skips or that a resume ends at once are decided on the way."""
        while True:
            starting: list[StepRecord] = []
            for step_id in self.plan.ready(self.limit - len(self.running)):
                rec = self.records[step_id]
                preset = self.resume.fail_on_start.get(step_id)
                if preset is not None:
                    rec.fence = self.resume.interrupted.get(step_id)
                    await self.finish(step_id, StepStatus.FAILED, preset)
                    continue
                skip = self._when_says_skip(rec.compiled)
                if skip is not None:
                    rec.output = None
                    if skip.code == "when_false":
                        await self.finish(step_id, StepStatus.SKIPPED)
                    else:
                        rec.attempts = 0
                        await self.finish(step_id, StepStatus.FAILED, skip)
                    continue
                starting.append(rec)
            if starting:
                # the results reported so far (what these steps may depend on, `when` skips
                # decided just now) become durable in the transaction that starts them
                fences = await self.executor.recorder.attempts_started(
                    self.info.run_id,
                    [(r.step.id, r.attempts + 1) for r in starting],
                    self.take_unrecorded(),
                )
                for rec in starting:
                    rec.fence = fences[rec.step.id]
                    task: asyncio.Future[Any] = asyncio.create_task(self._run_step(rec))
                    self.running[task] = rec.step.id
                    task.add_done_callback(self.finished.put_nowait)
            elif self.running:
                await self.flush()  # nothing starts now: results are durable all the same
            if self.running or not self.plan.has_ready():
                return  # else `when` skips freed more steps

    async def next_finished(self) -> list[asyncio.Future[Any]]:
        """Every finished task queued so far (waiting for at least one); [] at the deadline."""
        deadline = self.deadline
        try:
            async with asyncio.timeout(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            ):
                first = await self.finished.get()
        except TimeoutError:
            return []
        items = [first]
        while not self.finished.empty():
            items.append(self.finished.get_nowait())
        return items

    async def settle(self, done: list[asyncio.Future[Any]]) -> None:
        """Act on what ``next_finished`` returned: a cancel, the deadline, finished steps."""
        if self.interruption is None and self.cancel_wait in done:
            await self.interrupt("cancelled")
            return
        if self.interruption is None and not done:
            await self.interrupt("deadline")
            return
        for task in done:
            if task is self.cancel_wait or task not in self.running:
                continue  # a task stopped above reports late; it is already settled
            sid = self.running.pop(task)
            task.result()  # _run_step never raises; surface bugs loudly
            await self.finish(sid, self.records[sid].status)
        if self.plan.stopping and self.running and self.interruption is None:
            failed = next(
                (
                    r.step.id
                    for r in self.records.values()
                    if r.status is StepStatus.FAILED and not r.step.continue_on_error
                ),
                None,
            )
            # Cleanup and fallback steps (all_done / one_failed) keep running.
            await self.stop(
                StepStatus.CANCELLED,
                StepError(
                    code="cancelled", message=f"cancelled: step {failed!r} failed (fail_fast)"
                ),
                handlers_too=False,
            )

    async def interrupt(self, why: Interruption) -> None:
        """Cancel every pending step and stop every running one (cancel, or the deadline)."""
        self.interruption = why
        await self.decide(self.plan.cancel())
        if why == "cancelled":
            await self.stop(
                StepStatus.CANCELLED, StepError(code="cancelled", message="run cancelled")
            )
        else:
            seconds = self.info.mission.config.timeout_seconds
            await self.stop(
                StepStatus.FAILED,
                StepError(
                    code="timeout",
                    retryable=True,
                    message=f"mission deadline of {seconds}s reached",
                ),
            )

    async def finish(
        self, step_id: str, status: StepStatus, error: StepError | None = None
    ) -> None:
        """A started (or preset, or ``when``-skipped) step ended: tell the plan, report the
        steps that decided, then the step itself."""
        rec = self.records[step_id]
        rec.status = status
        if error is not None:
            rec.error = error
        rec.finished_at = rec.finished_at or _now()
        if rec.t0 is not None and rec.duration_ms is None:
            rec.duration_ms = round((time.monotonic() - rec.t0) * 1000, 3)
        self._publish(rec)
        await self.decide(self.plan.complete(step_id, status))
        await self.report(rec)

    async def decide(self, decisions: Iterable[tuple[str, StepStatus]]) -> None:
        """Record and report steps the plan decided without running them."""
        for step_id, status in decisions:
            rec = self.records[step_id]
            rec.status = status
            rec.finished_at = _now()
            if status is StepStatus.CANCELLED:
                rec.error = cancelled_error(self.interruption)
            await self.report(rec)

    async def stop(
        self, status: StepStatus, error: StepError, *, handlers_too: bool = True
    ) -> None:
        """Cancel running steps (``handlers_too``: cleanup and fallback steps as well) and
        finish them with ``status`` and ``error``."""
        tasks = [
            t
            for t, sid in self.running.items()
            if handlers_too or self.records[sid].step.trigger_rule == "all_success"
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            await self.finish(self.running.pop(task), status, error)

    async def abort(self) -> None:
        """The caller's task was cancelled: settle every step as cancelled, without reporting."""
        self.interruption = "cancelled"
        for sid, status in self.plan.cancel():
            self.records[sid].status = status
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            rec = self.records[self.running.pop(task)]
            rec.status = StepStatus.CANCELLED
            rec.error = StepError(code="cancelled", message="run cancelled")

    async def report(self, rec: StepRecord) -> None:
        result = rec.result()
        self.unrecorded.append((result, rec.fence))
        await self.executor.hooks.after_step(self.info, result)

    async def flush(self) -> None:
        """Record reported results: durable before anything that depends on them starts (the
        last results of a run are written with the run's end instead, in one transaction)."""
        if self.unrecorded:
            await self.executor.recorder.steps_finished(self.info.run_id, self.take_unrecorded())

    def take_unrecorded(self) -> list[tuple[StepResult, int | None]]:
        batch, self.unrecorded = self.unrecorded, []
        return batch

    def result(self) -> MissionResult:
        """The run's result (every step terminal)."""
        return summarize(
            self.info.mission,
            self.info.run_id,
            [self.records[s.id].result() for s in self.info.mission.steps],
            self.interruption,
            started_at=self.started_at,
            finished_at=_now(),
            duration_ms=round((time.monotonic() - self.t_start) * 1000, 3),
        )

    def _publish(self, rec: StepRecord) -> None:
        """Make a finished step's output readable by later steps: a successful step's, and a
        failed one's when its action left one (a command's exit code and output, an HTTP error
        response), so a ``continue_on_error`` or fallback step can look at what went wrong."""
        if rec.status is StepStatus.SUCCESS or (
            rec.status is StepStatus.FAILED and rec.output is not None
        ):
            aliases = self.executor.output_aliases.get(rec.compiled.action)
            self.scope.add_output(rec.step.id, rec.output or {}, aliases)

    # -- one step ----------------------------------------------------------------------------

    def _when_says_skip(self, step: CompiledStep) -> StepError | None:
        if step.when is None:
            return None
        templates = self.executor.templates
        try:
            value = templates.render(step.when, self.scope.names(step.when.roots), field="when")
        except PuraifyError as exc:
            return StepError(code=exc.code, message=exc.message)
        if when_allows(value):
            return None
        return StepError(code="when_false", message=f"`when` was false: {step.step.when}")

    async def _run_step(self, rec: StepRecord) -> None:
        step = rec.compiled
        rec.started_at, rec.t0 = _now(), time.monotonic()
        if "secrets" in step.roots:
            # rendered at each attempt, the vault asked then: a vault that could not be asked
            # is retried as the step is

            async def rendered() -> Mapping[str, Any]:
                return self._render(step, await self._secrets(step))

            await self.executor.attempts.run(self.info, rec, step, rendered, step.params)
            return
        try:
            parameters = self._render(step, None)
        except PuraifyError as exc:
            rec.attempts = 1
            rec.status = StepStatus.FAILED
            rec.error = StepError(
                code=exc.code, message=str(redact(str(exc.message), self.info.run_id))
            )
            return
        await self.executor.attempts.run(self.info, rec, step, parameters, step.params)

    async def _secrets(self, step: CompiledStep) -> dict[str, Any]:
        """The credentials the step's templates read (``secrets.<platform>``), fetched now."""
        platforms: set[str] = set()
        for template in _templates(step.templated):
            for ref in template.references:
                if ref[0] != "secrets":
                    continue
                if len(ref) < 2:
                    raise PuraifyError(
                        "`secrets` is read by platform: {{ secrets.<platform> }}",
                        code="template_error",
                    )
                platforms.add(ref[1])
        if not platforms:
            return {}
        if self.executor.credentials is None:
            raise ActionError(
                "this engine has no vault, so {{ secrets.* }} cannot be read",
                code="credential_missing",
            )
        return await self.executor.credentials.for_templates(
            platforms, self.info.user_id, run_id=self.info.run_id
        )

    def _render(self, step: CompiledStep, secrets: Mapping[str, Any] | None) -> Mapping[str, Any]:
        parameters = step.step.parameters
        if not step.templated:
            return parameters
        names = self.scope.names(step.roots)
        if secrets is not None:
            names["secrets"] = secrets
        return {
            k: self._fill(step.templated[k], names) if k in step.templated else v
            for k, v in parameters.items()
        }

    def _fill(self, value: Any, names: Mapping[str, Any]) -> Any:
        if isinstance(value, TemplateSlot):
            return self.executor.templates.render(value.template, names, field=value.field)
        if isinstance(value, dict):
            return {k: self._fill(v, names) for k, v in value.items()}
        if isinstance(value, list):
            return [self._fill(v, names) for v in value]
        return value


def _templates(value: Any) -> Iterator[Template]:
    if isinstance(value, TemplateSlot):
        yield value.template
    elif isinstance(value, dict):
        for v in value.values():
            yield from _templates(v)
    elif isinstance(value, list):
        for v in value:
            yield from _templates(v)


def _user_of(context: Mapping[str, Any]) -> str | None:
    """The user a run is for: ``context.user.id`` (what the API's request shapes fill in), or
    ``context.user_id``."""
    user = context.get("user")
    found = user.get("id") if isinstance(user, Mapping) else context.get("user_id")
    return str(found) if isinstance(found, str | int) and not isinstance(found, bool) else None
