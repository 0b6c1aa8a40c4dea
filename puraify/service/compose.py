"""The one composition function: settings and the edge's role in, the application out.

``compose`` decides the safety profile (the only place that does), opens and checks the store,
builds the action catalogue, the run service with its hooks, and the token and idempotency
stores. ``api/`` and ``cli/`` call it once per process or command and only translate HTTP and
argv into calls on what it returns.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from ..actions import ActionRegistry
from ..control.client import HttpPolicy
from ..control.policy import AuditLog, LocalPolicy, Policy
from ..control.reconcile import reconcile
from ..control.registry import ControlRegistry
from ..control.service import EXECUTION_PERMISSIONS, ControlService
from ..errors import PuraifyError, StoreError
from ..observability.events import EventBroker
from ..observability.sinks import EventSinks
from ..runtime.credentials import CredentialSource
from ..runtime.guards.commands import CONTAINMENT_MEANING, containment, containment_reason
from ..runtime.hooks import Hooks
from ..runtime.prepare import Preparer
from ..settings import Mode, Profile, Settings
from ..store import Database, RunStore, TokenStore
from ..store.database import HEAD_REVISION
from ..store.idempotency import IdempotencyStore
from ..vault.access import HttpVault, LocalVault
from ..vault.crypto import Keyring
from ..vault.oauth import OAuth, providers_from
from ..vault.store import VaultStore
from .runs import RunService

__all__ = ["Application", "choose_profile", "compose", "open_database"]

_log = structlog.get_logger("puraify.service")


@dataclass
class Application:
    """Everything an edge needs, built once by ``compose``."""

    settings: Settings
    profile: Profile
    db: Database
    store: RunStore
    tokens: TokenStore
    idempotency: IdempotencyStore
    preparer: Preparer
    runs: RunService
    control: ControlService
    policy: Policy
    vault: VaultStore
    #: the vault as this process's steps read it, refreshing OAuth2 tokens (``vault``'s own)
    credentials: LocalVault
    oauth: OAuth

    @property
    def registry(self) -> ActionRegistry:
        return self.preparer.registry


def choose_profile(settings: Settings, *, listen: str | None) -> Mode:
    """``server`` for anything that listens on a socket (``listen`` is its address), ``local``
    for a command on the operator's own machine; ``PURAIFY_MODE`` overrides either."""
    if settings.mode is not None:
        return settings.mode
    return "server" if listen is not None else "local"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_local_listener(listen: str) -> None:
    exposed = not _loopback(listen)
    message = (
        "serving with the local safety profile (mode = local): command steps run as this "
        "user, templates read every environment variable and loopback addresses are reachable"
    )
    if exposed:
        message += (
            f"; it listens on {listen}, which other machines may reach: anyone with a token "
            "can do all of that. Use the server profile (leave mode unset) unless you are sure."
        )
    log = _log.error if exposed else _log.warning
    log("local_profile_listening", host=listen, exposed=exposed, message=message)


def _vault(settings: Settings, db: Database) -> VaultStore:
    """The vault on this store; its keys loaded when first needed (PURAIFY_MASTER_KEY, or the
    key file, made with the first credential if there is none)."""
    secret = settings.master_key.get_secret_value() if settings.master_key else None
    return VaultStore(
        db,
        lambda create: Keyring.load(
            env_value=secret, key_file=settings.vault_key_file, create=create
        ),
        cache_seconds=settings.vault_cache_seconds,
    )


def _credential_source(settings: Settings, local: LocalVault) -> CredentialSource:
    """Where this process's steps get credentials: this store's vault, or a separate one at
    ``vault_url``, asked as the engine ``control_engine_id``."""
    if not settings.vault_url:
        return local
    if settings.control_engine_key is None:
        raise PuraifyError(
            "vault_url is set, but not control_engine_key: the execution service needs its "
            "engine's key to ask the vault",
            code="invalid_settings",
        )
    return HttpVault(
        settings.vault_url,
        settings.control_engine_id,
        settings.control_engine_key.get_secret_value(),
        cache_seconds=settings.vault_cache_seconds,
    )


async def _control(
    settings: Settings, profile: Profile, db: Database, catalogue: ActionRegistry, *, server: bool
) -> tuple[ControlService, Policy]:
    """Engine Control for this process, and the policy its steps ask: this store's (making the
    execution service's own engine on first use, and applying ``control_policy_file``), or a
    separate Engine Control's at ``control_url``."""
    registry = ControlRegistry(db)
    audit = AuditLog(registry, log_allowed=server)  # a command logs only refusals
    # dangerous actions are behind a flag of their name: on where the profile runs commands
    defaults = {a.flag: profile.commands_enabled for a in catalogue.actions() if a.flag}
    local = LocalPolicy(
        registry,
        catalogue,
        audit,
        flag_defaults=defaults,
        cache_seconds=settings.control_cache_seconds,
    )
    control = ControlService(
        registry, local, audit, auth_cache_seconds=settings.token_cache_seconds
    )
    if settings.control_url:
        if settings.control_engine_key is None:
            raise PuraifyError(
                "control_url is set, but not control_engine_key: the execution service needs "
                "its engine's key to ask Engine Control",
                code="invalid_settings",
            )
        remote = HttpPolicy(
            settings.control_url,
            settings.control_engine_id,
            settings.control_engine_key.get_secret_value(),
            cache_seconds=settings.control_cache_seconds,
        )
        return control, remote
    await registry.ensure(
        settings.control_engine_id,
        EXECUTION_PERMISSIONS,
        description="the execution service's own engine",
    )
    if settings.control_policy_file is not None:
        await reconcile(control, settings.control_policy_file)
    return control, local


async def open_database(settings: Settings) -> Database:
    """The store's database, migrated on first use when it is the embedded SQLite default;
    any other database must already be at this release's schema (``puraify db upgrade``)."""
    db = Database(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        if db.is_sqlite:
            await db.ensure_schema()
        elif await db.revision() != HEAD_REVISION:
            raise StoreError(
                "the database schema is not up to date; run `puraify db upgrade`",
                code="store_schema",
            )
    except BaseException:
        await db.dispose()
        raise
    return db


@asynccontextmanager
async def compose(
    settings: Settings,
    *,
    listen: str | None,
    environ: Mapping[str, str],
    cwd: Path,
    registry: ActionRegistry | None = None,
    hooks: Sequence[Hooks] = (),
) -> AsyncIterator[Application]:
    """Build the application for one process or command, and take it down afterwards.

    ``listen``: the address this process serves on, ``None`` for a command. It chooses the
    safety profile (see ``choose_profile``). ``environ`` and ``cwd`` are the process's,
    read by the edge. ``hooks`` are the edge's own (live progress, metrics, logs)."""
    profile = settings.profile(choose_profile(settings, listen=listen))
    if listen is not None and not profile.server:
        _warn_local_listener(listen)
    if listen is not None and profile.commands_enabled:
        # what command steps will be contained by, where an operator reads it
        mode = await asyncio.to_thread(containment)
        (_log.info if mode == "sandbox" else _log.warning)(
            "command_containment",
            containment=mode,
            reason=containment_reason(),
            message=CONTAINMENT_MEANING[mode],
        )
    db = await open_database(settings)
    store = RunStore(db, max_output_bytes=settings.store_max_output_bytes)
    preparer = Preparer.from_settings(settings, registry=registry)
    broker = EventBroker()
    sinks = EventSinks(monitoring_url=settings.monitoring_url, feedback_url=settings.feedback_url)
    try:
        control, policy = await _control(
            settings, profile, db, preparer.registry, server=listen is not None
        )
    except BaseException:
        await db.dispose()
        raise
    vault = _vault(settings, db)
    try:
        oauth = OAuth(
            vault,
            db,
            providers_from(settings.oauth_providers),
            state_seconds=settings.oauth_state_seconds,
            leeway_seconds=settings.oauth_refresh_leeway_seconds,
            redirect_uris=settings.oauth_redirect_uris,
        )
        local_vault = LocalVault(vault, oauth)
        source = _credential_source(settings, local_vault)
        if listen is not None:  # a server with the wrong key must not start: never empty
            await vault.check_keys()
    except BaseException:
        await db.dispose()
        raise
    runs = RunService(
        settings=settings,
        profile=profile,
        store=store,
        preparer=preparer,
        broker=broker,
        hooks=[sinks, *hooks],
        environ=environ,
        cwd=cwd,
        policy=policy,
        credentials=source,
    )
    app = Application(
        settings=settings,
        profile=profile,
        db=db,
        store=store,
        tokens=TokenStore(db, cache_seconds=settings.token_cache_seconds),
        idempotency=IdempotencyStore(db),
        preparer=preparer,
        runs=runs,
        control=control,
        policy=policy,
        vault=vault,
        credentials=local_vault,
        oauth=oauth,
    )
    sinks.start()
    try:
        yield app
    finally:
        try:
            await runs.shutdown(grace_seconds=5.0)
            await sinks.close()
            await control.audit.aclose()
            if isinstance(policy, HttpPolicy):
                await policy.aclose()
            if isinstance(source, HttpVault):
                await source.aclose()
        finally:
            await db.dispose()
