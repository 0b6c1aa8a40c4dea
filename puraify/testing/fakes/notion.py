"""A fake of Notion's pages API (``POST /v1/pages``), real HTTP on loopback.

As Notion does: an integration token in ``Authorization: Bearer`` and a ``Notion-Version``
header; a page's parent ``{"database_id"}`` must be a database shared with the integration, and
each property must exist in the database's schema with a value of its type (``title``,
``status``, ``date``, ``people``, ``rich_text``); errors are Notion's error objects
(``{"object": "error", "status", "code", "message"}``: ``unauthorized`` 401,
``object_not_found`` 404, ``validation_error`` 400, ``missing_version`` 400, ``rate_limited``
429 with ``Retry-After``). It records the pages it created (``pages``).
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from ..servers import Receive, Scope, Send, read_request, send_json
from .faults import Faults

__all__ = ["FakeNotion"]

#: A task database's schema: property name -> type.
TASKS = {"Name": "title", "Status": "status", "Due": "date", "Assignee": "people"}


def _error(status: int, notion_code: str, message: str) -> tuple[int, dict[str, Any]]:
    """Notion's error object (its codes are Notion's, not puraify's)."""
    body = {"object": "error", "status": status, "message": message}
    return status, {**body, "code": notion_code}


class FakeNotion(Faults):
    def __init__(self, tokens: set[str] | None = None) -> None:
        super().__init__()
        self.tokens = set(tokens or ())
        self.databases: dict[str, dict[str, str]] = {}
        self.pages: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add_database(self, schema: dict[str, str] | None = None) -> str:
        database_id = uuid.uuid4().hex
        self.databases[database_id] = dict(schema or TASKS)
        return database_id

    def create_page(self, headers: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        kind, _, token = headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or token not in self.tokens:
            return _error(401, "unauthorized", "API token is invalid.")
        if not headers.get("notion-version"):
            return _error(400, "missing_version", "Notion-Version header failed validation.")
        if not isinstance(body, dict):
            return _error(400, "invalid_json", "Error parsing JSON body.")
        parent = body.get("parent") or {}
        schema = self.databases.get(str(parent.get("database_id", "")).replace("-", ""))
        if schema is None:
            return _error(
                404,
                "object_not_found",
                f"Could not find database with ID: {parent.get('database_id')}.",
            )
        properties = body.get("properties")
        if not isinstance(properties, dict):
            return _error(400, "validation_error", "body.properties should be an object.")
        for name, value in properties.items():
            expected = schema.get(name)
            if expected is None:
                return _error(400, "validation_error", f"{name} is not a property that exists.")
            if not isinstance(value, dict) or expected not in value:
                return _error(400, "validation_error", f"{name} is expected to be {expected}.")
        with self._lock:
            page_id = str(uuid.uuid4())
            page = {
                "object": "page",
                "id": page_id,
                "created_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:00.000Z"),
                "parent": {"type": "database_id", **parent},
                "archived": False,
                "properties": properties,
                "url": f"https://www.notion.so/{page_id.replace('-', '')}",
            }
            self.pages.append(page)
        return 200, page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers, raw = await read_request(scope, receive)
        extra: list[tuple[bytes, bytes]] = []
        fault = await self.next_fault()
        if fault is not None and fault.kind == "rate_limit":
            status, payload = _error(429, "rate_limited", "You have been rate limited.")
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        elif fault is not None:
            status, payload = _error(
                fault.status, "service_unavailable", "Notion is unavailable, try again later."
            )
        elif scope["path"] == "/v1/pages" and scope["method"] == "POST":
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            status, payload = self.create_page(headers, body)
        else:
            status, payload = _error(400, "invalid_request_url", "Invalid request URL.")
        await send_json(send, status, payload, extra)
