"""Execution routes: single actions (``/execute``, ``/perform_action``) and missions."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse

from ...errors import Issue, PuraifyError, ValidationError
from ...mission.model import MissionResult, StepStatus
from ...runtime.credentials import MISSING_OR_SCOPE, MISSING_OR_SCOPE_CODES
from ...runtime.prepare import Prepared
from ...store.tokens import Principal
from ..auth import require
from ..errors import ApiError, error_body, status_for, status_for_code
from ..normalize import (
    ActionRequest,
    in_readme_shape,
    normalize_execute,
    normalize_perform_action,
)
from ..schemas import Accepted, DryRun, Envelope, MissionCheck, PerformActionAnswer, rfc3339
from ..state import application, runs

router = APIRouter(tags=["execution"])

IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", description="Same key + same body = same answer.")
]


_FAIL: dict[int | str, dict[str, Any]] = {
    400: {"model": Envelope},
    401: {"model": Envelope},
    403: {"model": Envelope},
    404: {"model": Envelope},
    409: {"model": Envelope},
    413: {"model": Envelope},
    422: {"model": Envelope},
    502: {"model": Envelope},
    503: {"model": Envelope},
    504: {"model": Envelope},
}


async def _idempotent(
    request: Request,
    principal: Principal,
    key: str | None,
    produce: Any,
    words: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> JSONResponse:
    """``produce``'s answer, or the first answer to ``key``; ``words`` rewrites every answer,
    a refusal of the key included, in the words of the caller's request shape."""
    try:
        if key is None:
            status, payload = await produce()
        else:
            # the key covers the whole request: method, path, the query as the route reads
            # it (parameters in any order; the values of a repeated one in theirs) and body
            query = urlencode(sorted(request.query_params.multi_items(), key=lambda kv: kv[0]))
            raw = f"{request.method} {request.url.path}?{query}\n".encode() + await request.body()
            status, payload = await application(request).idempotency.run(
                principal.project_id, key, raw, produce
            )
    except PuraifyError as exc:
        if words is None:
            raise  # answered by the API's error handlers
        status, payload = (
            status_for(exc),
            error_body(exc, getattr(request.state, "request_id", None)),
        )
    return JSONResponse(words(payload) if words is not None else payload, status_code=status)


def _run_key(principal: Principal, key: str | None) -> str | None:
    """The run-level key of a request's Idempotency-Key: the run a request creates carries it,
    so a repeat that takes over a key whose first request died continues that run (resumed)
    instead of creating a second one."""
    if key is None:
        return None
    digest = hashlib.sha256(f"{principal.project_id}\0{key}".encode()).hexdigest()
    return f"api:{digest}"


async def _run_action(
    request: Request, principal: Principal, req: ActionRequest, run_key: str | None
) -> tuple[int, dict[str, Any]]:
    """Run one action as a one-step run; ``(http_status, envelope)``."""
    request_id = getattr(request.state, "request_id", None)
    base: dict[str, Any] = {
        "request_id": request_id,
        "platform": req.platform,
        "action": req.action,
        "timestamp": rfc3339(),
    }
    try:
        if req.project_id is not None and req.project_id != principal.project_id:
            raise ApiError("project not found", code="not_found", field="project_id")
        outcome = await runs(request).run_action(
            req.action,
            platform=req.platform,
            parameters=req.parameters,
            context=req.context,
            project_id=principal.project_id,
            idempotency_key=run_key,
        )
    except PuraifyError as exc:
        return status_for(exc), {**base, **error_body(exc, request_id)}
    base.update(run_id=outcome.run_id, platform=outcome.platform, duration_ms=outcome.duration_ms)
    step = outcome.step
    if step is None:
        error = ApiError(
            "the action is still running; follow it at /runs/" + outcome.run_id, code="timeout"
        )
        return 504, {**base, **error_body(error, request_id)}
    if step.status is StepStatus.SUCCESS:
        return 200, {**base, "status": "success", "result": step.output or {}}
    code = step.error.code if step.error else "cancelled"
    message = step.error.message if step.error else "the action did not run"
    detail: dict[str, Any] = {"code": code, "retryable": bool(step.error and step.error.retryable)}
    if step.error and step.error.status is not None:
        detail["status"] = step.error.status
    if code in MISSING_OR_SCOPE_CODES:  # the seeds' callers branch on this sentence
        detail["message"] = message
        message = MISSING_OR_SCOPE
    return status_for_code(code), {**base, "status": "fail", "reason": message, "error": detail}


def _in_readme_words(envelope: dict[str, Any]) -> dict[str, Any]:
    """The envelope as the README's callers read it, every other field kept: ``data`` is the
    result; a failure's ``status`` is ``error`` and its ``message`` the reason."""
    if envelope.get("status") == "success":
        return {**envelope, "data": envelope.get("result")}
    return {**envelope, "status": "error", "message": envelope.get("reason")}


async def _json_body(request: Request) -> Any:
    """A JSON request body, parsed by the mission parser and under its limits (UTF-8, depth,
    size, duplicate keys, numbers JSON can spell): a structured 4xx for anything else, never
    a 500."""
    return application(request).preparer.parse(await request.body(), fmt="json").data


def _object_body(description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }


@router.post(
    "/execute",
    response_model=Envelope,
    responses=_FAIL,
    summary="Run one action",
    openapi_extra=_object_body("Any of the seed request shapes."),
)
async def execute(
    request: Request,
    principal: Annotated[Principal, Depends(require("execute"))],
    body: Annotated[Any, Depends(_json_body)],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A single action, in any of the Execution Engine's request shapes, as a one-step run."""

    words = _in_readme_words if in_readme_shape(body) else None

    async def produce() -> tuple[int, dict[str, Any]]:
        try:
            req = normalize_execute(body)
        except PuraifyError as exc:
            return status_for(exc), error_body(exc, getattr(request.state, "request_id", None))
        return await _run_action(request, principal, req, _run_key(principal, idempotency_key))

    return await _idempotent(request, principal, idempotency_key, produce, words)


@router.post(
    "/perform_action",
    response_model=PerformActionAnswer,
    responses=_FAIL,
    summary="Run one action (Action Engine shape)",
    openapi_extra=_object_body("{user_id, platform, action_type, payload}"),
)
async def perform_action(
    request: Request,
    principal: Annotated[Principal, Depends(require("execute"))],
    body: Annotated[Any, Depends(_json_body)],
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """The Action Engine's ``/perform_action``: answers with ``action_type`` and ``result``."""

    async def produce() -> tuple[int, dict[str, Any]]:
        try:
            req = normalize_perform_action(body)
        except PuraifyError as exc:
            return status_for(exc), error_body(exc, getattr(request.state, "request_id", None))
        status, envelope = await _run_action(
            request, principal, req, _run_key(principal, idempotency_key)
        )
        answer: dict[str, Any] = {
            k: envelope[k]
            for k in ("status", "request_id", "run_id", "result", "reason", "error")
            if k in envelope
        }
        answer["action_type"] = req.action
        return status, answer

    return await _idempotent(request, principal, idempotency_key, produce)


async def _mission_body(request: Request) -> tuple[bytes, str | None]:
    """The body and its format: ``None`` when no Content-Type says (told apart by content)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fmt: str | None
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"):
        fmt = "yaml"
    elif ctype in ("application/json", "text/json"):
        fmt = "json"
    elif ctype == "":
        fmt = None
    else:
        raise ApiError(
            f"send the mission as JSON or YAML, not {ctype}", code="unsupported_media_type"
        )
    return await request.body(), fmt


async def _prepared(
    request: Request, raw: bytes, fmt: str | None
) -> tuple[Prepared, dict[str, Any]]:
    """``_prepare`` on a worker thread: parsing and validating a large mission (a 1 MiB body
    takes seconds) must not hold up the event loop, which keeps answering other requests."""
    return await asyncio.to_thread(_prepare, request, raw, fmt)


def _prepare(request: Request, raw: bytes, fmt: str | None) -> tuple[Prepared, dict[str, Any]]:
    """The mission of a request body, and the context it carries (a JSON body may wrap the
    mission: ``{"mission": {...}, "context": {...}}``). The body is parsed once, by the
    mission parser and under its limits (UTF-8, depth, size, duplicate keys, numbers), whether
    it is a mission or wraps one."""
    preparer = application(request).preparer
    if fmt is None:
        fmt = "json" if raw.lstrip()[:1] in (b"{", b"[") else "yaml"
    if fmt != "json":
        return preparer.prepare(raw, fmt=fmt), {}
    doc = preparer.parse(raw, fmt="json").data
    if isinstance(doc, dict) and isinstance(doc.get("mission"), dict):
        raw_context = doc.get("context")
        if raw_context is not None and not isinstance(raw_context, dict):
            raise ApiError("`context` must be an object", code="invalid_request", field="context")
        context = dict(raw_context or {})
        prepared = preparer.prepare_loaded(
            preparer.load_data(doc["mission"]), context_names=list(context)
        )
        return prepared, context
    return preparer.prepare_loaded(preparer.load_data(doc)), {}


_MISSION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.post(
    "/missions/execute",
    status_code=202,
    response_model=Accepted,
    responses={
        **_FAIL,
        200: {
            "model": MissionResult | DryRun,
            "description": "the run's result (`?wait=true`) or the plan (`?dry_run=true`)",
        },
    },
    openapi_extra=_MISSION_BODY,
    summary="Run a mission",
)
async def execute_mission(
    request: Request,
    principal: Annotated[Principal, Depends(require("execute"))],
    wait: Annotated[bool, Query(description="Answer with the MissionResult when it ends.")] = False,
    dry_run: Annotated[bool, Query(description="Validate and plan only.")] = False,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A mission (JSON or YAML body). 202 with the run id and a Location, or with ``?wait=true``
    the MissionResult."""
    raw, fmt = await _mission_body(request)

    async def produce() -> tuple[int, Any]:
        request_id = getattr(request.state, "request_id", None)
        try:
            prepared, context = await _prepared(request, raw, fmt)
        except PuraifyError as exc:
            return status_for(exc), error_body(exc, request_id)
        service = runs(request)
        if dry_run:
            report = DryRun(
                levels=prepared.levels,
                critical_path=prepared.critical_path,
                safety=prepared.safety.to_dict(service.settings.safety_level),
                warnings=[w.to_dict() for w in prepared.warnings],
                policy=await service.policy_preview(prepared.mission, principal.project_id),
            )
            return 200, report.model_dump(mode="json")
        try:
            run_id, _ = await service.submit(
                prepared.compiled,
                project_id=principal.project_id,
                context=context,
                idempotency_key=_run_key(principal, idempotency_key),
                safety=prepared.safety,
            )
        except PuraifyError as exc:  # refused before it was committed: the answer is final
            return status_for(exc), error_body(exc, request_id)
        result = await service.wait(run_id, None) if wait else None
        if result is not None:
            return 200, json.loads(result.model_dump_json())
        accepted = Accepted(run_id=run_id, location=f"/runs/{run_id}", request_id=request_id)
        return 202, accepted.model_dump(mode="json")

    response = await _idempotent(request, principal, idempotency_key, produce)
    if response.status_code == 202:
        body = json.loads(bytes(response.body))
        response.headers["Location"] = body["location"]
    return response


@router.post(
    "/missions/validate",
    response_model=MissionCheck,
    responses=_FAIL,
    openapi_extra=_MISSION_BODY,
    summary="Validate a mission",
)
async def validate_mission(
    request: Request, principal: Annotated[Principal, Depends(require("execute"))]
) -> MissionCheck:
    """Errors, warnings, execution levels and safety findings; nothing runs."""
    raw, fmt = await _mission_body(request)
    try:
        prepared, _context = await _prepared(request, raw, fmt)
    except ValidationError as exc:
        issues: list[Issue] = exc.issues
        return MissionCheck(
            valid=False,
            errors=[i.to_dict() for i in issues if i.severity == "error"],
            warnings=[i.to_dict() for i in issues if i.severity != "error"],
        )
    except PuraifyError as exc:
        return MissionCheck(valid=False, errors=[exc.to_dict()])
    return MissionCheck(
        valid=True,
        warnings=[w.to_dict() for w in prepared.warnings],
        levels=prepared.levels,
        critical_path=prepared.critical_path,
        safety=prepared.safety.to_dict(application(request).settings.safety_level),
        policy=await runs(request).policy_preview(prepared.mission, principal.project_id),
    )


__all__ = ["router"]
