"""The composition root for running missions: ``Engine`` wires registry, templates, guards,
the shared HTTP client, the runner, the executor and hooks. Built once per process by the CLI
(or, later, the app factory and the worker) from ``Settings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..actions import ActionRegistry
from ..mission.compile import CompiledMission
from ..mission.loader import LoadedMission
from ..mission.model import Mission, MissionResult
from ..mission.parse import ParseLimits
from ..mission.validate import ValidatedMission
from ..settings import Profile, Settings
from ..templating.render import TemplateEngine
from .credentials import CredentialRunner, Credentials
from .executor import Executor, RunHandle
from .guards import CommandPolicy, Jail, SsrfPolicy, SsrfTransport
from .guards.ssrf import HostGuard
from .hooks import Hooks, HookSet
from .platforms import PlatformGuard, PlatformRunner
from .policy import PolicedRunner, StepPolicy
from .prepare import Prepared, Preparer
from .recorder import RunRecorder
from .resume import ResumeState
from .runner import InProcessRunner, StepRunner
from .sandbox import ActionPool
from .transport import AiohttpTransport

__all__ = ["Engine", "Prepared", "http_client"]


def platform_guard(settings: Settings) -> PlatformGuard:
    """The rate limits and circuit breakers the operator configured."""
    return PlatformGuard(
        settings.platform_rate_limits,
        storage_url=settings.redis_url,
        failures=settings.circuit_failures,
        reset_seconds=settings.circuit_reset_seconds,
    )


def ssrf_policy(settings: Settings, profile: Profile, *, http: bool = True) -> SsrfPolicy:
    """Where a profile's steps may connect to: over HTTP (``http``), also the hosts of the
    platforms' base URLs the operator set; anything else (SMTP, Redis), not those."""
    urls = settings.platform_base_urls().values() if http else ()
    platform_hosts = [urlsplit(u).hostname or "" for u in urls]
    return SsrfPolicy(
        allow_hosts=(*settings.ssrf_allow_hosts, *filter(None, platform_hosts)),
        allow_loopback=profile.allow_loopback,
        only_allowlisted=settings.egress_only_allowlisted,
    )


def http_client(settings: Settings, profile: Profile) -> httpx.AsyncClient:
    """The guarded HTTP client of one safety profile: every request and redirect hop passes
    the SSRF policy, addresses are pinned after the check, and no cookie is ever kept."""
    policy = ssrf_policy(settings, profile)
    return httpx.AsyncClient(
        transport=SsrfTransport(policy, AiohttpTransport()),
        trust_env=False,
        # One client serves every run and project: a cookie one platform sets must never
        # ride along on another run's request, so the client keeps none.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        max_redirects=settings.http_max_redirects,
        headers={"User-Agent": "puraify/0.1"},
    )


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
        owns_http: bool = True,
        credentials: Credentials | None = None,
    ) -> None:
        self.registry = registry
        self._owns_http = owns_http
        self.workspace = workspace
        self.templates = templates
        self.runner = runner
        self.http = http
        self.hooks = HookSet(hooks)
        self.preparer = Preparer(
            registry=registry,
            templates=templates,
            parse_limits=parse_limits,
            max_steps=max_steps,
            step_timeout=step_timeout,
        )
        self.executor = Executor(
            runner,
            templates=templates,
            hooks=self.hooks,
            env=env,
            recorder=recorder,
            output_aliases=registry.output_aliases(),
            credentials=credentials,
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
        profile: Profile | None = None,
        http: httpx.AsyncClient | None = None,
        preparer: Preparer | None = None,
        pool: ActionPool | None = None,
        policy: StepPolicy | None = None,
        credentials: Credentials | None = None,
        platforms: PlatformGuard | None = None,
    ) -> Engine:
        """Build the engine an operator configured; ``environ`` is the process environment
        (read by the caller, which is an edge). ``profile``: the safety profile (default: the
        one ``settings.mode`` names, else ``server``). ``http``: a client shared with other
        engines of the same profile (built by ``http_client``; the caller closes it).
        ``preparer``: the catalogue and template engine, when shared with other engines.
        ``pool``: the worker processes sandboxed actions run in (the caller closes it); without
        one they run on the event loop. ``policy``: what authorizes each attempt (Engine
        Control); with one, command steps are gated by its ``command`` feature flag instead of
        the profile's ``command_enabled``. ``credentials``: the vault, for the run's project
        (actions that declare ``credential`` and ``{{ secrets.<platform> }}`` read it).
        ``platforms``: the rate limits and circuit breakers of platform calls (shared by every
        engine of the process; made from the settings when not given)."""
        environ = environ if environ is not None else {}
        profile = profile or settings.profile(settings.mode or "server")
        preparer = preparer or Preparer.from_settings(settings, registry=registry)
        registry = preparer.registry
        root = workspace or settings.workspace or Path.cwd()
        jail = Jail(root, protected=settings.protected_paths, refuse_hard_links=profile.server)
        owns_http = http is None
        http = http or http_client(settings, profile)
        commands = CommandPolicy(
            enabled=profile.commands_enabled or policy is not None,
            allow_shell=settings.command_allow_shell,
            env_allow=settings.command_env_allow,
            max_output_bytes=settings.command_max_output_bytes,
            base_env=environ,
            # the server profile runs commands by allow list only (none until one is given)
            allow=settings.command_allow
            if settings.command_allow is not None or not profile.server
            else (),
            network=profile.commands_networked,
            max_memory_bytes=settings.command_max_memory_bytes,
            max_cpu_seconds=settings.command_max_cpu_seconds,
            max_open_files=settings.command_max_open_files,
            max_processes=settings.command_max_processes,
            contain=settings.command_contain,
            workspace=jail.root,
            hide=settings.command_hidden(server=profile.server),
            writable=settings.command_writable,
            tmp_bytes=settings.command_tmp_bytes,
        )
        limits = {
            "http_max_response_bytes": settings.http_max_response_bytes,
            "file_max_read_bytes": settings.file_max_read_bytes,
            "file_search_max_results": settings.file_search_max_results,
        }
        runner: StepRunner = InProcessRunner(
            registry,
            http=http,
            workspace=jail,
            commands=commands,
            limits=limits,
            pool=pool,
            protected=tuple(str(p) for p in settings.protected_paths),
            credentials=credentials,
            base_urls=settings.platform_base_urls(),
            hosts=HostGuard(ssrf_policy(settings, profile, http=False)),
            databases=settings.databases_dir(
                credentials.project_id if credentials is not None else None
            ),
        )
        runner = PlatformRunner(
            runner,
            platforms or platform_guard(settings),
            registry,
            project=credentials.project_id if credentials is not None else None,
        )
        if credentials is not None:
            runner = CredentialRunner(runner, credentials, registry)
        if policy is not None:
            runner = PolicedRunner(runner, policy, registry)
        allow = profile.env_allow
        env = dict(environ) if "*" in allow else {k: environ[k] for k in allow if k in environ}
        return cls(
            registry=registry,
            templates=preparer.templates,
            runner=runner,
            http=http,
            hooks=hooks,
            parse_limits=preparer.parse_limits,
            max_steps=preparer.max_steps,
            step_timeout=preparer.step_timeout,
            env=env,
            recorder=recorder,
            workspace=jail.root,
            owns_http=owns_http,
            credentials=credentials,
        )

    # -- prepare -------------------------------------------------------------------------------

    def load(
        self, source: str | bytes | Path, *, strict: bool = False, filename: str | None = None
    ) -> LoadedMission:
        """Parse and model a mission document (see ``Preparer.load``)."""
        return self.preparer.load(source, strict=strict, filename=filename)

    def validate(
        self, loaded: LoadedMission, *, strict: bool = False, context_names: Iterable[str] = ()
    ) -> ValidatedMission:
        """Check the mission against the registry and template rules; a valid one comes back
        compiled (``Preparer.validate``)."""
        return self.preparer.validate(loaded, strict=strict, context_names=context_names)

    def compile(self, mission: Mission, *, context_names: Iterable[str] = ()) -> CompiledMission:
        """Validate and compile a mission loaded earlier (``Preparer.compile``)."""
        return self.preparer.compile(mission, context_names=context_names)

    def prepare(
        self,
        source: str | bytes | Path,
        *,
        strict: bool = False,
        context_names: Iterable[str] = (),
        filename: str | None = None,
    ) -> Prepared:
        """Load, validate, plan and analyse (``Preparer.prepare``)."""
        return self.preparer.prepare(
            source, strict=strict, context_names=context_names, filename=filename
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
        if self.http is not None and self._owns_http:
            await self.http.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
