"""Settings, read once at the edges (CLI, app factory, worker) and passed down as plain values.

Sources, highest first: keyword arguments, ``PURAIFY_*`` environment variables, an optional
config file, then the defaults below. The config file is ``$PURAIFY_CONFIG`` when set, else
``puraify.toml`` in the engine's home (``$PURAIFY_HOME``, default ``~/.puraify``): places no
mission step can write (the home is outside every workspace, or refused by the jail), never the
current directory. List values in the environment are JSON
(``PURAIFY_SSRF_ALLOW_HOSTS='["api.internal"]'``).

The safety profile (``server`` or ``local``) is not a setting with a default: ``mode`` is unset
unless the operator sets it, and ``Settings.profile(name)`` resolves a profile, with every default it
implies, into a frozen ``Profile``. Anything that listens on a socket runs ``server``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = [
    "Mode",
    "OAuthProvider",
    "Profile",
    "SafetyLevel",
    "Settings",
    "config_path",
    "project_dirname",
]

Mode = Literal["local", "server"]
#: How strict the static safety analysis every mission passes before it runs is.
SafetyLevel = Literal["off", "permissive", "standard", "strict"]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def project_dirname(project_id: str | None) -> str:
    """A directory name for a project: readable, unique per id, never ``..`` or a path."""
    if project_id is None:
        return "no-project"  # real names always end in a 12-digit hash, so never collide
    slug = _UNSAFE.sub("-", project_id).strip(".-")[:48] or "project"
    digest = hashlib.sha256(project_id.encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def _default_home() -> Path:
    return Path.home() / ".puraify"


def config_path(environ: dict[str, str] | None = None) -> Path:
    """Where the config file is read from: ``$PURAIFY_CONFIG``, else ``<home>/puraify.toml``."""
    env = os.environ if environ is None else environ
    if env.get("PURAIFY_CONFIG"):
        return Path(env["PURAIFY_CONFIG"]).expanduser().resolve()
    home = Path(env["PURAIFY_HOME"]).expanduser() if env.get("PURAIFY_HOME") else _default_home()
    return (home / "puraify.toml").resolve()


_BASE_URL_FIELDS = {
    "slack_base_url",
    "zapier_base_url",
    "notion_base_url",
    "google_calendar_base_url",
    "google_sheets_base_url",
    "gmail_base_url",
}


class OAuthProvider(BaseModel):
    """An OAuth2 provider as the operator configured it (a preset fills what is left out)."""

    model_config = ConfigDict(extra="forbid")

    client_id: str
    client_secret: SecretStr
    authorize_url: str | None = None
    token_url: str | None = None
    scopes: list[str] | None = None
    # how the client authenticates at the token endpoint
    token_auth_method: Literal["client_secret_post", "client_secret_basic"] | None = None
    # extra query parameters of the authorization URL (Google's access_type=offline)
    authorize_params: dict[str, str] | None = None
    scope_separator: str | None = None


@dataclass(frozen=True)
class Profile:
    """The safety decisions of one profile, resolved once from settings.

    ``server``: for anything others can reach. Loopback and private addresses refused,
    ``command`` steps off, no environment variable readable by templates, one workspace per
    project. ``local``: for a developer's own machine (``puraify run``). Each setting the
    operator gave explicitly wins over the profile's default.
    """

    name: Mode
    allow_loopback: bool
    commands_enabled: bool
    env_allow: tuple[str, ...]
    commands_networked: bool = True

    @property
    def server(self) -> bool:
        return self.name == "server"


class Settings(BaseSettings):
    """Every knob puraify reads. ``mode`` picks safe defaults: ``local`` for the CLI on a
    developer's machine, ``server`` for anything reachable by others."""

    model_config = SettingsConfigDict(env_prefix="PURAIFY_", extra="ignore", frozen=True)

    # unset: the edge's default profile (server for anything that listens on a socket)
    mode: Mode | None = None
    home: Path = Field(default_factory=_default_home)
    # local profile: the one workspace (default: the current directory); server profile: the
    # directory holding one workspace per project (default: <home>/workspaces)
    workspace: Path | None = None
    # where the config file is read from (resolved once, whether it exists or not): no step
    # may create, change or replace it
    config_file: Path | None = None

    # HTTP egress (SSRF guard). Loopback is allowed in local mode unless set explicitly.
    ssrf_allow_hosts: tuple[str, ...] = ()
    ssrf_allow_loopback: bool | None = None
    egress_only_allowlisted: bool = False
    http_max_response_bytes: int = 10 * 1024 * 1024
    http_max_redirects: int = 5

    # Templates: which env vars ``{{ env.NAME }}`` may read ("*" = all; local mode default).
    template_env_allow: tuple[str, ...] | None = None
    template_max_output_bytes: int = 1024 * 1024
    template_max_render_seconds: float = 1.0

    # Commands.
    command_enabled: bool | None = None
    command_allow_shell: bool = False
    # the programs command steps may run (names, or absolute paths). Unset: in the local
    # profile any the deny list lets through; in the server profile none (it runs commands by
    # allow list only).
    command_allow: tuple[str, ...] | None = None
    command_env_allow: tuple[str, ...] = (
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "TMPDIR",
    )
    command_max_output_bytes: int = 1024 * 1024
    # Containment of command steps (each in the command sandbox when the system allows it: its
    # own PID, network and mount namespaces): whether they may reach the network (local: yes,
    # server: no), and their limits.
    command_network: bool | None = None
    command_contain: bool = True  # false: commands run in a process group only, no sandbox
    command_max_memory_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=16 * 1024 * 1024)
    command_max_cpu_seconds: int = Field(default=600, ge=1)
    command_max_open_files: int = Field(default=1024, ge=16)
    command_max_processes: int = Field(default=512, ge=8)  # in the sandbox: its processes
    # In the sandbox, a command writes only in its workspace, in these directories, and in a
    # fresh /tmp of at most command_tmp_bytes.
    command_writable: tuple[Path, ...] = ()
    command_tmp_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)

    # Files.
    file_max_read_bytes: int = 10 * 1024 * 1024
    file_search_max_results: int = 1000

    # Missions. safety_level: the static safety analysis every mission passes before it runs
    # (`off` runs missions on the runtime guards alone).
    safety_level: SafetyLevel = "standard"
    max_document_bytes: int = 4 * 1024 * 1024
    max_document_depth: int = 64
    max_yaml_aliases: int = 100
    max_steps: int = 50_000
    step_timeout_seconds: float = 300.0
    # The sandbox for CPU-bound actions (parsers, schema checks, CSV, edits, searches): worker
    # processes a timeout really stops (0: run them on the engine's event loop), and the
    # memory each may use.
    action_workers: int = Field(default=2, ge=0, le=64)
    action_max_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024 * 1024)

    # The vault's master key(s): `id:base64url-key`, several separated by commas, the last one
    # current. Unset: the key file <home>/vault.key (made by `puraify init`, mode 0600).
    master_key: SecretStr | None = None
    # how long an opened credential is kept in memory (a change made in this process applies
    # at once; 0: read and open it on every use)
    vault_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # a separate vault (`puraify serve vault`): the execution service reads credentials from
    # its GET /vault/token with its engine's id and key (control_engine_id/_key), which must
    # hold vault:read in Engine Control
    vault_url: str | None = None
    # OAuth2 providers by platform: {client_id, client_secret, authorize_url, token_url,
    # scopes, ...}; slack, google and notion have presets for everything but the client
    # (PURAIFY_OAUTH_PROVIDERS='{"slack": {"client_id": "...", "client_secret": "..."}}')
    oauth_providers: dict[str, OAuthProvider] = Field(default_factory=dict)
    # where POST /auth/start may send users back to (a URL, or a prefix ending in /); unset:
    # any http(s) URL
    oauth_redirect_uris: list[str] | None = None
    # how long an authorization started by POST /auth/start may take to come back
    oauth_state_seconds: float = Field(default=600.0, ge=30, le=3600)
    # access tokens are refreshed this long before they expire
    oauth_refresh_leeway_seconds: float = Field(default=60.0, ge=0, le=3600)

    # Engine Control. The execution service runs as the engine control_engine_id and asks the
    # policy before every step: in this process (its store), or, with control_url, a separate
    # `puraify serve control` with this engine's key. Verdicts are kept control_cache_seconds.
    control_url: str | None = None
    control_engine_id: str = "puraify-execution"
    control_engine_key: SecretStr | None = None
    control_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # a declarative policy (engines' permissions, platform statuses, flags) applied at start
    control_policy_file: Path | None = None

    # Platforms. Each one's API base URL (the SSRF guard allows the host an operator sets);
    # rate limits per platform and credential (the `limits` notation, `;` between several),
    # shared by every process through Redis when redis_url is set; a credential's circuit
    # breaker opens after circuit_failures failures in a row, for circuit_reset_seconds.
    slack_base_url: str | None = None
    zapier_base_url: str | None = None
    notion_base_url: str | None = None
    google_calendar_base_url: str | None = None
    google_sheets_base_url: str | None = None
    gmail_base_url: str | None = None
    platform_rate_limits: dict[str, str] = Field(
        default_factory=lambda: {
            "slack": "1/second;50/minute",
            "notion": "3/second",
            "google": "10/second",
        }
    )
    redis_url: str | None = None
    circuit_failures: int = Field(default=5, ge=1, le=1000)
    circuit_reset_seconds: float = Field(default=30.0, gt=0, le=3600)

    # Run store: SQLite at home/puraify.db unless a URL is given (postgresql+asyncpg://...).
    database_url: str | None = None
    sqlite_synchronous: Literal["NORMAL", "FULL", "EXTRA"] = "NORMAL"
    store_max_output_bytes: int = 256 * 1024

    # Execution service (`puraify serve`).
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dev_mode: bool = False
    # how long a server trusts a token it verified before asking the store again: a revoked
    # token is refused by every process within this time (0: ask the store on every request)
    token_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # /readyz says "not ready" below this much free space where the SQLite store or the
    # workspaces are (a full disk would fail every write)
    ready_min_free_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    max_body_bytes: int = 1024 * 1024
    execute_timeout_seconds: float = 60.0
    monitoring_url: str | None = None
    feedback_url: str | None = None

    log_level: str = "INFO"
    # auto: JSON lines when stderr is not a terminal, coloured text when it is
    log_format: Literal["json", "console", "auto"] = "auto"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = config_path()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        # frozen model: derived values are set once here, never recomputed at use time
        if self.config_file is None:
            object.__setattr__(self, "config_file", config_path())
        object.__setattr__(self, "home", self.home.expanduser())
        return self

    def platform_base_urls(self) -> dict[str, str]:
        """The base URLs the operator set, by platform."""
        return {
            name.removesuffix("_base_url"): value
            for name, value in self.model_dump(include=_BASE_URL_FIELDS).items()
            if value
        }

    def profile(self, name: Mode) -> Profile:
        """The named safety profile with every default it implies; each explicitly given
        setting (``ssrf_allow_loopback``, ``command_enabled``, ``template_env_allow``) wins
        over the profile's own default. Which profile an edge runs is decided in one place
        (``puraify.service.compose``): ``mode`` when the operator set it, else ``server`` for
        anything that listens on a socket."""
        local = name == "local"
        return Profile(
            name=name,
            allow_loopback=local if self.ssrf_allow_loopback is None else self.ssrf_allow_loopback,
            commands_enabled=local if self.command_enabled is None else self.command_enabled,
            commands_networked=local if self.command_network is None else self.command_network,
            env_allow=(
                (("*",) if local else ())
                if self.template_env_allow is None
                else self.template_env_allow
            ),
        )

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home / 'puraify.db'}"

    def command_hidden(self, *, server: bool) -> tuple[Path, ...]:
        """What a contained command may not even read: the engine's state and config and, in
        the server profile, the directory holding every project's workspace (its own is
        bound back in)."""
        hidden = [*self.protected_paths]
        if server:
            hidden.append(self.workspace or self.home / "workspaces")
        return tuple(p.resolve() for p in hidden)

    def databases_dir(self, project_id: str | None) -> Path:
        """Where a project's SQLite databases are kept (``database.create_record``): under the
        engine's home, which no step can write and no command can see."""
        return self.home / "databases" / project_dirname(project_id)

    @property
    def vault_key_file(self) -> Path:
        return self.home / "vault.key"

    @property
    def protected_paths(self) -> tuple[Path, ...]:
        """Files no step may touch even inside a workspace: the engine's own state and config."""
        return (self.home, self.config_file) if self.config_file else (self.home,)
