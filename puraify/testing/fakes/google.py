"""A fake of Google's Calendar (``events.insert``) and Sheets (``spreadsheets.values.append``)
APIs, real HTTP on loopback; one server answers both (set ``google_calendar_base_url`` and
``google_sheets_base_url`` to its URL).

As Google does: an OAuth2 access token in ``Authorization: Bearer`` with the scope each API
needs; errors as ``{"error": {"code", "message", "status", "errors": [{"reason", ...}]}}``
(401 ``UNAUTHENTICATED``, 403 ``ACCESS_TOKEN_SCOPE_INSUFFICIENT`` with
``insufficientPermissions``, 404 ``notFound``, 400 ``INVALID_ARGUMENT``, 429
``rateLimitExceeded``); an event resource with ``id``, ``status``, ``htmlLink``; an append's
``updates`` with the range, rows and cells written. It can be told to answer 429 or 5xx and
records what it created (``events``, ``rows``).
"""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..servers import Receive, Scope, Send, read_request, send_json

__all__ = ["FakeGoogle"]

CALENDAR = "https://www.googleapis.com/auth/calendar.events"
SHEETS = "https://www.googleapis.com/auth/spreadsheets"


def _error(code: int, status: str, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    errors = [{"message": message, "domain": "global", "reason": reason}]
    return code, {"error": {"code": code, "message": message, "errors": errors, "status": status}}


class FakeGoogle:
    def __init__(self, tokens: dict[str, tuple[str, ...]] | None = None) -> None:
        self.tokens = dict(tokens or {})  # access token -> scopes
        self.calendars = {"primary"}
        self.spreadsheets: dict[str, list[list[Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._script: list[int] = []
        self._lock = threading.Lock()

    def fail_next(self, times: int = 1, status: int = 503) -> None:
        self._script += [status] * times

    def add_spreadsheet(self) -> str:
        sheet_id = uuid.uuid4().hex
        self.spreadsheets[sheet_id] = []
        return sheet_id

    @property
    def rows(self) -> list[list[Any]]:
        return [row for rows in self.spreadsheets.values() for row in rows]

    def _auth(self, headers: dict[str, str], scope: str) -> tuple[int, dict[str, Any]] | None:
        kind, _, token = headers.get("authorization", "").partition(" ")
        scopes = self.tokens.get(token) if kind.lower() == "bearer" else None
        if scopes is None:
            return _error(401, "UNAUTHENTICATED", "authError",
                          "Request had invalid authentication credentials.")  # fmt: skip
        if scope not in scopes:
            return _error(403, "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "insufficientPermissions",
                          "Request had insufficient authentication scopes.")  # fmt: skip
        return None

    def insert_event(self, headers: dict[str, str], calendar: str, body: Any) -> tuple[int, Any]:
        refused = self._auth(headers, CALENDAR)
        if refused:
            return refused
        if calendar not in self.calendars:
            return _error(404, "NOT_FOUND", "notFound", "Not Found")
        if not isinstance(body, dict) or "start" not in body or "end" not in body:
            return _error(400, "INVALID_ARGUMENT", "required", "Missing end time.")
        event_id = uuid.uuid4().hex[:26]
        event = {
            "kind": "calendar#event",
            "id": event_id,
            "status": "confirmed",
            "htmlLink": f"https://www.google.com/calendar/event?eid={event_id}",
            **body,
        }
        with self._lock:
            self.events.append(event)
        return 200, event

    def append(
        self, headers: dict[str, str], sheet: str, cells: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        refused = self._auth(headers, SHEETS)
        if refused:
            return refused
        if sheet not in self.spreadsheets:
            return _error(404, "NOT_FOUND", "notFound", "Requested entity was not found.")
        if query.get("valueInputOption") not in ("RAW", "USER_ENTERED"):
            return _error(400, "INVALID_ARGUMENT", "badRequest",
                          "'valueInputOption' is required but not specified")  # fmt: skip
        values = body.get("values") if isinstance(body, dict) else None
        if not isinstance(values, list) or not all(isinstance(r, list) for r in values):
            return _error(400, "INVALID_ARGUMENT", "badRequest", "Invalid values.")
        with self._lock:
            rows = self.spreadsheets[sheet]
            first = len(rows) + 1
            rows.extend(values)
        width = max((len(r) for r in values), default=0)
        name = cells.split("!")[0]
        updated = f"{name}!A{first}:{chr(64 + max(width, 1))}{first + len(values) - 1}"
        return 200, {
            "spreadsheetId": sheet,
            "tableRange": f"{name}!A1:{chr(64 + max(width, 1))}{first - 1 or 1}",
            "updates": {
                "spreadsheetId": sheet,
                "updatedRange": updated,
                "updatedRows": len(values),
                "updatedColumns": width,
                "updatedCells": sum(len(r) for r in values),
            },
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers, raw = await read_request(scope, receive)
        path, method = scope["path"], scope["method"]
        query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        with self._lock:
            scripted = self._script.pop(0) if self._script else None
        parts = path.split("/")
        if scripted == 429:
            status, payload = _error(
                429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Rate Limit Exceeded"
            )
        elif scripted is not None:
            status, payload = _error(scripted, "UNAVAILABLE", "backendError", "Backend Error")
        elif (
            method == "POST"
            and path.startswith("/calendar/v3/calendars/")
            and path.endswith("/events")
        ):
            status, payload = self.insert_event(headers, unquote(parts[4]), body)
        elif method == "POST" and path.startswith("/v4/spreadsheets/") and path.endswith(":append"):
            cells = unquote(parts[5].removesuffix(":append"))
            status, payload = self.append(headers, parts[3], cells, query, body)
        else:
            status, payload = _error(404, "NOT_FOUND", "notFound", "Not Found")
        await send_json(send, status, payload)
