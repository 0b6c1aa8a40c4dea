"""Authentication for the API: bearer tokens (``Authorization: Bearer pfy_...``) with scopes
for callers, and ``X-Engine-ID`` with ``X-Engine-Key`` for engines (Engine Control)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from ..control.rules import EngineRecord
from ..store.tokens import Principal
from .errors import ApiError
from .state import application

__all__ = ["admin_engine", "engine", "require"]


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller's principal, which must hold ``scope`` (401 / 403 otherwise)."""

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise ApiError("send `Authorization: Bearer <token>`", code="unauthenticated")
        principal = await application(request).tokens.verify(token.strip())
        if principal is None:
            raise ApiError("the token is unknown, expired or revoked", code="unauthenticated")
        if not principal.allows(scope):
            raise ApiError(f"the token lacks the {scope!r} scope", code="forbidden")
        request.state.principal = principal
        return principal

    return dependency


async def engine(request: Request) -> EngineRecord:
    """A dependency: the engine whose ``X-Engine-ID`` and ``X-Engine-Key`` these are (401 for
    anything else: missing headers, an unknown id, a wrong or another engine's key, a revoked
    engine; which one is not said)."""
    engine_id = request.headers.get("x-engine-id", "")
    key = request.headers.get("x-engine-key", "")
    if not engine_id or not key:
        raise ApiError("send `X-Engine-ID` and `X-Engine-Key`", code="unauthenticated")
    found = await application(request).control.authenticate(engine_id, key)
    if found is None:
        raise ApiError("the engine id and key are not valid", code="unauthenticated")
    request.state.engine = found
    return found


async def admin_engine(request: Request) -> EngineRecord:
    """A dependency: an engine holding ``control:admin`` (403 for any other valid engine)."""
    found = await engine(request)
    if not found.is_admin:
        raise ApiError(f"engine {found.engine_id!r} does not hold control:admin", code="forbidden")
    return found
