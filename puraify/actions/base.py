"""What an action is, and what it gets to work with.

An action is a named operation: a pydantic ``Params`` model, an ``Output`` model that documents
its result, a ``platform`` (for policy and vault), a delivery class, and ``async run(params, ctx)``.
Actions never build an HTTP client, read settings or the environment: everything comes through
``ActionContext``, whose guards are the ports defined here and implemented in ``runtime.guards``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Literal, Protocol

import httpx
import structlog
from pydantic import BaseModel, ConfigDict

from ..errors import ActionError
from .content import send_bounded

__all__ = [
    "MISSING_OR_SCOPE",
    "Action",
    "ActionContext",
    "CommandGuard",
    "Delivery",
    "Output",
    "Params",
    "WorkspaceJail",
]

Delivery = Literal["keyed", "idempotent", "unsafe"]
#: What a step without a usable credential tells the seeds' callers, who branch on it: the
#: start of every missing-credential and missing-scope message.
MISSING_OR_SCOPE = "Missing token or insufficient scope"
#: Fetches a platform's credential for the attempt (``ActionContext.vault``).
CredentialLookup = Callable[[str], Awaitable[Mapping[str, Any]]]


class Params(BaseModel):
    """Base of every action's parameter model: frozen; unknown keys are kept (and warned about
    by validation), so RustChain missions with extra keys still load."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class Output(BaseModel):
    """Base of every action's documented output shape."""

    model_config = ConfigDict(frozen=True, extra="allow")


class WorkspaceJail(Protocol):
    """File access confined to one directory; every method refuses paths that leave it
    (``path_outside_jail``) or reach special files (``file_type_refused``)."""

    root: Path
    refuse_hard_links: bool

    def display(self, path: str) -> str: ...
    def open(self, path: str, mode: str, *, create_dirs: bool = False) -> IO[bytes]: ...
    def exists(self, path: str) -> bool: ...
    def is_dir(self, path: str) -> bool: ...
    def unlink(self, path: str, *, recursive: bool = False) -> int: ...
    def rename(self, source: str, destination: str, *, overwrite: bool = False) -> None: ...
    def mkdir(self, path: str) -> None: ...
    def scandir(self, path: str) -> list[tuple[str, str, int]]: ...
    def walk(self, path: str, *, max_entries: int) -> list[tuple[str, str, int]]: ...
    def copy(self, source: str, destination: str, *, overwrite: bool, create_dirs: bool) -> int: ...


class StartedCommand(Protocol):
    """A running command: its exit code (negative: the signal that ended it), and a kill that
    ends it with every process of its that containment reaches."""

    pid: int

    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


class HostCheck(Protocol):
    """The egress policy for connections that are not HTTP (implemented by the runtime)."""

    async def address(self, host: str, port: int) -> str:
        """The address to connect to for ``host``, checked; ``GuardError`` if refused."""


class CommandGuard(Protocol):
    """Checks an argv and the environment a command would get (raises ``GuardError``), and
    starts it contained."""

    enabled: bool
    max_output_bytes: int
    network: bool

    @property
    def isolates_processes(self) -> bool: ...

    def check(self, argv: Sequence[str], env: Mapping[str, str]) -> None: ...
    def environment(self, extra: Mapping[str, str]) -> dict[str, str]: ...
    async def start(
        self,
        program: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        network: bool,
        stdin: int,
        stdout: int,
        stderr: int,
    ) -> StartedCommand: ...


@dataclass
class ActionContext:
    """Everything an action may use while it runs one attempt of one step."""

    run_id: str
    step_id: str
    attempt: int
    http: httpx.AsyncClient
    workspace: WorkspaceJail
    commands: CommandGuard
    limits: Mapping[str, int] = field(default_factory=dict)
    logger: Any = field(default_factory=lambda: structlog.get_logger("puraify.action"))
    #: credentials given to this attempt, by platform (``{"type", "scopes", <fields>}``)
    credentials: Mapping[str, Any] = field(default_factory=dict)
    #: the vault, for a credential the action chooses at call time (``credential``)
    vault: CredentialLookup | None = None
    #: the egress policy for what is not HTTP (an SMTP server, a database)
    hosts: HostCheck | None = None
    #: each platform's base URL as the operator configured it (``<platform>_base_url``)
    base_urls: Mapping[str, str] = field(default_factory=dict)
    #: where the project's SQLite databases are kept (outside every workspace)
    databases: Path | None = None

    def own_client(self) -> httpx.AsyncClient:
        """A client of the action's own (an SDK may set its base URL and headers on it) whose
        requests all go through ``http``: the same guard, pool and limits, every answer read
        within ``http_max_response_bytes``. Closing it closes nothing shared."""
        cap = self.limit("http_max_response_bytes", 10 * 1024 * 1024)
        return httpx.AsyncClient(transport=_Through(self.http, cap), trust_env=False)

    def base_url(self, platform: str, default: str) -> str:
        """Where ``platform``'s API is: the operator's setting, else ``default``."""
        return (self.base_urls.get(platform) or default).rstrip("/")

    async def credential(self, platform: str) -> Mapping[str, Any]:
        """``platform``'s credential for this run (its user's, else its project's), fetched
        now; ``ActionError`` ``credential_missing`` when there is none."""
        found = self.credentials.get(platform)
        if found is not None:
            return found  # type: ignore[no-any-return]
        if self.vault is None:
            raise ActionError(
                f"{MISSING_OR_SCOPE}: no vault is configured for {platform}",
                code="credential_missing",
            )
        return await self.vault(platform)

    @property
    def idempotency_key(self) -> str:
        """``<run_id>:<step_id>``: the same on every retry and after a crash (keyed delivery)."""
        return f"{self.run_id}:{self.step_id}"

    def limit(self, name: str, default: int) -> int:
        return int(self.limits.get(name, default))


class _Through(httpx.AsyncBaseTransport):
    """Sends each request with ``client`` (its transport, guard and pool), reading each answer
    within ``cap`` bytes once decoded."""

    def __init__(self, client: httpx.AsyncClient, cap: int) -> None:
        self.client = client
        self.cap = cap

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await send_bounded(self.client, request, self.cap, what="the platform's answer")

    async def aclose(self) -> None:
        """The shared client is not this transport's to close."""


class Action(ABC):
    """Base class of every step type. Subclasses set the class attributes and ``run``."""

    name: ClassVar[str]
    aliases: ClassVar[tuple[str, ...]] = ()
    platform: ClassVar[str] = "local"
    delivery: ClassVar[Delivery] = "idempotent"
    description: ClassVar[str] = ""
    Params: ClassVar[type[Params]]
    Output: ClassVar[type[Output]]
    example: ClassVar[Mapping[str, Any]] = {}
    #: Other names templates may read an output field by (``response`` for ``body``); the
    #: output itself holds each field once.
    output_aliases: ClassVar[Mapping[str, str]] = {}
    #: CPU-bound: run in the engine's sandbox of worker processes (``runtime.sandbox``), where
    #: a timeout or a cancel really stops it. Its ``run`` then gets a context without network.
    sandboxed: ClassVar[bool] = False
    #: Engine Control: the scopes an engine must hold for this action (``slack:write``), and
    #: whether it is dangerous, behind a feature flag of its name (off in the server profile).
    required_scopes: ClassVar[tuple[str, ...]] = ()
    dangerous: ClassVar[bool] = False
    #: The vault: whether each attempt gets its platform's credential in
    #: ``ActionContext.credentials[platform]`` (``required``: the step fails
    #: ``credential_missing`` without one; ``optional``: it runs without).
    credential: ClassVar[Literal["required", "optional"] | None] = None

    def endpoint(self, parameters: Mapping[str, Any]) -> str | None:
        """Which of the platform's endpoints a call goes to, when they fail apart (a webhook's
        host, a Zapier hook): each then has a circuit breaker and budget of its own."""
        return None

    @property
    def flag(self) -> str | None:
        """The feature flag this action is behind, if any."""
        return self.name if self.dangerous else None

    @abstractmethod
    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        """Do the work once; return the output (JSON-compatible) or raise ``ActionError``."""

    def parse(self, parameters: Mapping[str, Any]) -> Any:
        """Validate parameters into the ``Params`` model.

        Parameters without templates are parsed once, at validation, and that model is handed
        to every run and attempt of the step: ``run`` treats ``params`` as read-only."""
        return self.Params.model_validate(parameters)

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """The catalogue entry: name, aliases, platform, delivery, schemas and an example."""
        return {
            "name": cls.name,
            "aliases": list(cls.aliases),
            "platform": cls.platform,
            "required_scopes": list(cls.required_scopes),
            "dangerous": cls.dangerous,
            "credential": cls.credential,
            "delivery": cls.delivery,
            "description": cls.description,
            "parameters": cls.Params.model_json_schema(by_alias=False),
            "output": cls.Output.model_json_schema(),
            "output_aliases": dict(cls.output_aliases),
            "example": dict(cls.example),
        }
