"""Real servers on 127.0.0.1 for tests, benchmarks and the demo.

``LocalServer`` runs any ASGI app under uvicorn in a background thread on a free loopback port.
``RecordingSink`` is a scriptable receiver: it records every request, answers from a script
(``fail_next(3, status=503)``), can hang, and dedupes on ``Idempotency-Key`` the way a careful
platform does, so tests can count deliveries and effects separately. ``CanaryListener`` is a
bare TCP listener that only counts connections (SSRF tests: it must stay at zero).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = [
    "CanaryListener",
    "LocalServer",
    "RecordedRequest",
    "RecordingSink",
    "Reply",
    "read_request",
    "send_json",
    "until_stopped",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def read_request(scope: Scope, receive: Receive) -> tuple[dict[str, str], bytes]:
    """An HTTP request's headers (names lower-cased) and whole body."""
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    return headers, bytes(body)


async def send_json(
    send: Send,
    status: int,
    payload: Any,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer with ``payload`` as JSON (``bytes`` as they are) and ``headers``."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def until_stopped() -> threading.Event:
    """An event set by SIGTERM or SIGINT: what a server process run from the command line
    waits on (``until_stopped().wait()``) before it shuts its servers down."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


class LocalServer:
    """Serve an ASGI app on 127.0.0.1 (free port) from a background thread."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit TCP_NODELAY on Linux; without it, uvicorn's separate writes of
        # response head and body meet delayed ACKs (40 ms per request).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_level="error",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=2048,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self._serve, name=f"local-server-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("local server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # do not wait for requests a test left hanging
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, JSON (or text) body, headers, and an optional delay."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    # wait until the sink's ``release()`` before answering (a step held in flight on demand)
    held: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class RecordingSink:
    """An ASGI receiver that records requests and answers from a script (default: 200 JSON)."""

    def __init__(self, *, keep: int | None = None) -> None:
        """``keep``: how many recent requests to keep (all by default, with effects counted per
        idempotency key); a long load run keeps none, so the receiver's memory and collector
        pauses stay flat."""
        self.keep = keep
        self.requests: list[RecordedRequest] = []
        self.applied: dict[str, int] = {}  # idempotency key -> deliveries seen
        self._script: dict[str, list[Reply]] = {}
        self._lock = threading.Lock()
        self._released = threading.Event()

    # -- scripting ---------------------------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` (``*`` = any path) with ``replies``, in order."""
        with self._lock:
            self._script.setdefault(path, []).extend(replies)

    def fail_next(
        self, times: int, *, status: int = 503, path: str = "*", retry_after: str | None = None
    ) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.script(
            path, *[Reply(status, {"error": "scripted failure"}, headers) for _ in range(times)]
        )

    def hang(self, path: str = "*") -> None:
        self.script(path, Reply(hang=True))

    def hold(self, path: str = "*", reply: Reply | None = None) -> None:
        """Keep the next request to ``path`` waiting until ``release()``, then answer it."""
        base = reply or Reply(200, {"ok": True, "path": path})
        self.script(path, Reply(base.status, base.body, base.headers, base.delay, held=True))

    def release(self) -> None:
        """Let every held request (and every later one) be answered."""
        self._released.set()

    # -- reading -----------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def times(self, path: str | None = None) -> list[float]:
        with self._lock:
            return [r.at for r in self.requests if path is None or r.path == path]

    @property
    def effects(self) -> int:
        """Distinct idempotency keys applied (what a deduping platform would have done)."""
        with self._lock:
            return len(self.applied)

    # -- ASGI --------------------------------------------------------------------------------

    def _next_reply(self, path: str) -> Reply | None:
        with self._lock:
            for key in (path, "*"):
                queue = self._script.get(key)
                if queue:
                    return queue.pop(0)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers, body = await read_request(scope, receive)
        record = RecordedRequest(
            scope["method"],
            scope["path"],
            scope.get("query_string", b"").decode(),
            headers,
            body,
            time.monotonic(),
        )
        reply = self._next_reply(scope["path"]) or Reply(
            200, {"ok": True, "path": scope["path"], "method": scope["method"]}
        )
        with self._lock:
            key = headers.get("idempotency-key")
            duplicate = key is not None and key in self.applied
            if self.keep is None:
                self.requests.append(record)
                if key is not None and 200 <= reply.status < 300:
                    self.applied[key] = self.applied.get(key, 0) + 1
            elif self.keep > 0:
                self.requests.append(record)
                del self.requests[: -self.keep]
        if reply.hang:
            await asyncio.Event().wait()
        if reply.held:
            await asyncio.get_running_loop().run_in_executor(None, self._released.wait)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        payload = reply.body
        if isinstance(payload, dict) and duplicate:
            payload = {**payload, "duplicate": True}
        if isinstance(payload, bytes | str):
            data = payload.encode() if isinstance(payload, str) else payload
            ctype = "text/plain; charset=utf-8"
        else:
            data = json.dumps(payload).encode()
            ctype = "application/json"
        raw_headers = [
            (b"content-type", ctype.encode()),
            (b"content-length", str(len(data)).encode()),
        ]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": data})


class CanaryListener:
    """A TCP listener that accepts and counts connections; it never answers."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.host, self.port = self.sock.getsockname()[:2]
        self.connections = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> CanaryListener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        self.sock.close()
