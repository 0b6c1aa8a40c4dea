"""The vault's routes. A project's credentials, by a token holding the ``vault`` scope for that
project: store (``PUT``), read the metadata (``GET``), delete. Values go out only through
``GET /vault/token/{project}/{platform}``, to an engine holding ``vault:read`` in Engine Control
(``X-Engine-ID``/``X-Engine-Key``); every such read is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from ...control.rules import EngineRecord, granted_scopes
from ...errors import PuraifyError
from ...store.tokens import Principal
from ..auth import engine, require
from ..errors import ApiError
from ..state import application

router = APIRouter(tags=["vault"])

_Part = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
]
_User = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]


class CredentialBody(BaseModel):
    type: str = Field(min_length=1, max_length=32)
    value: str | dict[str, Any]
    scopes: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=64
    )
    expires_at: datetime | None = None


async def _owned(
    project: _Part,
    platform: _Part,
    principal: Annotated[Principal, Depends(require("vault"))],
    user_id: _User = None,
) -> tuple[str, str, str | None]:
    """The credential a vault-scoped token of its own project names (project, platform,
    user); another project's are as absent as missing ones."""
    if principal.project_id != project and "admin" not in principal.scopes:
        raise ApiError(f"no credential for {project}", code="not_found")
    return project, platform, user_id


Owned = Annotated[tuple[str, str, str | None], Depends(_owned)]


@router.put("/vault/credentials/{project}/{platform}", summary="Store a credential")
async def put_credential(request: Request, body: CredentialBody, owned: Owned) -> dict[str, Any]:
    project, platform, user_id = owned
    found = await application(request).vault.put(
        project,
        platform,
        body.type,
        body.value,
        user_id=user_id,
        scopes=body.scopes,
        expires_at=body.expires_at,
    )
    return found.describe()


@router.get("/vault/credentials/{project}/{platform}", summary="A credential's metadata")
async def get_credential(request: Request, owned: Owned) -> dict[str, Any]:
    project, platform, user_id = owned
    found = await application(request).vault.describe(project, platform, user_id=user_id)
    if found is None:
        raise ApiError(f"no credential for {project}/{platform}", code="not_found")
    return found.describe()


@router.delete("/vault/credentials/{project}/{platform}", summary="Delete a credential")
async def delete_credential(request: Request, owned: Owned) -> dict[str, Any]:
    project, platform, user_id = owned
    if not await application(request).vault.delete(project, platform, user_id=user_id):
        raise ApiError(f"no credential for {project}/{platform}", code="not_found")
    return {"deleted": True}


@router.get("/vault/token/{project}/{platform}", summary="A credential's value, for an engine")
async def token(
    request: Request,
    project: _Part,
    platform: _Part,
    caller: Annotated[EngineRecord, Depends(engine)],
    user_id: _User = None,
) -> dict[str, Any]:
    app = application(request)
    allowed = granted_scopes(caller.permissions, "vault", "read") is not None
    found = None
    reason = "permission_missing"
    try:
        if allowed:
            # refreshed first when it was about to expire (one refresh per credential)
            found = await app.credentials.credential(project, platform, user_id)
            reason = "allowed" if found is not None else "not_found"
    except PuraifyError as exc:
        reason = exc.code
        raise
    finally:
        app.control.audit.add(
            {
                "kind": "vault",
                "request_id": getattr(request.state, "request_id", None),
                "engine_id": caller.engine_id,
                "platform": platform,
                "action": "read",
                "allowed": reason == "allowed",
                "reason": reason,
                "data": {"project_id": project, "user_id": user_id},
            }
        )
    if not allowed:
        raise ApiError(f"engine {caller.engine_id!r} does not hold vault:read", code="forbidden")
    if found is None or found.value is None:
        raise ApiError(f"no credential for {project}/{platform}", code="not_found")
    if found.status != "valid":
        raise ApiError(
            f"the {platform} credential of {project} is {found.status}; connect it again",
            code="credential_invalid",
        )
    # the refresh token stays in the vault, which refreshes: an engine gets what it sends
    value = {k: v for k, v in found.value.items() if k != "refresh_token"}
    secret = value.get("access_token") or next(iter(value.values()))
    return {
        "token": secret,
        "type": found.type,
        "scopes": list(found.scopes),
        "status": found.status,
        "expires_at": found.expires_at.isoformat() if found.expires_at else None,
        "credential": value,
    }
