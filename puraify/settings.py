"""Settings, read once at the edges (CLI, app factory, worker) and passed down as plain values.

Sources, highest first: keyword arguments, ``PURAIFY_*`` environment variables, an optional
``puraify.toml`` (path in ``PURAIFY_CONFIG``, else ``./puraify.toml``), then the defaults below.
List values in the environment are JSON (``PURAIFY_SSRF_ALLOW_HOSTS='["api.internal"]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["Settings"]

Mode = Literal["local", "server"]


def _default_home() -> Path:
    return Path.home() / ".puraify"


class Settings(BaseSettings):
    """Every knob puraify reads. ``mode`` picks safe defaults: ``local`` for the CLI on a
    developer's machine, ``server`` for anything reachable by others."""

    model_config = SettingsConfigDict(env_prefix="PURAIFY_", extra="ignore", frozen=True)

    mode: Mode = "local"
    home: Path = Field(default_factory=_default_home)
    workspace: Path | None = None

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

    # Files.
    file_max_read_bytes: int = 10 * 1024 * 1024
    file_search_max_results: int = 1000

    # Missions.
    max_document_bytes: int = 4 * 1024 * 1024
    max_document_depth: int = 64
    max_yaml_aliases: int = 100
    max_steps: int = 50_000
    step_timeout_seconds: float = 300.0

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
    max_body_bytes: int = 1024 * 1024
    execute_timeout_seconds: float = 60.0
    monitoring_url: str | None = None
    feedback_url: str | None = None

    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("PURAIFY_CONFIG", "puraify.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    @property
    def allow_loopback(self) -> bool:
        if self.ssrf_allow_loopback is not None:
            return self.ssrf_allow_loopback
        return self.mode == "local"

    @property
    def commands_enabled(self) -> bool:
        if self.command_enabled is not None:
            return self.command_enabled
        return self.mode == "local"

    @property
    def env_allow(self) -> tuple[str, ...]:
        if self.template_env_allow is not None:
            return self.template_env_allow
        return ("*",) if self.mode == "local" else ()

    @property
    def store_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.home / 'puraify.db'}"

    @property
    def protected_paths(self) -> tuple[Path, ...]:
        """Files no step may touch even inside the workspace: the engine's own state."""
        paths = [self.home]
        config = Path(os.environ.get("PURAIFY_CONFIG", "puraify.toml")).resolve()
        paths.append(config)
        return tuple(paths)
