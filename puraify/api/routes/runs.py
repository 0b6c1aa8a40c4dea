"""Run routes: history, one run, live events (Server-Sent Events), cancel and retry.

Every lookup is scoped to the caller's project: another project's run is 404, exactly like a
run that does not exist.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ...mission.model import MissionResult
from ...store.tokens import Principal
from ..auth import require
from ..errors import ApiError
from ..schemas import CancelAnswer, RetryAnswer, RunList, RunSummary
from ..state import application, runs

_KEEP_ALIVE_SECONDS = 15.0

router = APIRouter(tags=["runs"])


class RunDetail(MissionResult):
    """A run as the spec's ``MissionResult``, and the run it retries, if any."""

    parent_run_id: str | None = None


@router.get("/runs", response_model=RunList, summary="Runs of your project, newest first")
async def list_runs(
    request: Request,
    principal: Annotated[Principal, Depends(require("runs:read"))],
    status: Annotated[str | None, Query(pattern="^(running|completed|failed|cancelled)$")] = None,
    since: Annotated[datetime | None, Query()] = None,
    mission: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> RunList:
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rows = await application(request).store.list_runs(
        status=status,
        since=since,
        mission=mission,
        limit=limit,
        offset=offset,
        project_id=principal.project_id,
    )
    return RunList(runs=[RunSummary(**row) for row in rows], limit=limit, offset=offset)


@router.get(
    "/runs/{run_id}",
    response_model=RunDetail,
    summary="One run: status, steps, outputs, errors",
    responses={404: {"description": "no such run in your project"}},
)
async def get_run(
    request: Request, run_id: str, principal: Annotated[Principal, Depends(require("runs:read"))]
) -> Response:
    record = await application(request).store.get(run_id, project_id=principal.project_id)
    detail = RunDetail(**dict(record.result()), parent_run_id=record.parent_run_id)
    # serialized once, by the model itself (a run may hold thousands of steps)
    return Response(detail.model_dump_json(), media_type="application/json")


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event.get('event', 'message')}\ndata: {json.dumps(event, default=str)}\n\n".encode()


@router.get(
    "/runs/{run_id}/events",
    summary="Live step transitions (text/event-stream)",
    responses={200: {"content": {"text/event-stream": {}}}, 404: {"description": "no such run"}},
)
async def run_events(
    request: Request, run_id: str, principal: Annotated[Principal, Depends(require("runs:read"))]
) -> StreamingResponse:
    """Finished steps first (``replayed``), then each transition as it happens, whichever API
    process executes the run; the stream ends with ``run_finished``."""
    events = runs(request).events(run_id, project_id=principal.project_id)
    await anext(events)  # not found (404) before the stream starts

    async def stream() -> AsyncIterator[bytes]:
        quiet_since = time.monotonic()
        try:
            async for event in events:
                if event is not None:
                    quiet_since = time.monotonic()
                    yield _sse(event)
                elif time.monotonic() - quiet_since >= _KEEP_ALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"
                    if await request.is_disconnected():
                        return
        finally:
            await events.aclose()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/runs/{run_id}/cancel",
    response_model=CancelAnswer,
    summary="Cancel a run",
    responses={404: {"description": "no such run in your project"}},
)
async def cancel_run(
    request: Request, run_id: str, principal: Annotated[Principal, Depends(require("runs:write"))]
) -> CancelAnswer:
    status = await runs(request).cancel(run_id, project_id=principal.project_id)
    return CancelAnswer(run_id=run_id, status=status)


@router.post(
    "/runs/{run_id}/retry",
    status_code=202,
    response_model=RetryAnswer,
    summary="Re-run only failed, skipped and cancelled steps",
    responses={
        404: {"description": "no such run in your project"},
        409: {"description": "still running"},
    },
)
async def retry_run(
    request: Request,
    run_id: str,
    principal: Annotated[Principal, Depends(require("execute"))],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    async def produce() -> tuple[int, Any]:
        new_id = await runs(request).retry(run_id, project_id=principal.project_id)
        answer = RetryAnswer(run_id=new_id, retry_of=run_id, location=f"/runs/{new_id}")
        return 202, answer.model_dump(mode="json")

    if idempotency_key is None:
        status, body = await produce()
    else:
        raw = f"retry:{run_id}".encode()
        status, body = await application(request).idempotency.run(
            principal.project_id, idempotency_key, raw, produce
        )
    if not isinstance(body, dict) or "location" not in body:
        raise ApiError("retry failed", code="bad_request")
    return JSONResponse(body, status_code=status, headers={"Location": body["location"]})
