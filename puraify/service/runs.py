"""The run lifecycle: submit, run one action, wait, cancel, retry, resume, and live events.

Every edge (the HTTP API, the command line, later the workers) drives runs through
``RunService``; none of them builds an engine or opens the store itself. A run is committed
before its id is shown, and keeps the safety profile, project and workspace it was created
under for every later resume or retry, whichever edge asks.

A mission passes the static safety analysis before it is committed (the mission spec's
loader, safety validation, executor order), at the operator's ``safety_level``; a failing
verdict refuses it (``safety_refused``) and nothing runs. A single action is a step, judged by
the runtime guards every step passes; resumes and retries continue runs already admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import structlog
from cachetools import LRUCache

from ..control.policy import EngineGate, Policy
from ..errors import PuraifyError, SafetyRefused, StoreError
from ..mission.compile import CompiledMission
from ..mission.loader import mission_from_data
from ..mission.model import Mission, MissionResult, StepResult
from ..mission.safety import SafetyReport
from ..observability.events import EventBroker
from ..runtime.credentials import Credentials, CredentialSource
from ..runtime.engine import Engine, http_client, platform_guard
from ..runtime.executor import RunHandle
from ..runtime.hooks import Hooks
from ..runtime.prepare import Preparer
from ..runtime.resume import ResumeState, resume_plan, reusable_results
from ..runtime.sandbox import ActionPool
from ..settings import Mode, Profile, SafetyLevel, Settings
from ..store import RunRecord, RunStore
from .workspaces import workspace_for

__all__ = ["ActionOutcome", "Origin", "RunService"]

_log = structlog.get_logger("puraify.service")

_ENGINES = 256  # workspaces (projects) whose engine stays built


@dataclass(frozen=True)
class Origin:
    """What a run was created under, and runs under for ever after."""

    profile: Mode
    project_id: str | None
    workspace: Path


@dataclass(frozen=True)
class ActionOutcome:
    """One single action's end: its run, the resolved action and the step's result (``None``
    when it was still running when the wait ended)."""

    run_id: str
    action: str
    platform: str
    step: StepResult | None
    duration_ms: float


@dataclass
class _Live:
    task: asyncio.Task[MissionResult]
    handle: RunHandle


class RunService:
    """Starts, waits for, cancels, retries and resumes runs; one per process (built by
    ``compose``). Engines are built on first use, one per (profile, workspace), sharing one
    guarded HTTP client per profile."""

    def __init__(
        self,
        *,
        settings: Settings,
        profile: Profile,
        store: RunStore,
        preparer: Preparer,
        broker: EventBroker,
        hooks: Sequence[Hooks],
        environ: Mapping[str, str],
        cwd: Path,
        policy: Policy | None = None,
        credentials: CredentialSource | None = None,
    ) -> None:
        self.settings = settings
        self.credentials = credentials  # the vault, asked at each step that needs it
        self.policy = policy  # Engine Control, asked before every step (by the gates below)
        self._gates: dict[Mode, EngineGate] = {}
        self.profile = profile
        self.store = store
        self.preparer = preparer
        self.broker = broker
        self.hooks = [broker, *hooks]
        self._environ = dict(environ)
        self._cwd = cwd
        self._http: dict[Mode, httpx.AsyncClient] = {}
        # one budget and one set of circuit breakers per platform credential, for every engine
        self._platforms = platform_guard(settings)
        # an engine is cheap to rebuild and owns nothing that needs closing (the HTTP clients
        # are shared), so one dropped from the cache while a run still uses it is harmless
        self._engines: LRUCache[tuple[Mode, Path, str | None], Engine] = LRUCache(maxsize=_ENGINES)
        self.live: dict[str, _Live] = {}
        # CPU-bound actions of every engine run in one pool of workers (started on first use)
        # in the server profile one project holds at most all workers but one, so that another
        # project's steps always find one
        self._pool = (
            ActionPool(
                settings.action_workers,
                max_memory_bytes=settings.action_max_memory_bytes,
                per_workspace=settings.action_workers - 1 if profile.server else None,
            )
            if settings.action_workers
            else None
        )

    # -- composition seams ---------------------------------------------------------------------

    def origin(self, project_id: str | None) -> Origin:
        """Where a new run of ``project_id`` would run in this process's profile."""
        workspace = workspace_for(self.settings, self.profile, project_id, cwd=self._cwd)
        return Origin(self.profile.name, project_id, workspace)

    def engine(self, origin: Origin) -> Engine:
        """The engine of a profile, workspace and project (built once; the policy, vault and
        worker seams plug in here)."""
        key = (origin.profile, origin.workspace, origin.project_id)
        engine = self._engines.get(key)
        if engine is None:
            profile = self.settings.profile(origin.profile)
            if origin.profile not in self._http:
                self._http[origin.profile] = http_client(self.settings, profile)
            engine = Engine.from_settings(
                self.settings,
                workspace=origin.workspace,
                hooks=self.hooks,
                environ=self._environ,
                recorder=self.store,
                profile=profile,
                http=self._http[origin.profile],
                preparer=self.preparer,
                pool=self._pool,
                policy=self._gate(origin.profile, profile),
                credentials=(
                    Credentials(self.credentials, origin.project_id)
                    if self.credentials is not None
                    else None
                ),
                platforms=self._platforms,
            )
            self._engines[key] = engine
        return engine

    async def policy_preview(
        self, mission: Mission, project_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Each step's verdict from Engine Control now, for a dry run or a validation: not
        audited, nothing changed. A policy that cannot be asked says so per step."""
        gate = self._gate(self.profile.name, self.profile)
        if gate is None:
            return []
        found: list[dict[str, Any]] = []
        for step in mission.steps:
            action = self.preparer.registry.get(step.step_type)
            row: dict[str, Any] = {
                "step_id": step.id,
                "platform": action.platform,
                "action": action.name,
            }
            try:
                verdict = await gate.preview(action)
            except PuraifyError as exc:
                row.update(allowed=False, reason=exc.code, message=exc.message)
            else:
                row.update(allowed=verdict.allowed, reason=verdict.reason, message=verdict.message)
            found.append(row)
        return found

    def _gate(self, mode: Mode, profile: Profile) -> EngineGate | None:
        """The gate of runs of ``profile``: the execution service's engine asks the policy;
        a dangerous action's flag, where nobody set it, is on where the profile runs
        commands."""
        if self.policy is None:
            return None
        gate = self._gates.get(mode)
        if gate is None:
            gate = self._gates[mode] = EngineGate(
                self.policy,
                self.settings.control_engine_id,
                flag_default=profile.commands_enabled,
            )
        return gate

    def _origin_of(self, record: RunRecord) -> Origin:
        """Where a stored run runs again. A process in the server profile never runs a run of
        the local profile (created while the operator had set ``mode = local``): whoever can
        reach it must not get those powers back by asking for a retry or a resume."""
        profile: Mode = "local" if record.profile == "local" else "server"
        if profile == "local" and self.profile.server:
            raise PuraifyError(
                f"run {record.id} was created in the local safety profile; this server runs "
                "only server-profile runs (`puraify runs retry` or `runs resume` on the "
                "operator's machine can run it again)",
                code="profile_refused",
                run_id=record.id,
            )
        workspace = (
            Path(record.workspace)
            if record.workspace
            else workspace_for(
                self.settings, self.settings.profile(profile), record.project_id, cwd=self._cwd
            )
        )
        return Origin(profile, record.project_id, workspace)

    # -- the lifecycle -------------------------------------------------------------------------

    def _start(
        self,
        run_id: str,
        mission: CompiledMission | Mission,
        context: Mapping[str, Any],
        origin: Origin,
        resume: ResumeState | None = None,
    ) -> None:
        handle = RunHandle(run_id=run_id)
        engine = self.engine(origin)

        async def execute() -> MissionResult:
            try:
                return await engine.run(mission, handle=handle, context=context, resume=resume)
            except Exception as exc:
                # a fault of the engine or the store, not of a step (those end as results): the
                # run ends failed with the reason, so it neither stays running nor is resumed
                # into the same fault, and other runs go on
                _log.exception("run_crashed", run_id=run_id)
                with contextlib.suppress(Exception):
                    await self.store.abandon(run_id, f"the engine failed: {type(exc).__name__}")
                raise

        task = asyncio.create_task(execute())
        self.live[run_id] = _Live(task, handle)

        def done(t: asyncio.Task[MissionResult]) -> None:
            self.live.pop(run_id, None)
            self.store.forget(run_id)

        task.add_done_callback(done)

    async def submit(
        self,
        mission: CompiledMission,
        *,
        project_id: str | None,
        context: Mapping[str, Any],
        idempotency_key: str | None = None,
        defer: bool = False,
        safety_level: SafetyLevel | None = None,
        safety: SafetyReport | None = None,
    ) -> tuple[str, bool]:
        """Commit a run of a validated, compiled mission and start it; ``(run_id, created)``.
        A known ``idempotency_key`` gives back its run, continued if its engine is gone.
        ``defer``: the caller shows the run id only after the run ended, so the run may be
        committed with its first attempt. ``safety_level``: the operator's own choice on the
        command line, instead of the configured one (``SafetyRefused`` when it fails).
        ``safety``: the mission's analysis when the caller already made it (``Prepared``)."""
        self.check_safety(mission.mission, safety_level, report=safety)
        return await self._submit(
            mission,
            project_id=project_id,
            context=context,
            idempotency_key=idempotency_key,
            defer=defer,
        )

    def check_safety(
        self,
        mission: Mission,
        level: SafetyLevel | None = None,
        *,
        report: SafetyReport | None = None,
    ) -> None:
        """Refuse ``mission`` (``SafetyRefused``) when the analysis fails it at ``level`` (the
        configured ``safety_level`` by default); ``off`` admits every mission. ``report``: the
        analysis of ``mission`` if already made."""
        level = level or self.settings.safety_level
        if level == "off":
            return
        if report is None:
            report = self.preparer.analyze(mission)
        if not report.verdict(level):
            raise SafetyRefused(report.to_dict(level))

    async def _submit(
        self,
        mission: CompiledMission,
        *,
        project_id: str | None,
        context: Mapping[str, Any],
        idempotency_key: str | None = None,
        defer: bool = False,
    ) -> tuple[str, bool]:
        origin = self.origin(project_id)
        run_id, created = await self.store.create_run(
            mission.mission,
            context=dict(context),
            project_id=project_id,
            idempotency_key=idempotency_key,
            workspace=str(origin.workspace),
            profile=origin.profile,
            defer=defer,
        )
        if created:
            self._start(run_id, mission, context, origin)
        else:
            await self.resume(run_id, project_id=project_id)
        return run_id, created

    async def wait(self, run_id: str, timeout: float | None = None) -> MissionResult | None:  # noqa: ASYNC109
        """The run's result once finished; ``None`` if it is still running after ``timeout``
        (or running in another process)."""
        live = self.live.get(run_id)
        if live is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(live.task), timeout)
            except TimeoutError:
                return None
        record = await self.store.get(run_id)
        return record.result() if record.finished else None

    def interrupt(self, run_id: str) -> None:
        """Cancel a run executing in this process now (Ctrl-C, SIGTERM)."""
        live = self.live.get(run_id)
        if live is not None:
            live.handle.cancel()

    async def cancel(self, run_id: str, *, project_id: str | None = None) -> str:
        """Cancel a run; its status afterwards. A run executing elsewhere is stopped by its
        engine at the next heartbeat; a run with no live engine ends now."""
        await self.store.get(run_id, project_id=project_id)  # another project's run: not found
        live = self.live.get(run_id)
        if live is not None:
            live.handle.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(live.task), 10)
            return (await self.store.get(run_id)).status.value
        return (await self.store.request_cancel(run_id)).value

    async def retry(self, run_id: str, *, project_id: str | None = None) -> str:
        """A new run of a finished run's mission that reuses its successful outputs; started
        under the old run's profile, project and workspace. Returns the new run's id."""
        record = await self.store.get(run_id, project_id=project_id)
        origin = self._origin_of(record)
        if not record.finished:
            raise StoreError(
                f"run {run_id} has not finished; cancel or resume it first", code="run_busy"
            )
        reuse = reusable_results(record)
        new_id, _ = await self.store.create_run(
            record.mission,
            context=record.context,
            parent_run_id=run_id,
            reuse=reuse,
            project_id=record.project_id,
            workspace=str(origin.workspace),
            profile=origin.profile,
        )
        self._start(new_id, record.mission, record.context, origin, ResumeState(restore=reuse))
        return new_id

    async def resume(self, run_id: str, *, project_id: str | None = None) -> bool:
        """Continue a run whose engine stopped, under the profile it was created with; False
        when it has already finished. ``run_busy`` when a live engine executes it."""
        if run_id in self.live:
            return True
        record = await self.store.get(run_id, project_id=project_id)
        if record.finished:
            return False
        self._origin_of(record)  # refused before the lease is taken
        if not await self.store.acquire(run_id):
            raise StoreError(
                f"run {run_id} is being executed by a live engine ({record.lease_owner})",
                code="run_busy",
            )
        record = await self.store.get(run_id)
        origin = self._origin_of(record)
        plan = resume_plan(record, self.preparer.registry)
        # attempts cut by the dead engine end now, except unsafe ones: those end with their
        # step (unknown_outcome) when the executor decides it
        await self.store.attempts_interrupted(
            run_id, [sid for sid in plan.attempts_done if sid not in plan.fail_on_start]
        )
        self._start(run_id, record.mission, record.context, origin, plan)
        return True

    async def resume_orphans(self) -> list[str]:
        """Continue every run whose engine is gone (what a server does at start). A process in
        the server profile leaves runs created in the local profile to the operator's
        ``puraify runs resume``: it never executes work with powers its own callers lack."""
        resumed = []
        for run_id in await self.store.orphans():
            try:
                if self.profile.server and (await self.store.get(run_id)).profile != "server":
                    continue
                if run_id not in self.live and await self.resume(run_id):
                    resumed.append(run_id)
            except PuraifyError as exc:
                if exc.code != "run_busy":  # taken by another process meanwhile: its job
                    _log.error("resume_failed", run_id=run_id, error=exc.to_dict())
        if resumed:
            _log.info("runs_resumed", count=len(resumed), run_ids=resumed)
        return resumed

    # -- single actions ------------------------------------------------------------------------

    def resolve_action(self, action: str, platform: str | None) -> str:
        """The canonical step type of an action name (and platform), or ``unknown_action``."""
        candidates = [action] + ([f"{platform}.{action}"] if platform else [])
        for name in candidates:
            canonical = self.preparer.registry.canonical(name)
            if canonical is not None:
                return canonical
        raise PuraifyError(
            f"unknown action {action!r}"
            + (f" on platform {platform!r}" if platform else "")
            + "; GET /actions or `puraify actions list` lists what this engine can do",
            code="unknown_action",
            field="action",
        )

    async def run_action(
        self,
        action: str,
        *,
        platform: str | None,
        parameters: Mapping[str, Any],
        context: Mapping[str, Any],
        project_id: str | None,
        idempotency_key: str | None = None,
    ) -> ActionOutcome:
        """Run one action as a one-step run and wait for it (``execute_timeout_seconds``, which
        is also the step's timeout). A known ``idempotency_key`` gives back its run, continued
        if its engine is gone."""
        started = time.perf_counter()
        step_type = self.resolve_action(action, platform)
        timeout = self.settings.execute_timeout_seconds
        loaded = mission_from_data(
            {
                "name": f"action {step_type}",
                "steps": [
                    {
                        "id": "action",
                        "step_type": step_type,
                        "parameters": dict(parameters),
                        "timeout_seconds": timeout,
                    }
                ],
            }
        )
        validated = self.preparer.validate(loaded, context_names=list(context))
        # the run id is shown only with the result: the run is committed with its attempt
        # a single action is one step: the runtime guards judge it, as they judge every step
        run_id, _ = await self._submit(
            validated.compiled,
            project_id=project_id,
            context=context,
            idempotency_key=idempotency_key,
            defer=idempotency_key is None,
        )
        try:
            result = await self.wait(run_id, timeout + 5)
            step = result.steps[0] if result is not None else None
        except Exception:
            # the engine failed around the action (the run ended failed with the reason): the
            # caller learns what the store knows of it, never a bare 500 that invites a retry
            # of an action that may have run
            record = await self.store.get(run_id)
            step = record.steps[0].result(record.steps[0].step_id)
        return ActionOutcome(
            run_id=run_id,
            action=step_type,
            platform=platform or self.preparer.registry.get(step_type).platform,
            step=step,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    # -- live events ---------------------------------------------------------------------------

    async def events(
        self, run_id: str, *, project_id: str | None = None, poll_seconds: float = 0.5
    ) -> AsyncGenerator[dict[str, Any] | None, None]:
        """A run's step transitions as they happen, ending with ``run_finished``.

        Steps already finished are replayed first. Transitions of a run executing in this
        process come from its hooks at once; those of a run executing in another process (a
        sibling worker, a CLI) are read from the store every ``poll_seconds``. ``None`` is
        yielded on quiet ticks so that the caller can send keep-alives and notice a client
        that went away, and once right after the run was found (a caller may await that first
        ``None`` to learn "not found" before it starts answering)."""
        await self.store.get(run_id, project_id=project_id)  # another project's run: not found
        queue = self.broker.subscribe(run_id)  # before reading state: no transition is missed
        seen: dict[str, str] = {}
        try:
            yield None
            replayed, read_store = True, True
            while True:
                if read_store:  # first, and whenever the run executes in another process
                    record = await self.store.get(run_id)
                    for stored in _store_events(record, seen, replayed=replayed):
                        yield stored
                    if record.finished:
                        yield {"event": "run_finished", "status": record.status.value}
                        return
                    replayed = False
                here = run_id in self.live
                try:
                    event = await asyncio.wait_for(queue.get(), 15.0 if here else poll_seconds)
                except TimeoutError:
                    read_store = not here
                    yield None
                    continue
                read_store = False
                if event.get("event") == "step_finished":
                    if seen.get(event["step_id"]) == event["status"]:
                        continue  # already sent from the store
                    seen[event["step_id"]] = event["status"]
                yield event
                if event.get("event") == "run_finished":
                    return
        finally:
            self.broker.unsubscribe(run_id, queue)

    # -- shutdown ------------------------------------------------------------------------------

    async def shutdown(self, grace_seconds: float) -> None:
        """Let live runs finish for ``grace_seconds``; cut the rest, which stay resumable."""
        tasks = [live.task for live in self.live.values()]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for client in self._http.values():
            await client.aclose()
        self._http.clear()
        self._engines.clear()
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)


def _store_events(
    record: RunRecord, seen: dict[str, str], *, replayed: bool
) -> list[dict[str, Any]]:
    out = []
    for row in record.steps:
        if row.status.terminal and seen.get(row.step_id) != row.status.value:
            seen[row.step_id] = row.status.value
            event: dict[str, Any] = {
                "event": "step_finished",
                "step_id": row.step_id,
                "status": row.status.value,
                "attempts": row.attempts,
            }
            if replayed:
                event["replayed"] = True
            out.append(event)
    return out
