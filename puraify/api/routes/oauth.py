"""Connecting platforms with OAuth2, for a project or one of its users.

``POST /auth/start`` (a token with the ``vault`` scope) answers where to send the user and the
``state`` that will come back; ``/auth/callback`` (where the provider sends the user back, with
``code`` and ``state``; the state is its credential, so it takes no token) stores the tokens;
``POST /auth/token`` stores tokens obtained elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, field_validator

from ...store.tokens import Principal
from ..auth import require
from ..errors import ApiError
from ..schemas import Envelope
from ..state import application

router = APIRouter(tags=["oauth"])

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"
_Name = Annotated[str, Field(min_length=1, max_length=128, pattern=_NAME)]
_Owner = Annotated[str | None, Field(default=None, max_length=200, pattern=_NAME)]
_FAILURES: dict[int | str, dict[str, Any]] = {
    404: {"model": Envelope, "description": "no provider for the platform"},
    502: {"model": Envelope, "description": "the provider refused or failed"},
}


class _Owned(BaseModel):
    project_id: _Owner = None
    project: _Owner = None
    user_id: _Owner = None
    platform: _Name

    def owner(self, principal: Principal) -> str:
        """The project: the token's own (another project's is as absent as a missing one)."""
        named = self.project_id or self.project
        if named is not None and named != principal.project_id and "admin" not in principal.scopes:
            raise ApiError(f"project {named} not found", code="not_found", field="project_id")
        return named or principal.project_id


class StartBody(_Owned):
    redirect_uri: str = Field(min_length=1, max_length=2000)

    @field_validator("redirect_uri")
    @classmethod
    def _http(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value


class TokenBody(_Owned):
    access_token: str = Field(min_length=1, max_length=8192)
    refresh_token: str | None = Field(default=None, max_length=8192)
    token_type: str | None = Field(default=None, max_length=64)
    expires_in: int | None = Field(default=None, ge=0, le=10 * 365 * 86400)
    scope: str | None = Field(default=None, max_length=4000)
    scopes: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, max_length=64
    )


class CallbackBody(BaseModel):
    state: str | None = Field(default=None, max_length=200)
    code: str | None = Field(default=None, max_length=4096)
    error: str | None = Field(default=None, max_length=200)


@router.post("/auth/start", summary="Start connecting a platform", responses=_FAILURES)
async def start(
    request: Request,
    body: StartBody,
    principal: Annotated[Principal, Depends(require("vault"))],
) -> dict[str, Any]:
    project = body.owner(principal)
    started = await application(request).oauth.start(
        project, body.platform, body.redirect_uri, user_id=body.user_id
    )
    return {"status": "success", "platform": body.platform, **started}


async def _finish(request: Request, state: str | None, code: str | None, error: str | None) -> Any:
    if not state:
        raise ApiError("the authorization's `state` is missing", code="oauth_state_invalid")
    found = await application(request).oauth.callback(state, code=code, error=error)
    return {"status": "success", "platform": found.platform, "credential": found.describe()}


@router.get("/auth/callback", summary="Where the provider sends the user back", responses=_FAILURES)
async def callback(
    request: Request,
    state: Annotated[str | None, Query(max_length=200)] = None,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    result: dict[str, Any] = await _finish(request, state, code, error)
    return result


@router.post("/auth/callback", summary="Finish an authorization", responses=_FAILURES)
async def callback_post(request: Request, body: CallbackBody) -> dict[str, Any]:
    result: dict[str, Any] = await _finish(request, body.state, body.code, body.error)
    return result


@router.post("/auth/token", summary="Store tokens obtained elsewhere")
async def store_token(
    request: Request,
    body: TokenBody,
    principal: Annotated[Principal, Depends(require("vault"))],
) -> dict[str, Any]:
    project = body.owner(principal)
    token: dict[str, Any] = {"access_token": body.access_token}
    if body.refresh_token:
        token["refresh_token"] = body.refresh_token
    if body.token_type:
        token["token_type"] = body.token_type
    if body.expires_in is not None:
        token["expires_in"] = body.expires_in
    if body.scopes is not None:
        token["scope"] = list(body.scopes)
    elif body.scope:
        token["scope"] = body.scope
    found = await application(request).oauth.store_token(
        project, body.platform, token, user_id=body.user_id
    )
    return {"status": "success", "platform": body.platform, "credential": found.describe()}
