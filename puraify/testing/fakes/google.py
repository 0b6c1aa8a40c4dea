"""A fake of Google's Calendar (``events.insert``), Sheets (``spreadsheets.create``,
``spreadsheets.values.append``) and Gmail (``users.messages.send``) APIs, real HTTP on loopback;
one server answers all three (set ``google_calendar_base_url``, ``google_sheets_base_url`` and
``gmail_base_url`` to its URL).

As Google does: an OAuth2 access token in ``Authorization: Bearer`` with the scope each API
needs; errors as ``{"error": {"code", "message", "status", "errors": [{"reason", ...}]}}``
(401 ``UNAUTHENTICATED``, 403 ``ACCESS_TOKEN_SCOPE_INSUFFICIENT`` with
``insufficientPermissions``, 404 ``notFound``, 400 ``INVALID_ARGUMENT``, 429
``rateLimitExceeded``); an event resource with ``id``, ``status``, ``htmlLink``; an append's
``updates`` with the range, rows and cells written. It can be told to answer 429 or 5xx and
records what it created (``events``, ``rows``, ``mails``: each sent message parsed from the
raw MIME Gmail takes, as base64url).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import threading
import uuid
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..servers import Receive, Scope, Send, read_request, send_json
from .faults import Faults

__all__ = ["FakeGoogle"]

CALENDAR = "https://www.googleapis.com/auth/calendar.events"
SHEETS = "https://www.googleapis.com/auth/spreadsheets"
# any of these lets a token send mail (Gmail's documentation of users.messages.send)
GMAIL_SEND = (
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/gmail.modify",
    "https://mail.google.com/",
)


def _error(code: int, status: str, reason: str, message: str) -> tuple[int, dict[str, Any]]:
    errors = [{"message": message, "domain": "global", "reason": reason}]
    return code, {"error": {"code": code, "message": message, "errors": errors, "status": status}}


class FakeGoogle(Faults):
    def __init__(self, tokens: dict[str, tuple[str, ...]] | None = None) -> None:
        super().__init__()
        self.tokens = dict(tokens or {})  # access token -> scopes
        self.calendars = {"primary"}
        self.spreadsheets: dict[str, list[list[Any]]] = {}
        self.sheet_names: dict[str, tuple[str, ...]] = {}  # spreadsheet -> its sheets' titles
        self.events: list[dict[str, Any]] = []
        self.mails: list[EmailMessage] = []
        self._lock = threading.Lock()

    def add_spreadsheet(self, *sheets: str) -> str:
        """A spreadsheet with sheets of these titles (``Sheet1`` when none is given)."""
        sheet_id = uuid.uuid4().hex
        self.spreadsheets[sheet_id] = []
        self.sheet_names[sheet_id] = sheets or ("Sheet1",)
        return sheet_id

    @property
    def rows(self) -> list[list[Any]]:
        return [row for rows in self.spreadsheets.values() for row in rows]

    def _auth(self, headers: dict[str, str], *scope: str) -> tuple[int, dict[str, Any]] | None:
        kind, _, token = headers.get("authorization", "").partition(" ")
        scopes = self.tokens.get(token) if kind.lower() == "bearer" else None
        if scopes is None:
            return _error(401, "UNAUTHENTICATED", "authError",
                          "Request had invalid authentication credentials.")  # fmt: skip
        if not set(scope) & set(scopes):
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

    def create_spreadsheet(self, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        refused = self._auth(headers, SHEETS)
        if refused:
            return refused
        properties = body.get("properties") if isinstance(body, dict) else None
        title = properties.get("title") if isinstance(properties, dict) else None
        asked = body.get("sheets") if isinstance(body, dict) else None
        names = [
            str(s["properties"]["title"])
            for s in (asked if isinstance(asked, list) else [])
            if isinstance(s, dict) and isinstance(s.get("properties"), dict)
            and s["properties"].get("title")
        ]  # fmt: skip
        sheet_id = self.add_spreadsheet(*names)
        return 200, {
            "spreadsheetId": sheet_id,
            "properties": {"title": title or "Untitled spreadsheet", "locale": "en_US"},
            "sheets": [
                {"properties": {"sheetId": i, "title": name, "index": i}}
                for i, name in enumerate(self.sheet_names[sheet_id])
            ],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{sheet_id}/edit",
        }

    def send_mail(self, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        refused = self._auth(headers, *GMAIL_SEND)
        if refused:
            return refused
        raw = body.get("raw") if isinstance(body, dict) else None
        try:  # base64url (RFC 4648 §5), padded or not; anything else is refused
            data = (
                base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
                if isinstance(raw, str) and "+" not in raw and "/" not in raw
                else None
            )
        except (binascii.Error, ValueError):
            data = None
        if not data:
            return _error(400, "INVALID_ARGUMENT", "invalidArgument",
                          "Invalid value for ByteString")  # fmt: skip
        message = email.message_from_bytes(data, policy=email.policy.default)
        if not isinstance(message, EmailMessage) or not (
            message["To"] or message["Cc"] or message["Bcc"]
        ):
            return _error(400, "INVALID_ARGUMENT", "invalidArgument",
                          "Recipient address required")  # fmt: skip
        with self._lock:
            self.mails.append(message)
        thread = uuid.uuid4().hex[:16]
        return 200, {"id": uuid.uuid4().hex[:16], "threadId": thread, "labelIds": ["SENT"]}

    def append(
        self, headers: dict[str, str], sheet: str, cells: str, query: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        refused = self._auth(headers, SHEETS)
        if refused:
            return refused
        if sheet not in self.spreadsheets:
            return _error(404, "NOT_FOUND", "notFound", "Requested entity was not found.")
        name = cells.split("!")[0].strip("'")
        if name not in self.sheet_names.get(sheet, ()):
            return _error(400, "INVALID_ARGUMENT", "badRequest",
                          f"Unable to parse range: {cells}")  # fmt: skip
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
        fault = await self.next_fault()
        parts = path.split("/")
        extra: list[tuple[bytes, bytes]] = []
        if fault is not None and fault.kind == "rate_limit":
            status, payload = _error(
                429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "Rate Limit Exceeded"
            )
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        elif fault is not None:
            status, payload = _error(fault.status, "UNAVAILABLE", "backendError", "Backend Error")
        elif (
            method == "POST"
            and path.startswith("/calendar/v3/calendars/")
            and path.endswith("/events")
        ):
            status, payload = self.insert_event(headers, unquote(parts[4]), body)
        elif method == "POST" and path == "/v4/spreadsheets":
            status, payload = self.create_spreadsheet(headers, body)
        elif method == "POST" and path == "/gmail/v1/users/me/messages/send":
            status, payload = self.send_mail(headers, body)
        elif method == "POST" and path.startswith("/v4/spreadsheets/") and path.endswith(":append"):
            cells = unquote(parts[5].removesuffix(":append"))
            status, payload = self.append(headers, parts[3], cells, query, body)
        else:
            status, payload = _error(404, "NOT_FOUND", "notFound", "Not Found")
        await send_json(send, status, payload, extra)
