"""OAuth2: connect a platform (authorization code with PKCE) and keep its tokens fresh.

Authlib's httpx client does the protocol (authorization URLs, PKCE S256, token requests,
client authentication, error bodies); this module keeps what the protocol leaves to the
application:

- ``start``: a random ``state`` and PKCE verifier, kept server-side until the authorization
  comes back: the state only as its SHA-256, the verifier sealed by the vault's key; single use
  and expiring (``oauth_state_seconds``);
- ``callback``: takes the state (once: a replay finds nothing), exchanges the code with the
  verifier and stores the tokens as an ``oauth2`` credential of the project (or user) that
  started it, with their scopes and expiry;
- ``refresh``: one refresh at a time per credential: concurrent steps of a process wait for
  the one in flight and share its result, and a claim on the credential's row makes other
  processes wait for it too (they read the new version from the store); ``invalid_grant`` marks the credential invalid, and an invalid
  credential is never refreshed again (steps fail ``credential_invalid`` at once, no refresh
  storm) until the platform is connected again.

Providers come from ``Settings.oauth_providers``; ``PRESETS`` fill in Slack's, Google's and
Notion's endpoints, scopes and client authentication. The token endpoint is the operator's
configuration, so it is called without the SSRF guard that protects steps.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client.errors import OAuthError
from sqlalchemy import delete, insert, select

# Authlib's client runs on httpx, puraify's HTTP client everywhere (it would rather have the
# httpx2 fork, and says so once at import)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

from ..codes import ErrorCode
from ..errors import ActionError, VaultError
from ..redaction import OPERATOR, Redactor
from ..settings import OAuthProvider
from ..store.database import Database
from ..store.tables import oauth_states
from .store import Credential, VaultStore

__all__ = ["PRESETS", "OAuth", "Provider", "providers_from"]

_log = structlog.get_logger("puraify.vault")

# how often a process waiting for another's refresh reads the credential again
_CLAIM_POLL_SECONDS = 0.1

#: Endpoints, default scopes and client authentication of well-known providers.
PRESETS: Mapping[str, Mapping[str, Any]] = {
    "slack": {
        "authorize_url": "https://slack.com/oauth/v2/authorize",
        "token_url": "https://slack.com/api/oauth.v2.access",
        "scopes": ["chat:write"],
        "token_auth_method": "client_secret_post",
        "scope_separator": ",",
    },
    "google": {
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "scopes": [
            "https://www.googleapis.com/auth/calendar.events",
            "https://www.googleapis.com/auth/spreadsheets",
            "https://www.googleapis.com/auth/gmail.send",
        ],
        "token_auth_method": "client_secret_post",
        # a refresh token is issued only for offline access, and again only with consent
        "authorize_params": {"access_type": "offline", "prompt": "consent"},
    },
    "notion": {
        "authorize_url": "https://api.notion.com/v1/oauth/authorize",
        "token_url": "https://api.notion.com/v1/oauth/token",
        "scopes": [],
        "token_auth_method": "client_secret_basic",
        "authorize_params": {"owner": "user"},
    },
}
# platforms that are one of the presets' services
_PRESET_OF = {
    "gmail": "google",
    "google_calendar": "google",
    "google_sheets": "google",
    "email": "google",
}


@dataclass(frozen=True)
class Provider:
    platform: str
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    token_auth_method: str
    authorize_params: Mapping[str, str]
    scope_separator: str


def providers_from(configured: Mapping[str, OAuthProvider]) -> dict[str, Provider]:
    """The operator's providers with their presets applied; ``VaultError`` naming a provider
    that still lacks an endpoint."""
    out: dict[str, Provider] = {}
    for platform, given in configured.items():
        preset = PRESETS.get(platform) or PRESETS.get(_PRESET_OF.get(platform, ""), {})
        fields = {**preset, **given.model_dump(exclude_none=True, exclude={"client_secret"})}
        missing = [f for f in ("authorize_url", "token_url") if not fields.get(f)]
        if missing:
            raise VaultError(
                f"oauth_providers.{platform} needs {' and '.join(missing)} (no preset has them)",
                code=ErrorCode.INVALID_SETTINGS,
            )
        out[platform] = Provider(
            platform=platform,
            client_id=given.client_id,
            client_secret=given.client_secret.get_secret_value(),
            authorize_url=fields["authorize_url"],
            token_url=fields["token_url"],
            scopes=tuple(fields.get("scopes") or ()),
            token_auth_method=fields.get("token_auth_method") or "client_secret_post",
            authorize_params=dict(fields.get("authorize_params") or {}),
            scope_separator=fields.get("scope_separator") or " ",
        )
    return out


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OAuth:
    """Connects platforms and refreshes their tokens for one vault."""

    def __init__(
        self,
        vault: VaultStore,
        db: Database,
        providers: Mapping[str, Provider],
        *,
        state_seconds: float = 600.0,
        leeway_seconds: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        now: Callable[[], datetime] = _utcnow,
        redirect_uris: Sequence[str] | None = None,
    ) -> None:
        self.vault = vault
        self.db = db
        self.providers = dict(providers)
        self.state_seconds = state_seconds
        self.leeway = timedelta(seconds=leeway_seconds)
        self.timeout = timeout
        self._transport = transport
        self._now = now
        self._refreshing: dict[str, asyncio.Task[Credential]] = {}
        self._owner = secrets.token_hex(8)  # this process, in a credential's refresh claim
        self.redirect_uris = tuple(redirect_uris) if redirect_uris is not None else None
        # a provider may quote the client's secret back in an error: hidden in every text
        OPERATOR.add(*(p.client_secret for p in self.providers.values()))

    def provider(self, platform: str) -> Provider:
        found = self.providers.get(platform)
        if found is None:
            raise VaultError(
                f"no OAuth2 provider is configured for {platform!r}",
                code=ErrorCode.OAUTH_PROVIDER_UNKNOWN,
            )
        return found

    def _client(self, provider: Provider, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            token_endpoint_auth_method=provider.token_auth_method,
            scope=provider.scope_separator.join(provider.scopes) or None,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.timeout,
            trust_env=False,
            transport=self._transport,
        )

    # -- connect -------------------------------------------------------------------------------

    async def start(
        self, project_id: str, platform: str, redirect_uri: str, *, user_id: str | None = None
    ) -> dict[str, Any]:
        """Where to send the user to authorize, and the state that will come back."""
        provider = self.provider(platform)
        if self.redirect_uris is not None and not any(
            redirect_uri == allowed or redirect_uri.startswith(allowed.rstrip("/") + "/")
            for allowed in self.redirect_uris
        ):
            raise VaultError(
                "the redirect_uri is not one the operator allows (oauth_redirect_uris)",
                code=ErrorCode.INVALID_REQUEST,
                field="redirect_uri",
            )
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)  # 86 characters: within PKCE's 43 to 128
        async with self._client(provider, redirect_uri) as client:
            url, _ = client.create_authorization_url(
                provider.authorize_url,
                state=state,
                code_verifier=verifier,
                **provider.authorize_params,
            )
        now = self._now()
        expires = now + timedelta(seconds=self.state_seconds)
        key_id, sealed = self.vault.keyring_for_sealing().seal(
            verifier.encode(), b"oauth-state|" + _hash(state).encode()
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(oauth_states).where(oauth_states.c.expires_at < now))
            await conn.execute(
                insert(oauth_states).values(
                    state_hash=_hash(state),
                    project_id=project_id,
                    user_id=user_id or "",
                    platform=platform,
                    redirect_uri=redirect_uri,
                    key_id=key_id,
                    sealed_verifier=sealed,
                    created_at=now,
                    expires_at=expires,
                )
            )
        return {"authorization_url": url, "state": state, "expires_at": expires.isoformat()}

    async def _take_state(self, state: str) -> Any:
        """The authorization ``state`` started, removed so that it is used once."""
        digest = _hash(state)
        async with self.db.engine.begin() as conn:
            row = (
                await conn.execute(select(oauth_states).where(oauth_states.c.state_hash == digest))
            ).first()
            gone = await conn.execute(
                delete(oauth_states).where(oauth_states.c.state_hash == digest)
            )
        if row is None or gone.rowcount != 1 or row.expires_at <= self._now():
            raise VaultError(
                "the authorization state is unknown, expired or already used; start again",
                code=ErrorCode.OAUTH_STATE_INVALID,
            )
        return row

    async def callback(
        self, state: str, *, code: str | None, error: str | None = None
    ) -> Credential:
        """Finish an authorization: exchange ``code`` and store the tokens."""
        row = await self._take_state(state)
        if error is not None or not code:
            raise VaultError(
                f"the authorization was not granted: {error or 'no code came back'}",
                code=ErrorCode.OAUTH_ERROR,
            )
        verifier = (
            self.vault.keyring.open(
                row.key_id, row.sealed_verifier, b"oauth-state|" + row.state_hash.encode()
            )
        ).decode()
        provider = self.provider(row.platform)
        try:
            async with self._client(provider, row.redirect_uri) as client:
                token = await client.fetch_token(
                    provider.token_url, code=code, code_verifier=verifier
                )
        except (OAuthError, httpx.HTTPError, ValueError) as exc:
            raise VaultError(
                f"the token request failed: {_why(exc, code, verifier)}",
                code=ErrorCode.OAUTH_ERROR,
            ) from None
        return await self._store(row.project_id, row.platform, row.user_id or None, token, provider)

    async def store_token(
        self,
        project_id: str,
        platform: str,
        token: Mapping[str, Any],
        *,
        user_id: str | None = None,
    ) -> Credential:
        """Store tokens obtained elsewhere (``POST /auth/token``)."""
        provider = self.providers.get(platform)
        return await self._store(project_id, platform, user_id, token, provider)

    async def _store(
        self,
        project_id: str,
        platform: str,
        user_id: str | None,
        token: Mapping[str, Any],
        provider: Provider | None,
        *,
        previous: Credential | None = None,
    ) -> Credential:
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise VaultError("the token response holds no access_token", code=ErrorCode.OAUTH_ERROR)
        refresh = token.get("refresh_token")
        if refresh is None and previous is not None and previous.value:
            refresh = previous.value.get("refresh_token")  # a refresh that issued no new one
        value = {
            "access_token": access,
            "refresh_token": refresh if isinstance(refresh, str) else None,
            "token_type": str(token.get("token_type") or "Bearer"),
        }
        expires_at = _expiry(token, self._now())
        scopes: Sequence[str]
        granted = token.get("scope")
        if isinstance(granted, str) and granted.strip():
            separator = provider.scope_separator if provider else " "
            scopes = [s for s in granted.replace(",", " ").replace(separator, " ").split() if s]
        elif isinstance(granted, list):
            scopes = [s for s in granted if isinstance(s, str) and 0 < len(s) <= 200]
        else:
            scopes = previous.scopes if previous else (provider.scopes if provider else ())
        return await self.vault.put(
            project_id,
            platform,
            "oauth2",
            value,
            user_id=user_id,
            scopes=scopes,
            expires_at=expires_at,
        )

    # -- refresh -------------------------------------------------------------------------------

    def due(self, credential: Credential) -> bool:
        """Whether ``credential`` is an OAuth2 token about to expire (within the leeway)."""
        return (
            credential.type == "oauth2"
            and credential.status == "valid"
            and credential.expires_at is not None
            and credential.expires_at - self._now() <= self.leeway
        )

    async def refresh(self, credential: Credential) -> Credential:
        """``credential`` with a fresh access token: one request per credential however many
        steps ask at once (they share it); ``credential_invalid`` if the grant was refused."""
        task = self._refreshing.get(credential.id)
        if task is None:
            task = asyncio.ensure_future(self._refresh(credential))
            self._refreshing[credential.id] = task
            task.add_done_callback(lambda _: self._refreshing.pop(credential.id, None))
        return await asyncio.shield(task)

    async def _current(self, stale: Credential) -> Credential:
        """``stale`` as the store holds it now (another process may have refreshed it)."""
        current = await self.vault.value(
            stale.project_id, stale.platform, user_id=stale.user_id, fresh=True
        )
        if current is None:
            raise ActionError(
                f"the {stale.platform} credential was deleted", code=ErrorCode.CREDENTIAL_MISSING
            )
        if current.status != "valid":
            raise _invalid(current)
        return current

    async def _refresh(self, stale: Credential) -> Credential:
        # one process refreshes a credential at a time (a claim on its row); the others read
        # the store again until the new version is there
        claim = 2 * self.timeout
        deadline = time.monotonic() + 2 * claim
        while True:
            current = await self._current(stale)
            refresh = (current.value or {}).get("refresh_token")
            provider = self.providers.get(current.platform)
            if not self.due(current) or not refresh or provider is None:
                return current  # fresh, or nothing to refresh with (the platform will say)
            if await self.vault.claim_refresh(current, self._owner, claim):
                break
            if time.monotonic() > deadline:
                raise ActionError(
                    f"the {current.platform} token is being refreshed elsewhere and did not "
                    "arrive in time",
                    code=ErrorCode.OAUTH_ERROR,
                    retryable=True,
                )
            await asyncio.sleep(_CLAIM_POLL_SECONDS)
        try:
            return await self._exchange_refresh(current, provider, refresh)
        finally:
            await self.vault.release_refresh(current, self._owner)

    async def _exchange_refresh(
        self, current: Credential, provider: Provider, refresh: str
    ) -> Credential:
        try:
            async with self._client(provider) as client:
                token = await client.refresh_token(provider.token_url, refresh_token=refresh)
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                await self.vault.set_status(current, "invalid")
                _log.warning(
                    "credential_invalid",
                    project_id=current.project_id,
                    platform=current.platform,
                    reason="invalid_grant",
                )
                raise _invalid(current) from None
            raise ActionError(
                f"refreshing the {current.platform} token failed: "
                f"{_why(exc, *(current.value or {}).values())}",
                code=ErrorCode.OAUTH_ERROR,
                retryable=True,
            ) from None
        except (httpx.HTTPError, ValueError) as exc:
            raise ActionError(
                f"refreshing the {current.platform} token failed: "
                f"{_why(exc, *(current.value or {}).values())}",
                code=ErrorCode.OAUTH_ERROR,
                retryable=True,
            ) from None
        _log.info("credential_refreshed", project_id=current.project_id, platform=current.platform)
        stored = await self._store(
            current.project_id,
            current.platform,
            current.user_id,
            token,
            provider,
            previous=current,
        )
        found = await self.vault.value(
            stored.project_id, stored.platform, user_id=stored.user_id, fresh=True
        )
        assert found is not None
        return found


# an expiry further away than this is taken as none (a provider's nonsense, or "never")
_MAX_LIFETIME = timedelta(days=3650)


def _expiry(token: Mapping[str, Any], now: datetime) -> datetime | None:
    """When a token response says the access token expires; ``None`` when it does not say,
    or says something no clock can hold."""
    try:
        if isinstance(token.get("expires_in"), int | float):
            seconds = timedelta(seconds=float(token["expires_in"]))
            return now + seconds if timedelta(0) <= seconds <= _MAX_LIFETIME else None
        if isinstance(token.get("expires_at"), int | float):
            when = datetime.fromtimestamp(float(token["expires_at"]), UTC)
            return when if when - now <= _MAX_LIFETIME else None
    except (OverflowError, ValueError, OSError):
        return None
    return None


def _invalid(credential: Credential) -> ActionError:
    return ActionError(
        f"the {credential.platform} credential is no longer valid (its refresh was refused); "
        "connect the platform again",
        code=ErrorCode.CREDENTIAL_INVALID,
    )


def _why(exc: Exception, *secrets: Any) -> str:
    """What a provider said went wrong, without the tokens or code it may have quoted back."""
    if isinstance(exc, OAuthError):
        said = f"{exc.error}: {exc.description}" if exc.description else str(exc.error)
        hidden = Redactor()
        hidden.add(*(s for s in secrets if isinstance(s, str)))
        return hidden.text(said)[:500]
    if isinstance(exc, httpx.HTTPStatusError):
        return f"it answered {exc.response.status_code}"
    return type(exc).__name__
