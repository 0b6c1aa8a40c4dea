"""Google: ``google_calendar.create_event`` (Calendar API ``events.insert``) and
``google_sheets.append_row`` (Sheets API ``spreadsheets.values.append``).

The documented REST endpoints through the context's guarded client, not
``google-api-python-client``: it is synchronous (a thread per call) and brings its own HTTP
stack outside the engine's guard. Both use the project's ``google`` credential (an ``oauth2``
token from Google's OAuth, or a ``token``), with the scopes each needs. Base URLs:
``google_calendar_base_url`` (``https://www.googleapis.com``) and ``google_sheets_base_url``
(``https://sheets.googleapis.com``).

Google's errors (``{"error": {"code", "message", "status", "errors": [{"reason"}]}}``) map to:
401 → ``credential_invalid``; 403 with ``insufficientPermissions`` or
``ACCESS_TOKEN_SCOPE_INSUFFICIENT`` → ``insufficient_scope``; 403 ``rateLimitExceeded`` and 429 →
``rate_limited`` (retryable); 404 → ``not_found``; 400 → ``invalid_parameters`` with Google's
message; 5xx → ``upstream_error`` (retryable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from cachetools import TTLCache
from pydantic import AliasChoices, Field, field_validator

from ..codes import ErrorCode
from ..errors import ActionError
from .base import MISSING_OR_SCOPE, Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .http import retry_after_seconds
from .platform import bearer_token, call

__all__ = ["AppendRow", "CreateEvent", "google_call", "google_error"]

CALENDAR_BASE_URL = "https://www.googleapis.com"
SHEETS_BASE_URL = "https://sheets.googleapis.com"


def google_error(response: httpx.Response, what: str) -> ActionError:
    """The error a Google API's answer stands for."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    error = error if isinstance(error, dict) else {}
    reasons = {e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict)}
    said = str(error.get("message") or f"HTTP {response.status_code}")[:500]
    status, state = response.status_code, str(error.get("status") or "")
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if status == 401:
        code = ErrorCode.CREDENTIAL_INVALID
    elif status == 403 and (
        "insufficientPermissions" in reasons or state == "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    ):
        code = ErrorCode.INSUFFICIENT_SCOPE
    elif status == 429 or reasons & {"rateLimitExceeded", "userRateLimitExceeded"}:
        code = ErrorCode.RATE_LIMITED
    elif status == 404:
        code = ErrorCode.NOT_FOUND
    elif status == 400:
        code = ErrorCode.INVALID_PARAMETERS
    else:
        code = ErrorCode.UPSTREAM_ERROR
    message = f"Google refused {what}: {said}"
    if code == ErrorCode.INSUFFICIENT_SCOPE:
        message = f"{MISSING_OR_SCOPE}: Google says {said}"
    return ActionError(
        message,
        code=code,
        retryable=code == ErrorCode.RATE_LIMITED or status >= 500,
        retry_after=retry_after,
        status=status,
        details={"google_status": state, "reasons": sorted(r for r in reasons if r)},
    )


async def _call(
    ctx: ActionContext, method: str, url: str, *, what: str, seconds: float, **kwargs: Any
) -> dict[str, Any]:
    """A call with the project's ``google`` credential."""
    credential = await ctx.credential("google")
    return await google_call(ctx, credential, method, url, what=what, seconds=seconds, **kwargs)


async def google_call(
    ctx: ActionContext,
    credential: Mapping[str, Any],
    method: str,
    url: str,
    *,
    what: str,
    seconds: float,
    **kwargs: Any,
) -> dict[str, Any]:
    """``method url`` to a Google API with ``credential``'s token; its JSON answer, or the
    error it stands for."""
    token = bearer_token(credential, "google")
    response = await call(
        ctx,
        "Google",
        method,
        url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=seconds,
        **kwargs,
    )
    if response.status_code >= 300:
        raise google_error(response, what)
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ActionError(f"Google's answer to {what} is not JSON", code=ErrorCode.UPSTREAM_ERROR)
    return answer


class CreateEvent(Action):
    """Create an event in a Google Calendar."""

    class Params(ParamsModel):
        # an id, never a path: `.` and `..` would move the request up the API's tree
        calendar_id: str = Field(
            default="primary", min_length=1, max_length=300, pattern=r"^[^/?#\\]+$"
        )
        summary: str = Field(
            min_length=1, max_length=1000, validation_alias=AliasChoices("summary", "title")
        )
        start: str = Field(min_length=10, max_length=40)
        end: str = Field(min_length=10, max_length=40)
        time_zone: str | None = Field(default=None, max_length=64)
        description: str | None = Field(default=None, max_length=8000)
        location: str | None = Field(default=None, max_length=1000)
        attendees: list[str] = Field(default_factory=list, max_length=100)
        timeout: float = Field(default=30.0, gt=0, le=300)

        @field_validator("calendar_id")
        @classmethod
        def _not_a_dot_segment(cls, value: str) -> str:
            if value in (".", ".."):
                raise ValueError("a calendar id, not a path")
            return value

    class Output(OutputModel):
        id: str
        status: str | None = None
        html_link: str | None = None
        start: dict[str, Any] = Field(default_factory=dict)
        end: dict[str, Any] = Field(default_factory=dict)

    name = "google_calendar.create_event"
    aliases: ClassVar[tuple[str, ...]] = ("create_event",)
    platform: ClassVar[str] = "google"
    delivery: ClassVar = "unsafe"  # an event created twice is two events
    required_scopes: ClassVar = ("https://www.googleapis.com/auth/calendar.events",)
    credential: ClassVar = "required"
    description = "Create an event in a Google Calendar (events.insert)."
    example: ClassVar = {
        "title": "Launch review",
        "start": "2026-12-24T10:00:00+01:00",
        "end": "2026-12-24T11:00:00+01:00",
    }

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        def when(value: str) -> dict[str, str]:
            moment = {"date": value} if len(value) == 10 else {"dateTime": value}
            return {**moment, "timeZone": params.time_zone} if params.time_zone else moment

        body: dict[str, Any] = {
            "summary": params.summary,
            "start": when(params.start),
            "end": when(params.end),
        }
        if params.description:
            body["description"] = params.description
        if params.location:
            body["location"] = params.location
        if params.attendees:
            body["attendees"] = [{"email": a} for a in params.attendees]
        base = ctx.base_url("google_calendar", CALENDAR_BASE_URL)
        url = f"{base}/calendar/v3/calendars/{quote(params.calendar_id, safe='@.')}/events"
        event = await _call(
            ctx, "POST", url, what="events.insert", seconds=params.timeout, json=body
        )
        return {
            "id": str(event.get("id", "")),
            "status": event.get("status"),
            "html_link": event.get("htmlLink"),
            "start": event.get("start") or {},
            "end": event.get("end") or {},
        }


class AppendRow(Action):
    """Append rows to a Google Sheets range; without a ``spreadsheet_id``, to a new spreadsheet
    (``spreadsheets.create``, named ``title``)."""

    class Params(ParamsModel):
        spreadsheet_id: str | None = Field(
            default=None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$"
        )
        title: str = Field(default="Untitled spreadsheet", min_length=1, max_length=500)
        range: str = Field(default="Sheet1", min_length=1, max_length=200)
        values: list[Any] = Field(min_length=1, max_length=10_000)
        raw: bool = False
        timeout: float = Field(default=30.0, gt=0, le=300)

    class Output(OutputModel):
        spreadsheet_id: str
        #: whether the spreadsheet was created by this step (no spreadsheet_id was given)
        created: bool = False
        spreadsheet_url: str | None = None
        updated_range: str | None = None
        updated_rows: int = 0
        updated_cells: int = 0

    name = "google_sheets.append_row"
    aliases: ClassVar[tuple[str, ...]] = ("create_sheet", "append_row")
    platform: ClassVar[str] = "google"
    delivery: ClassVar = "unsafe"  # a row appended twice is two rows
    required_scopes: ClassVar = ("https://www.googleapis.com/auth/spreadsheets",)
    credential: ClassVar = "required"
    description = (
        "Append rows to a Google Sheet (spreadsheets.values.append), creating the spreadsheet "
        "when no id is given (spreadsheets.create)."
    )
    example: ClassVar = {"spreadsheet_id": "1AbC", "range": "Orders", "values": ["A-1", 42]}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        rows = params.values if all(isinstance(v, list) for v in params.values) else [params.values]
        base = ctx.base_url("google_sheets", SHEETS_BASE_URL)
        sheet_id, link = params.spreadsheet_id, None
        if sheet_id is None:
            sheet_id, link = await _created(ctx, base, params)
        url = (
            f"{base}/v4/spreadsheets/{quote(sheet_id, safe='')}"
            f"/values/{quote(params.range, safe='!:')}:append"
        )
        try:
            answer = await _call(
                ctx,
                "POST",
                url,
                what="spreadsheets.values.append",
                seconds=params.timeout,
                params={
                    "valueInputOption": "RAW" if params.raw else "USER_ENTERED",
                    "insertDataOption": "INSERT_ROWS",
                },
                json={"values": rows},
            )
        except ActionError as exc:
            if params.spreadsheet_id is None:  # what was created stays known to later steps
                exc.output = {"spreadsheet_id": sheet_id, "created": True, "spreadsheet_url": link}
            raise
        updates = answer.get("updates")
        updates = updates if isinstance(updates, dict) else {}
        return {
            "spreadsheet_id": str(answer.get("spreadsheetId", sheet_id)),
            "created": params.spreadsheet_id is None,
            "spreadsheet_url": link,
            "updated_range": updates.get("updatedRange"),
            "updated_rows": _count(updates.get("updatedRows")),
            "updated_cells": _count(updates.get("updatedCells")),
        }


#: Spreadsheets created by a step, by its ``<run_id>:<step_id>``: a retry of the step (its
#: append was refused, say) appends to the one it created instead of creating another.
_CREATED: TTLCache[str, tuple[str, str | None]] = TTLCache(maxsize=10_000, ttl=24 * 3600)


async def _created(ctx: ActionContext, base: str, params: Any) -> tuple[str, str | None]:
    """The spreadsheet this step created (``spreadsheets.create``), once: its id and URL. Its
    first sheet is named as the range names it, so the append finds it."""
    known = _CREATED.get(ctx.idempotency_key)
    if known is not None:
        return known
    sheet = params.range.split("!", 1)[0].strip("'") or "Sheet1"
    made = await _call(
        ctx,
        "POST",
        f"{base}/v4/spreadsheets",
        what="spreadsheets.create",
        seconds=params.timeout,
        json={"properties": {"title": params.title}, "sheets": [{"properties": {"title": sheet}}]},
    )
    sheet_id, link = str(made.get("spreadsheetId") or ""), made.get("spreadsheetUrl")
    if not sheet_id:
        raise ActionError("Google created no spreadsheet id", code=ErrorCode.UPSTREAM_ERROR)
    _CREATED[ctx.idempotency_key] = (sheet_id, link if isinstance(link, str) else None)
    return _CREATED[ctx.idempotency_key]


def _count(value: Any) -> int:
    """A count from Google's answer (numbers may come as text); 0 for anything else."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
