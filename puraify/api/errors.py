"""The one place errors become HTTP statuses (DESIGN.md §4), and the error envelope.

A registered code answers the status ``puraify.codes`` gives it (docs/errors.md lists them all);
any other error answers the status of the nearest class in its MRO that declares one
(``PuraifyError.http_status``), so a third party's failed action is a 502 and no error of ours
falls through to a 500 by accident. Never a traceback, never a secret.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ..codes import ErrorCode, describe
from ..errors import PuraifyError, failure_envelope

__all__ = ["ApiError", "error_body", "status_for", "status_for_code"]


class ApiError(PuraifyError):
    """An error raised by the API layer itself (auth, body, routing)."""

    default_code = ErrorCode.BAD_REQUEST
    http_status = HTTPStatus.BAD_REQUEST


def status_for_code(code: str, *, fallback: int = HTTPStatus.BAD_GATEWAY) -> int:
    """HTTP status of a registered code; ``fallback`` (a failed platform call) for any other."""
    info = describe(code)
    return int(info.status if info is not None else fallback)


def status_for(error: BaseException) -> int:
    """HTTP status of ``error``: its registered code's, else its class's; 500 if not ours."""
    if isinstance(error, PuraifyError):
        return status_for_code(error.code, fallback=type(error).http_status)
    return int(HTTPStatus.INTERNAL_SERVER_ERROR)


def error_body(error: BaseException, request_id: str | None) -> dict[str, Any]:
    """``{"status": "fail", "request_id", "reason", "error": {code, retryable, ...}}``."""
    body = failure_envelope(
        error, internal_reason="internal error; the request id identifies it in the server log"
    )
    return {"status": "fail", "request_id": request_id, **body}
