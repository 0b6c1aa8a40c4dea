"""The composition root for running missions: ``Engine`` wires registry, templates, guards,
the shared HTTP client, the runner, the executor and hooks. Built once per process by the CLI
(or, later, the app factory and the worker) from ``Settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx

from ..actions import ActionRegistry, default_registry
from ..errors import Issue
from ..mission.compile import CompiledMission
from ..mission.loader import LoadedMission, load_mission
from ..mission.model import Mission, MissionResult
from ..mission.parse import ParseLimits
from ..mission.plan import Plan
from ..mission.safety import SafetyReport, analyze
from ..mission.validate import ValidatedMission, validate_mission
from ..settings import Settings
from ..templating.render import TemplateEngine
from .executor import Executor, RunHandle
from .guards import CommandPolicy, Jail, SsrfPolicy, SsrfTransport
from .hooks import Hooks, HookSet
from .recorder import RunRecorder
from .resume import ResumeState
from .runner import InProcessRunner, StepRunner
from .transport import AiohttpTransport

__all__ = ["Engine", "Prepared"]


@dataclass(frozen=True)
class Prepared:
    """A mission that loaded and validated, compiled, with its plan levels and safety report."""

    mission: Mission
    warnings: tuple[Issue, ...]
    levels: list[list[str]]
    critical_path: list[str]
    safety: SafetyReport
    compiled: CompiledMission


class Engine:
    """Load, validate, plan and run missions with one set of guards and one HTTP client."""

    def __init__(
        self,
        *,
        registry: ActionRegistry,
        templates: TemplateEngine,
        runner: StepRunner,
        http: httpx.AsyncClient | None = None,
        hooks: Iterable[Hooks] = (),
        parse_limits: ParseLimits = ParseLimits(),
        max_steps: int | None = None,
        step_timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        recorder: RunRecorder | None = None,
        workspace: Path | None = None,
    ) -> None:
        self.registry = registry
        self.workspace = workspace
        self.templates = templates
        self.runner = runner
        self.http = http
        self.hooks = HookSet(hooks)
        self.parse_limits = parse_limits
        self.max_steps = max_steps
        self.step_timeout = step_timeout
        self.executor = Executor(
            runner,
            templates=templates,
            hooks=self.hooks,
            env=env,
            recorder=recorder,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        workspace: Path | None = None,
        hooks: Iterable[Hooks] = (),
        registry: ActionRegistry | None = None,
        environ: Mapping[str, str] | None = None,
        recorder: RunRecorder | None = None,
    ) -> Engine:
        """Build the engine an operator configured; ``environ`` is the process environment
        (read by the caller, which is an edge)."""
        environ = environ if environ is not None else {}
        registry = registry or default_registry()
        templates = TemplateEngine(
            max_output_bytes=settings.template_max_output_bytes,
            max_render_seconds=settings.template_max_render_seconds,
        )
        root = workspace or settings.workspace or Path.cwd()
        jail = Jail(root, protected=settings.protected_paths)
        policy = SsrfPolicy(
            allow_hosts=settings.ssrf_allow_hosts,
            allow_loopback=settings.allow_loopback,
            only_allowlisted=settings.egress_only_allowlisted,
        )
        http = httpx.AsyncClient(
            transport=SsrfTransport(policy, AiohttpTransport()),
            trust_env=False,
            # One client serves every run and project: a cookie one platform sets must never
            # ride along on another run's request, so the client keeps none.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            max_redirects=settings.http_max_redirects,
            headers={"User-Agent": "puraify/0.1"},
        )
        commands = CommandPolicy(
            enabled=settings.commands_enabled,
            allow_shell=settings.command_allow_shell,
            env_allow=settings.command_env_allow,
            max_output_bytes=settings.command_max_output_bytes,
            base_env=environ,
        )
        limits = {
            "http_max_response_bytes": settings.http_max_response_bytes,
            "file_max_read_bytes": settings.file_max_read_bytes,
            "file_search_max_results": settings.file_search_max_results,
        }
        runner = InProcessRunner(
            registry, http=http, workspace=jail, commands=commands, limits=limits
        )
        allow = settings.env_allow
        env = dict(environ) if "*" in allow else {k: environ[k] for k in allow if k in environ}
        return cls(
            registry=registry,
            templates=templates,
            runner=runner,
            http=http,
            hooks=hooks,
            parse_limits=ParseLimits(
                max_bytes=settings.max_document_bytes,
                max_depth=settings.max_document_depth,
                max_aliases=settings.max_yaml_aliases,
            ),
            max_steps=settings.max_steps,
            step_timeout=settings.step_timeout_seconds,
            env=env,
            recorder=recorder,
            workspace=jail.root,
        )

    # -- prepare -------------------------------------------------------------------------------

    def load(
        self, source: str | bytes | Path, *, strict: bool = False, filename: str | None = None
    ) -> LoadedMission:
        """Parse and model a mission document (``LoadError`` / ``ValidationError`` on failure)."""
        return load_mission(source, strict=strict, limits=self.parse_limits, filename=filename)

    def validate(
        self, loaded: LoadedMission, *, strict: bool = False, context_names: Iterable[str] = ()
    ) -> ValidatedMission:
        """Check the mission against the registry and template rules; a valid one comes back
        compiled (``ValidatedMission.compiled``, what ``run`` executes)."""
        return validate_mission(
            loaded,
            self.registry,
            self.templates,
            context_names=context_names,
            strict=strict,
            max_steps=self.max_steps,
            default_step_timeout=self.step_timeout,
        )

    def compile(self, mission: Mission, *, context_names: Iterable[str] = ()) -> CompiledMission:
        """Validate and compile a mission that was loaded earlier (a stored run's, on resume or
        retry); ``ValidationError`` if it is not valid here."""
        loaded = LoadedMission(mission, (), {}, None, "")
        return self.validate(loaded, context_names=context_names).compiled

    def prepare(
        self,
        source: str | bytes | Path,
        *,
        strict: bool = False,
        context_names: Iterable[str] = (),
        filename: str | None = None,
    ) -> Prepared:
        """Load, validate, plan and analyse: everything ``--dry-run`` shows, nothing executed."""
        validated = self.validate(
            self.load(source, strict=strict, filename=filename),
            strict=strict,
            context_names=context_names,
        )
        plan = Plan.from_mission(validated.mission)
        return Prepared(
            validated.mission,
            validated.warnings,
            plan.levels(),
            plan.critical_path(),
            analyze(validated.mission, self.registry),
            validated.compiled,
        )

    # -- run -----------------------------------------------------------------------------------

    async def run(
        self,
        mission: CompiledMission | Mission,
        *,
        handle: RunHandle | None = None,
        context: Mapping[str, Any] | None = None,
        resume: ResumeState | None = None,
    ) -> MissionResult:
        """Execute a compiled mission to a terminal state; ``resume`` continues where an
        earlier execution left off (``runtime.resume``). A plain ``Mission`` (as the run store
        hands it back) is compiled first."""
        if isinstance(mission, Mission):
            mission = self.compile(mission, context_names=context or ())
        return await self.executor.execute(mission, handle=handle, context=context, resume=resume)

    async def aclose(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
