"""The engine's HTTP transport (httpx over aiohttp) against real servers on loopback."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from puraify.mission.model import StepStatus
from puraify.runtime.engine import Engine
from puraify.runtime.transport import AiohttpTransport
from puraify.testing import LocalServer, RecordingSink, Reply
from tests.conftest import run_text


class Echo:
    """Answers with what it saw: client port, headers, body; ``/gzip`` compresses, ``/big``
    sends 4 MiB, ``/hang`` never answers."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/hang":
            await asyncio.Event().wait()
        headers = [(b"content-type", b"application/json")]
        if path == "/big":
            data = b"x" * (4 * 1024 * 1024)
        else:
            seen = {
                "port": scope["client"][1],
                "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
                "body": body.decode(),
                "method": scope["method"],
            }
            data = json.dumps(seen).encode()
        if path == "/gzip":
            data = gzip.compress(data)
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": data})


@pytest.fixture(scope="module")
def echo() -> Iterator[LocalServer]:
    with LocalServer(Echo()) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=AiohttpTransport(), trust_env=False) as c:
        yield c


def _header(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name]


async def test_request_headers_and_body_arrive_as_sent(
    echo: LocalServer, client: httpx.AsyncClient
) -> None:
    r = await client.post(
        f"{echo.url}/x", json={"a": 1}, headers={"Host": "api.example.test", "X-One": "1"}
    )
    seen = r.json()
    assert seen["method"] == "POST"
    assert json.loads(seen["body"]) == {"a": 1}
    assert _header(seen, "host") == ["api.example.test"]  # pinned address, caller's Host
    assert _header(seen, "x-one") == ["1"]
    assert _header(seen, "content-length") == [str(len(seen["body"]))]
    assert _header(seen, "transfer-encoding") == []


async def test_userinfo_becomes_one_authorization_header(
    echo: LocalServer, client: httpx.AsyncClient
) -> None:
    url = echo.url.replace("http://", "http://user:secret@")
    seen = (await client.get(f"{url}/x")).json()
    assert len(_header(seen, "authorization")) == 1


async def test_gzip_body_is_decoded_once(echo: LocalServer, client: httpx.AsyncClient) -> None:
    r = await client.get(f"{echo.url}/gzip")
    assert r.headers["content-encoding"] == "gzip"
    assert r.json()["method"] == "GET"


async def test_keep_alive_reuses_one_connection(
    echo: LocalServer, client: httpx.AsyncClient
) -> None:
    ports = {(await client.get(f"{echo.url}/x")).json()["port"] for _ in range(20)}
    assert len(ports) == 1


async def test_requests_after_a_body_read_halfway_still_work(
    echo: LocalServer, client: httpx.AsyncClient
) -> None:
    async with client.stream("GET", f"{echo.url}/big") as r:
        async for chunk in r.aiter_raw():
            assert chunk
            break
    first = (await client.get(f"{echo.url}/x")).json()["port"]
    second = (await client.get(f"{echo.url}/x")).json()["port"]
    assert first == second  # the cut connection was dropped; the next two share a fresh one


async def test_read_timeout_is_httpx_read_timeout(
    echo: LocalServer, client: httpx.AsyncClient
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.get(f"{echo.url}/hang", timeout=0.3)


async def test_refused_connection_is_connect_error(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{port}/")


async def test_body_cut_short_is_a_protocol_error(client: httpx.AsyncClient) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get(f"http://127.0.0.1:{listener.getsockname()[1]}/")
    finally:
        thread.join(timeout=5)
        listener.close()


async def test_a_pool_follows_its_event_loop(echo: LocalServer) -> None:
    transport = AiohttpTransport()

    async def once() -> int:
        async with httpx.AsyncClient(transport=transport) as c:
            return (await c.get(f"{echo.url}/x")).status_code

    assert await once() == 200
    # a second client on the same transport (closed by the first) builds a new pool
    assert await once() == 200


async def test_the_shared_client_keeps_no_cookies_between_runs(
    engine: Engine, sink: tuple[RecordingSink, str]
) -> None:
    """One client serves every run and project: a cookie must not ride along to the next."""
    receiver, url = sink
    receiver.script("/login", Reply(200, {"ok": True}, {"Set-Cookie": "session=secret; Path=/"}))
    first = await run_text(
        engine, f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{url}/login'}}}}\n"
    )
    second = await run_text(
        engine, f"steps:\n  - {{id: b, step_type: http, parameters: {{url: '{url}/next'}}}}\n"
    )
    assert first.step("a").status is StepStatus.SUCCESS
    assert second.step("b").status is StepStatus.SUCCESS
    assert [r.path for r in receiver.requests] == ["/login", "/next"]
    assert "cookie" not in receiver.requests[1].headers
    assert "set-cookie" not in (first.step("a").output or {})["headers"]  # nor stored


async def test_the_output_url_carries_no_credentials_or_query(
    engine: Engine, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    secret_url = url.replace("http://", "http://user:pw@") + "/x?token=s3cret"
    result = await run_text(
        engine, f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{secret_url}'}}}}\n"
    )
    step = result.step("a")
    assert step.status is StepStatus.SUCCESS and step.output is not None
    assert step.output["url"] == f"{url}/x"
    assert receiver.requests[0].query == "token=s3cret"  # sent, just not echoed back
    plain = await run_text(
        engine, f"steps:\n  - {{id: b, step_type: http, parameters: {{url: '{url}/y'}}}}\n"
    )
    assert plain.step("b").output["url"] == f"{url}/y"  # type: ignore[index]


def _gzip_of_zeros(megabytes: int) -> bytes:
    """A gzip stream of ``megabytes`` MiB of zeros, built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"\0" * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


async def test_a_stacked_gzip_bomb_is_refused_within_the_cap(
    engine: Engine, sink: tuple[RecordingSink, str]
) -> None:
    """F: a few KB of `gzip, gzip` that would expand to 512 MiB: refused at the response cap,
    with memory bounded by it (the inflated bytes never exist)."""
    receiver, url = sink
    bomb = gzip.compress(_gzip_of_zeros(512), 9)
    assert len(bomb) < 64 * 1024
    receiver.script("/bomb", Reply(200, bomb, {"Content-Encoding": "gzip, gzip"}))
    tracemalloc.start()
    try:
        result = await run_text(
            engine, f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{url}/bomb'}}}}\n"
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    step = result.step("a")
    assert step.error is not None and step.error.code == "response_too_large"
    assert peak < 64 * 1024 * 1024, peak  # the 10 MiB cap, a few times over at most


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, no zlib header
        ("gzip, gzip", lambda b: gzip.compress(gzip.compress(b))),
        ("gzip", lambda b: gzip.compress(b[:700]) + gzip.compress(b[700:])),  # two members
        ("identity", lambda b: b),
        ("br", lambda b: b),  # a coding it does not know passes through, as in httpx
    ],
)
async def test_encoded_bodies_decode_as_sent(
    engine: Engine, sink: tuple[RecordingSink, str], encoding: str, encode: Any
) -> None:
    receiver, url = sink
    body = json.dumps({"items": list(range(500))}).encode()
    receiver.script(
        "/enc",
        Reply(
            200, encode(body), {"Content-Encoding": encoding, "Content-Type": "application/json"}
        ),
    )
    step = (
        await run_text(
            engine,
            f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{url}/enc', "
            "response_format: json}}\n",
        )
    ).step("a")
    assert step.status is StepStatus.SUCCESS, step.error
    assert step.output is not None and step.output["body"] == {"items": list(range(500))}


async def test_a_body_that_is_not_its_encoding_is_a_clear_error(
    engine: Engine, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/lie", Reply(200, b"plain text, not gzip", {"Content-Encoding": "gzip"}))
    step = (
        await run_text(
            engine, f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{url}/lie'}}}}\n"
        )
    ).step("a")
    assert step.error is not None and step.error.code == "invalid_response"


async def test_a_step_cannot_raise_the_operators_response_cap(
    make_engine: Any, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/big", Reply(200, "x" * 5000))
    engine = make_engine(http_max_response_bytes=1000)
    step = (
        await run_text(
            engine,
            f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{url}/big', "
            "max_response_bytes: 1000000000}}\n",
        )
    ).step("a")
    assert step.error is not None and step.error.code == "response_too_large"


class _Drip:
    """Answers at once, then sends its body one byte at a time, 0.3 s apart, for ever."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await asyncio.sleep(0.3)


async def test_the_http_timeout_bounds_the_whole_request(engine: Engine) -> None:
    """F: a body dripping slower than the timeout, but faster than any one read's timeout,
    still ends at the step's `timeout`."""
    with LocalServer(_Drip()) as server:
        step = (
            await run_text(
                engine,
                f"steps:\n  - {{id: a, step_type: http, parameters: {{url: '{server.url}/', "
                "timeout: 1}}\n",
            )
        ).step("a")
    assert step.error is not None and step.error.code == "timeout", step.error
