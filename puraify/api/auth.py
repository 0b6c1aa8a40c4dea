"""Authentication for the API: bearer tokens (``Authorization: Bearer pfy_...``) with scopes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from ..store.tokens import Principal
from .errors import ApiError
from .state import application

__all__ = ["require"]


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
