"""The engine's HTTP transport: httpx's client API over one aiohttp connection pool.

Actions keep the ``httpx.AsyncClient`` interface (requests, responses, redirects, cookies,
exceptions, and the SSRF guard as an httpx transport); this module only moves the bytes. It
replaced httpcore because of what the two cost on the 2-core development machine, one process,
32 concurrent POSTs to a local receiver (``bench http`` and docs/benchmarks.md):

- httpcore, one pool of 32 connections: ~2,150 us of CPU per request (its pool re-examines
  every queued request against every connection, so the cost grows with requests x connections);
  32 sharded pools of 8 brought it to ~630 us;
- aiohttp's connector: ~65 us per request, and httpx's own client layer on top ~90 us.

aiohttp does no redirects, cookies or decompression here: httpx does them, so every redirect hop
passes the SSRF guard again and decoded bodies are capped by the action as before. Requests reach
this transport with their host already pinned to a checked address (``SsrfTransport``); TLS then
verifies the name the caller asked for (``sni_hostname``).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import certifi
import httpx

if TYPE_CHECKING:  # imported on first request: a CLI run without HTTP steps never pays ~0.1 s
    import aiohttp
    from yarl import URL

__all__ = ["AiohttpTransport"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Send httpx requests through one shared ``aiohttp`` connection pool."""

    def __init__(self, *, max_connections: int = 256, keepalive_seconds: float = 15.0) -> None:
        self.max_connections = max_connections
        self.keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls: ssl.SSLContext | None = None

    def _current_session(self) -> aiohttp.ClientSession:
        # Built on first use, inside the loop that will use it: a CLI run without HTTP steps
        # never pays for the TLS context (~50 ms), and a pool never outlives its event loop.
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._tls is None:
                self._tls = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                limit_per_host=0,
                ssl=self._tls,
                keepalive_timeout=self.keepalive_seconds,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the cookies
                auto_decompress=False,  # httpx decodes (and the action caps the decoded size)
                trust_env=False,  # never a proxy or .netrc from the environment
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
            self._loop = loop
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._current_session()
        body = await request.aread()  # actions build bodies in memory: always sent in full
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() != b"transfer-encoding"
        ]
        if body and "content-length" not in request.headers:
            headers.append(("Content-Length", str(len(body))))
        url = request.url
        if url.userinfo:  # httpx already turned it into an Authorization header
            url = url.copy_with(username=None, password=None)
        sni = request.extensions.get("sni_hostname")
        spec = request.extensions.get("timeout") or {}
        try:
            response = await session.request(
                request.method,
                _yarl(str(url)),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=_timeout(spec.get("connect"), spec.get("read"), spec.get("pool")),
                server_hostname=sni if isinstance(sni, str) else None,
            )
        except Exception as exc:
            raise _translate(exc, request, connecting=True) from exc
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            extensions={
                "http_version": b"HTTP/%d.%d" % (response.version or (1, 1)),
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - aclose is always awaited in a loop
                running = None
            if running is self._loop:
                await session.close()


# The same few URLs (a webhook, a platform's API) and timeouts come back all the time.
@functools.lru_cache(maxsize=1024)
def _yarl(url: str) -> URL:
    from yarl import URL

    return URL(url, encoded=True)


@functools.lru_cache(maxsize=64)
def _timeout(
    connect: float | None, read: float | None, pool: float | None
) -> aiohttp.ClientTimeout:
    """httpx's timeouts as aiohttp's: acquiring a connection may take the pool wait plus the
    connect time."""
    import aiohttp

    acquire = None if connect is None or pool is None else connect + pool
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self.response = response
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_any():
                yield chunk
        except Exception as exc:
            raise _translate(exc, self.request, connecting=False) from exc

    async def aclose(self) -> None:
        # A body read to the end frees the connection for reuse; a cut one closes it.
        if self.response.content.at_eof():
            self.response.release()
        else:
            self.response.close()


def _translate(exc: Exception, request: httpx.Request, *, connecting: bool) -> Exception:
    """aiohttp's errors as the httpx exceptions actions already handle."""
    import aiohttp

    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        if connecting and not isinstance(exc, aiohttp.ServerTimeoutError):
            return httpx.PoolTimeout(message, request=request)
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message, request=request)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.ClientResponseError):  # malformed status line or headers
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.InvalidURL(message)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return httpx.ReadError(message, request=request)
    return exc
