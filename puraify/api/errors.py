"""The one place errors become HTTP statuses (DESIGN.md §4), and the error envelope.

400/422 bad request, 401 no valid credentials, 403 denied (scope, policy, guard), 404 unknown
action or run, 409 idempotency conflict, 413 body too large, 502 the platform failed,
503 maintenance or store unavailable, 504 timeout. Never a traceback, never a secret.
"""

from __future__ import annotations

from typing import Any

from ..errors import (
    ActionError,
    GuardError,
    MissionError,
    PolicyDenied,
    PuraifyError,
    StoreError,
    TemplateError,
)

__all__ = ["ApiError", "error_body", "status_for", "status_for_code"]

_BY_CODE = {
    "unauthenticated": 401,
    "forbidden": 403,
    "policy_denied": 403,
    "ssrf_blocked": 403,
    "command_refused": 403,
    "command_disabled": 403,
    "path_outside_jail": 403,
    "file_type_refused": 403,
    "unknown_action": 404,
    "run_not_found": 404,
    "not_found": 404,
    "idempotency_conflict": 409,
    "run_busy": 409,
    "body_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_parameters": 422,
    "validation_failed": 422,
    "template_error": 422,
    "template_reference_error": 422,
    "template_security_error": 422,
    "platform_maintenance": 503,
    "store_unavailable": 503,
    "timeout": 504,
    "mission_timeout": 504,
}


class ApiError(PuraifyError):
    """An error raised by the API layer itself (auth, body, routing)."""

    default_code = "bad_request"


def status_for_code(code: str, *, fallback: int = 502) -> int:
    """HTTP status for an error code; codes of failed platform calls fall back to 502."""
    return _BY_CODE.get(code, fallback)


def status_for(error: BaseException) -> int:
    if isinstance(error, ApiError):
        return status_for_code(error.code, fallback=400)
    if isinstance(error, MissionError | TemplateError):
        return status_for_code(error.code, fallback=422)
    if isinstance(error, PolicyDenied):
        return 403
    if isinstance(error, GuardError):
        return 403
    if isinstance(error, ActionError):
        return status_for_code(error.code, fallback=502)
    if isinstance(error, StoreError | PuraifyError):
        return status_for_code(error.code, fallback=500)
    return 500


def error_body(error: BaseException, request_id: str | None) -> dict[str, Any]:
    """``{"status": "fail", "reason", "error": {code, retryable, ...}, "request_id"}``."""
    if isinstance(error, PuraifyError):
        detail = error.to_dict()
        reason = error.message
    else:
        detail = {"code": "internal_error", "message": "internal error"}
        reason = "internal error; the request id identifies it in the server log"
    detail.setdefault("retryable", False)
    return {"status": "fail", "request_id": request_id, "reason": reason, "error": detail}
