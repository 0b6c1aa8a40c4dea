"""A fake of Zapier's Catch Hook endpoint, real HTTP on loopback (``zapier_base_url`` = its URL).

As Zapier does: ``POST|PUT|GET /hooks/catch/<account>/<hook>/`` takes a JSON or form body (or
query string), needs no other credential (the URL is the secret), and answers 200 with
``{"attempt", "id", "request_id", "status": "success"}`` whether or not a Zap is behind the
hook, as its documentation says. It can be told to answer 429 or 5xx or not at all, and records
what it caught (``caught``: hook and payload).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from typing import Any
from urllib.parse import parse_qsl

from ..servers import Receive, Scope, Send, read_request, send_json
from .faults import Faults

__all__ = ["FakeZapier"]

_HOOK = re.compile(r"^/hooks/catch/(\d+)/([A-Za-z0-9]+)/?$")


class FakeZapier(Faults):
    def __init__(self) -> None:
        super().__init__()
        self.caught: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers, raw = await read_request(scope, receive)
        fault = await self.next_fault()
        if fault is not None:
            extra = (
                [(b"retry-after", f"{fault.retry_after:g}".encode())] if fault.status == 429 else []
            )
            await send_json(send, fault.status, {"status": "error", "message": "try again"}, extra)
            return
        found = _HOOK.match(scope["path"])
        if found is None or scope["method"] not in ("POST", "PUT", "GET"):
            await send_json(send, 404, {"status": "error", "message": "Not found"})
            return
        ctype = headers.get("content-type", "")
        try:
            if "json" in ctype:
                payload = json.loads(raw or b"{}")
            elif raw:
                payload = dict(parse_qsl(raw.decode("utf-8", "replace")))
            else:
                payload = dict(parse_qsl(scope.get("query_string", b"").decode()))
        except ValueError:
            await send_json(send, 400, {"status": "error", "message": "Unparseable body"})
            return
        with self._lock:
            self.caught.append((f"{found[1]}/{found[2]}", payload))
        await send_json(
            send,
            200,
            {
                "attempt": str(uuid.uuid4()),
                "id": str(uuid.uuid4()),
                "request_id": uuid.uuid4().hex[:16],
                "status": "success",
            },
        )
