"""The vault as steps reach it (``runtime.credentials.CredentialSource``): in this process
(``LocalVault``: the store, refreshing OAuth2 tokens about to expire), or a separate
``puraify serve vault`` over HTTP (``HttpVault``: ``GET /vault/token/{project}/{platform}``
with this engine's ``X-Engine-ID``/``X-Engine-Key``). Both answer the same way: the credential,
``None`` when there is none, ``credential_invalid`` for one that cannot be used; the HTTP one
``vault_unavailable`` (retryable) when the vault cannot be asked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from ..codes import ErrorCode
from ..errors import ActionError
from ..runtime.credentials import StepCredential
from ..runtime.remote import engine_client
from ..store.cache import SingleFlightCache
from .oauth import OAuth
from .store import Credential, VaultStore

__all__ = ["HttpVault", "LocalVault"]


def _step_credential(found: Credential) -> StepCredential:
    return StepCredential(
        platform=found.platform,
        type=found.type,
        scopes=found.scopes,
        status=found.status,
        value=dict(found.value or {}),
    )


class LocalVault:
    """The vault of this process's store."""

    def __init__(self, store: VaultStore, oauth: OAuth | None = None) -> None:
        self.store = store
        self.oauth = oauth

    async def credential(
        self, project_id: str, platform: str, user_id: str | None
    ) -> Credential | None:
        """The credential with its value, refreshed first if it was about to expire."""
        found = await self.store.value(project_id, platform, user_id=user_id)
        if found is not None and self.oauth is not None and self.oauth.due(found):
            found = await self.oauth.refresh(found)
        return found

    async def fetch(
        self, project_id: str, platform: str, user_id: str | None
    ) -> StepCredential | None:
        found = await self.credential(project_id, platform, user_id)
        return None if found is None else _step_credential(found)


class HttpVault:
    """A separate vault, asked over HTTP; answers kept ``cache_seconds``."""

    def __init__(
        self,
        url: str,
        engine_id: str,
        key: str,
        *,
        cache_seconds: float = 5.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = engine_client(url, engine_id, key, timeout=timeout, transport=transport)
        self._found: SingleFlightCache[tuple[str, str, str], StepCredential | None] = (
            SingleFlightCache(cache_seconds, maxsize=4096, clock=clock)
        )

    async def fetch(
        self, project_id: str, platform: str, user_id: str | None
    ) -> StepCredential | None:
        key = (project_id, platform, user_id or "")
        found = self._found.get(key)
        if found is None:
            found = await self._found.load(key, lambda: self._ask(project_id, platform, user_id))
        return found

    async def _ask(
        self, project_id: str, platform: str, user_id: str | None
    ) -> StepCredential | None:
        path = f"/vault/token/{quote(project_id, safe='')}/{quote(platform, safe='')}"
        try:
            answer = await self._client.get(path, params={"user_id": user_id} if user_id else None)
        except httpx.HTTPError as exc:
            raise _unavailable(type(exc).__name__) from None
        body = _json(answer)
        code = _error_code(body)
        if answer.status_code == 404 and code == "not_found":
            return None
        if code == ErrorCode.CREDENTIAL_INVALID:
            raise ActionError(
                f"the {platform} credential is no longer valid; connect the platform again",
                code=ErrorCode.CREDENTIAL_INVALID,
            )
        if answer.status_code in (401, 403):
            raise ActionError(
                f"the vault refused this engine ({code or answer.status_code}): it needs "
                "vault:read in Engine Control",
                code=ErrorCode.VAULT_UNAVAILABLE,
            )
        try:
            answer.raise_for_status()
            credential = body["credential"]
            if not isinstance(credential, dict) or not isinstance(body.get("type"), str):
                raise ValueError("not a credential")
            return StepCredential(
                platform=platform,
                type=body["type"],
                scopes=tuple(str(s) for s in body.get("scopes") or ()),
                status=str(body.get("status") or "valid"),
                value=credential,
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise _unavailable(_why(exc)) from None

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_code(body: Any) -> str | None:
    """The ``error.code`` of a failure envelope."""
    error = body.get("error") if isinstance(body, dict) else None
    found = error.get("code") if isinstance(error, dict) else None
    return found if isinstance(found, str) else None


def _json(answer: httpx.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def _unavailable(why: str) -> ActionError:
    return ActionError(
        f"the vault could not be asked ({why})",
        code=ErrorCode.VAULT_UNAVAILABLE,
        retryable=True,
    )


def _why(exc: Exception) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"it answered {exc.response.status_code}"
    return type(exc).__name__
