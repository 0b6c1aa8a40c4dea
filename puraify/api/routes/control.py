"""Engine Control's routes: the original service's six, wire-compatible, and the admin routes.

Every route needs ``X-Engine-ID`` and ``X-Engine-Key`` (401 when missing or wrong, one
engine's key with another's id included); changes need an engine holding ``control:admin``
(403 otherwise), as does asking about, or reading the events of, another engine.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ...control.rules import EngineRecord
from ...control.service import MAX_EVENT_BYTES, ControlService
from ..auth import admin_engine, engine
from ..errors import ApiError
from ..state import application

router = APIRouter(tags=["engine control"])

Engine = Annotated[EngineRecord, Depends(engine)]
Admin = Annotated[EngineRecord, Depends(admin_engine)]
_PATTERN = r"^[A-Za-z0-9*][A-Za-z0-9._:@*-]{0,127}$"  # no control characters, header-safe
_Name = Annotated[str, Field(min_length=1, max_length=128, pattern=_PATTERN)]
_Action = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
_PathName = Annotated[str, Path(min_length=1, max_length=128, pattern=_PATTERN)]
_Scopes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]],
    Field(max_length=64),
]


def _control(request: Request) -> ControlService:
    return application(request).control


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


class Registration(BaseModel):
    model_config = ConfigDict(extra="ignore")

    engine_id: _Name
    permissions: dict[str, dict[str, _Scopes]] = Field(default_factory=dict)
    depends_on: list[_Name] = Field(default_factory=list, max_length=64)
    description: str = Field(default="", max_length=500)


class CheckRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    engine_id: _Name | None = None
    platform: _Name
    action_type: _Action
    scopes: _Scopes | None = None


class PermissionsBody(BaseModel):
    permissions: dict[str, dict[str, _Scopes]]


class Grant(BaseModel):
    platform: _Name
    action_type: _Action
    scopes: _Scopes = Field(default_factory=list)


class PlatformBody(BaseModel):
    status: str = Field(min_length=1, max_length=16)
    version: str | None = Field(default=None, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")
    message: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")


class FlagBody(BaseModel):
    enabled: bool


@router.post("/engines/register", summary="Register an engine (its key is shown once)")
async def register(request: Request, body: Registration, admin: Admin) -> dict[str, Any]:
    key = await _control(request).register(
        body.engine_id,
        body.permissions,
        depends_on=body.depends_on,
        description=body.description,
        by=admin.engine_id,
    )
    return {"engine_id": body.engine_id, "engine_key": key}


@router.post("/engines/validate", summary="Check the caller's engine credentials")
async def validate(caller: Engine) -> dict[str, Any]:
    return {"valid": True, "engine_id": caller.engine_id, "key_id": caller.key_id}


@router.post("/actions/check", summary="May an engine run this action on this platform now?")
async def check(request: Request, body: CheckRequest, caller: Engine) -> dict[str, Any]:
    subject = body.engine_id or caller.engine_id
    if subject != caller.engine_id and not caller.is_admin:
        raise ApiError(
            "an engine may ask about itself only (asking about others needs control:admin)",
            code="forbidden",
        )
    verdict = await _control(request).check(
        subject,
        body.platform,
        body.action_type,
        scopes=body.scopes,
        request_id=_request_id(request),
        asked_by=caller.engine_id,
    )
    return verdict.as_dict()


@router.get("/platforms/list", summary="Platform statuses")
async def platforms(request: Request, caller: Engine, detail: bool = False) -> dict[str, Any]:
    return {"platforms": await _control(request).platforms(detail=detail)}


@router.get("/config/global", summary="API version and feature flags")
async def global_config(request: Request, caller: Engine) -> dict[str, Any]:
    return await _control(request).global_config()


@router.post(
    "/log/engine_event",
    summary="Log an engine's event (any JSON object up to 64 KiB)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def log_event(request: Request, caller: Engine) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_EVENT_BYTES:
        raise ApiError(f"an engine event is at most {MAX_EVENT_BYTES} bytes", code="body_too_large")
    event = application(request).preparer.parse(raw, fmt="json").data
    if not isinstance(event, dict):
        raise ApiError("an engine event is a JSON object", code="invalid_request")
    await _control(request).log_event(caller.engine_id, event, request_id=_request_id(request))
    return {"status": "logged"}


@router.get("/log/engine_events", summary="Audit events, newest first")
async def events(
    request: Request,
    caller: Engine,
    engine_id: Annotated[str | None, Query(max_length=128, pattern=_PATTERN)] = None,
    platform: Annotated[str | None, Query(max_length=128, pattern=_PATTERN)] = None,
    kind: Annotated[str | None, Query(pattern="^(check|event|admin)$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if not caller.is_admin:
        if engine_id not in (None, caller.engine_id):
            raise ApiError("an engine reads its own events only", code="forbidden")
        engine_id = caller.engine_id
    rows = await _control(request).events(
        engine_id=engine_id, platform=platform, kind=kind, since=since, until=until, limit=limit
    )
    return {"events": json.loads(json.dumps(rows, default=str))}


@router.get("/engines", summary="Registered engines (never their keys)")
async def engines(request: Request, admin: Admin) -> dict[str, Any]:
    return {"engines": await _control(request).engines()}


@router.post("/engines/{engine_id}/revoke", summary="Revoke an engine")
async def revoke(request: Request, engine_id: _PathName, admin: Admin) -> dict[str, Any]:
    await _control(request).revoke(engine_id, by=admin.engine_id)
    return {"engine_id": engine_id, "revoked": True}


@router.post("/engines/{engine_id}/rotate-key", summary="Give an engine a new key (shown once)")
async def rotate_key(request: Request, engine_id: _PathName, admin: Admin) -> dict[str, Any]:
    key = await _control(request).rotate_key(engine_id, by=admin.engine_id)
    return {"engine_id": engine_id, "engine_key": key}


@router.put("/engines/{engine_id}/permissions", summary="Replace an engine's permissions")
async def set_permissions(
    request: Request, engine_id: _PathName, body: PermissionsBody, admin: Admin
) -> dict[str, Any]:
    result = await _control(request).set_permissions(
        engine_id, body.permissions, merge=False, by=admin.engine_id
    )
    return {"engine_id": engine_id, "permissions": result}


@router.post("/engines/{engine_id}/grant", summary="Add one permission to an engine")
async def grant(
    request: Request, engine_id: _PathName, body: Grant, admin: Admin
) -> dict[str, Any]:
    result = await _control(request).set_permissions(
        engine_id,
        {body.platform: {body.action_type: body.scopes}},
        merge=True,
        by=admin.engine_id,
    )
    return {"engine_id": engine_id, "permissions": result}


@router.put("/platforms/{platform}", summary="Set a platform's status")
async def set_platform(
    request: Request, platform: _PathName, body: PlatformBody, admin: Admin
) -> dict[str, Any]:
    await _control(request).set_platform(
        platform, body.status, version=body.version, message=body.message, by=admin.engine_id
    )
    return {"platform": platform, "status": body.status}


@router.put("/flags/{name}", summary="Turn a feature flag on or off")
async def set_flag(
    request: Request, name: _PathName, body: FlagBody, admin: Admin
) -> dict[str, Any]:
    await _control(request).set_flag(name, body.enabled, by=admin.engine_id)
    return {"flag": name, "enabled": body.enabled}
