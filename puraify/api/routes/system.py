"""Health, readiness, metrics, the action catalogue and the dev login."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text

from ...store.tokens import SCOPES, Principal
from ..auth import require
from ..errors import ApiError
from ..state import application

router = APIRouter()


@router.get("/healthz", tags=["health"], summary="Process up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    summary="Ready to serve (database reachable)",
    responses={503: {"description": "not ready"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when the store answers and the disks it and the workspaces write to have room
    (``ready_min_free_bytes``): a full disk fails every write, so a balancer should look
    elsewhere."""
    app = application(request)
    try:
        async with app.db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        return _unready(f"database unreachable: {type(exc).__name__}")
    places = {"run store": app.db.file.parent if app.db.file else None}
    if app.profile.server:
        places["workspaces"] = app.settings.workspace or app.settings.home / "workspaces"
    for what, where in places.items():
        if where is None:
            continue
        try:
            free = shutil.disk_usage(_existing(where)).free
        except OSError as exc:
            return _unready(f"{what}: {exc.strerror or type(exc).__name__}")
        if free < app.settings.ready_min_free_bytes:
            return _unready(f"{what}: {free // (1024 * 1024)} MiB free, below the minimum")
    return JSONResponse({"status": "ready"})


def _unready(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)


def _existing(path: Path) -> Path:
    """``path``, or its nearest existing parent (a workspace root is made on first use)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


@router.get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(
    request: Request, _: Annotated[Principal, Depends(require("metrics:read"))]
) -> Response:
    return Response(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


@router.get("/actions", tags=["catalogue"], summary="Every action with its JSON Schemas")
async def list_actions(
    request: Request, _: Annotated[Principal, Depends(require("actions:read"))]
) -> list[dict[str, Any]]:
    return application(request).registry.catalog()


@router.get(
    "/actions/{name}",
    tags=["catalogue"],
    summary="One action",
    responses={404: {"description": "unknown action"}},
)
async def get_action(
    request: Request, name: str, _: Annotated[Principal, Depends(require("actions:read"))]
) -> dict[str, Any]:
    registry = application(request).registry
    try:
        return registry.get(name).describe()
    except KeyError:
        raise ApiError(f"unknown action {name!r}", code="unknown_action") from None


@router.post(
    "/login",
    tags=["auth"],
    summary="A short-lived dev token (dev mode only)",
    responses={401: {"description": "dev mode is off"}},
)
async def login(
    request: Request,
    body: Annotated[
        dict[str, Any], Body(examples=[{"project_id": "demo", "scopes": ["execute", "runs:read"]}])
    ],
) -> dict[str, Any]:
    if not application(request).settings.dev_mode:
        raise ApiError(
            "dev login is off; use an API token (`puraify tokens create`)", code="unauthenticated"
        )
    project = body.get("project_id")
    scopes = body.get("scopes") or ["execute", "runs:read", "runs:write", "actions:read"]
    if not isinstance(project, str) or not project or not isinstance(scopes, list):
        raise ApiError("send {project_id, scopes}", code="invalid_request")
    if not set(scopes) <= SCOPES - {"admin"}:
        raise ApiError("dev tokens cannot carry admin or unknown scopes", code="forbidden")
    token_id, token = await application(request).tokens.create(
        project, set(scopes), name="dev-login", ttl=timedelta(hours=1)
    )
    return {
        "token": token,
        "token_id": token_id,
        "expires_in": 3600,
        "project_id": project,
        "scopes": scopes,
    }
