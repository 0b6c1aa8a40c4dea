"""A fake of Slack's Web API ``chat.postMessage``, real HTTP on loopback (mounted at ``/api``,
so ``slack_base_url = <url>/api``).

As Slack does: a bot token in ``Authorization: Bearer`` (or a ``token`` form field), JSON or
form bodies, HTTP 200 with ``{"ok": false, "error": ...}`` for ``not_authed``,
``invalid_auth``, ``missing_scope`` (with ``needed`` and ``provided``), ``channel_not_found``
and ``no_text``; ``{"ok": true, "channel", "ts", "message"}`` on success, with a ``ts`` unique
per message. Channels are known by id (``C0GENERAL``) or ``#name``. It can be told to answer
429 with ``Retry-After`` (``rate_limit_next``), 5xx (``fail_next``) or not at all
(``hang_next``), and records every message it accepted (``messages``) and every request
(``requests``).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from ..servers import Receive, Scope, Send, read_request, send_json
from .faults import Faults

__all__ = ["FakeSlack"]


class FakeSlack(Faults):
    def __init__(
        self, tokens: dict[str, tuple[str, ...]] | None = None, *, keep: int | None = None
    ) -> None:
        super().__init__()
        #: how many recent messages to keep (all by default; a load run keeps few)
        self.keep = keep
        #: bot token -> its scopes
        self.tokens: dict[str, tuple[str, ...]] = dict(tokens or {})
        self.channels = {"C0GENERAL": "general", "C0RANDOM": "random"}
        self.messages: list[dict[str, Any]] = []
        self.times: list[float] = []  # when each message was accepted (monotonic seconds)
        self.requests = 0
        self._lock = threading.Lock()
        self._ts = 0

    # -- the API -------------------------------------------------------------------------------

    def _channel(self, given: str) -> str | None:
        if given in self.channels:
            return given
        name = given.removeprefix("#")
        return next((cid for cid, n in self.channels.items() if n == name), None)

    def post_message(self, headers: dict[str, str], fields: dict[str, Any]) -> dict[str, Any]:
        kind, _, token = headers.get("authorization", "").partition(" ")
        token = token if kind.lower() == "bearer" else str(fields.get("token") or "")
        if not token:
            return {"ok": False, "error": "not_authed"}
        scopes = self.tokens.get(token)
        if scopes is None:
            return {"ok": False, "error": "invalid_auth"}
        if "chat:write" not in scopes:
            return {
                "ok": False,
                "error": "missing_scope",
                "needed": "chat:write",
                "provided": ",".join(scopes),
            }
        channel = self._channel(str(fields.get("channel") or ""))
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if not fields.get("text") and not fields.get("blocks"):
            return {"ok": False, "error": "no_text"}
        with self._lock:
            self._ts += 1
            ts = f"{int(time.time())}.{self._ts:06d}"
            message = {
                "type": "message",
                "subtype": "bot_message",
                "text": fields.get("text") or "",
                "ts": ts,
                "bot_id": "B0PURAIFY",
            }
            if fields.get("blocks"):
                message["blocks"] = fields["blocks"]
            if fields.get("thread_ts"):
                message["thread_ts"] = fields["thread_ts"]
            self.messages.append({"channel": channel, **message})
            self.times.append(time.monotonic())
            if self.keep is not None:
                del self.messages[: -self.keep or len(self.messages)]
                del self.times[: -self.keep or len(self.times)]
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    # -- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers, body = await read_request(scope, receive)
        with self._lock:
            self.requests += 1
        fault = await self.next_fault()
        extra: list[tuple[bytes, bytes]] = []
        if fault is not None and fault.kind == "rate_limit":
            status, payload = 429, {"ok": False, "error": "ratelimited"}
            extra.append((b"retry-after", f"{fault.retry_after:g}".encode()))
        elif fault is not None:
            status, payload = fault.status, {"ok": False, "error": "fatal_error"}
        elif scope["path"] == "/api/chat.postMessage" and scope["method"] == "POST":
            ctype = headers.get("content-type", "")
            try:
                fields = (
                    json.loads(body or b"{}")
                    if "json" in ctype
                    else dict(parse_qsl(body.decode("utf-8", "replace")))
                )
            except ValueError:
                fields = None
            if not isinstance(fields, dict):
                status, payload = 200, {"ok": False, "error": "invalid_json"}
            else:
                status, payload = 200, self.post_message(headers, fields)
        else:
            status, payload = 404, {"ok": False, "error": "unknown_method"}
        await send_json(send, status, payload, extra)
