"""Response bodies decoded within a byte budget, whatever ``Content-Encoding`` claims.

A few kilobytes of ``gzip, gzip`` can expand to gigabytes, and a decoder that inflates a whole
chunk at once allocates all of it before any cap is checked. ``BoundedDecoder`` undoes each
coding in turn (``gzip``, ``deflate``; ``identity`` and codings it does not know pass through,
as httpx passes them) and never lets any layer produce more than the budget: past it,
``ResponseTooLarge``. At most ``MAX_CODINGS`` codings are undone.
"""

from __future__ import annotations

import zlib

import httpx

from ..errors import ActionError

__all__ = [
    "MAX_CODINGS",
    "BoundedDecoder",
    "ResponseTooLarge",
    "read_bounded",
    "send_bounded",
]

MAX_CODINGS = 3


class ResponseTooLarge(Exception):
    """Decoding the body would pass the byte budget (or it stacks too many codings)."""


class _Inflater:
    """One ``gzip`` or ``deflate`` layer that produces at most ``budget`` bytes in all."""

    def __init__(self, coding: str, budget: int) -> None:
        self.coding = coding
        self.budget = budget
        self.produced = 0
        self.started = False
        self.inflater = self._new(zlib.MAX_WBITS | 16 if coding == "gzip" else zlib.MAX_WBITS)

    @staticmethod
    def _new(wbits: int) -> zlib._Decompress:
        return zlib.decompressobj(wbits)

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        while data:
            out += self._inflate(data)
            rest = self.inflater.unused_data
            if not (self.coding == "gzip" and self.inflater.eof and rest.strip(b"\0")):
                break
            # the next member of a multi-member gzip stream (what `cat a.gz b.gz` gives)
            self.inflater = self._new(zlib.MAX_WBITS | 16)
            data = rest
        return bytes(out)

    def _inflate(self, data: bytes) -> bytes:
        try:
            out = self.inflater.decompress(data, self.budget - self.produced + 1)
        except zlib.error:
            if self.coding != "deflate" or self.started:
                raise
            # "deflate" sent without its zlib header, as some servers do (httpx accepts it too)
            self.inflater = self._new(-zlib.MAX_WBITS)
            out = self.inflater.decompress(data, self.budget - self.produced + 1)
        self.started = True
        self.produced += len(out)
        if self.produced > self.budget or self.inflater.unconsumed_tail:
            raise ResponseTooLarge
        return out

    def flush(self) -> bytes:
        out = self.inflater.flush(self.budget - self.produced + 1)
        self.produced += len(out)
        if self.produced > self.budget:
            raise ResponseTooLarge
        return out


class BoundedDecoder:
    """Decode a body sent with ``content_encoding`` into at most ``budget`` bytes."""

    def __init__(self, content_encoding: str | None, budget: int) -> None:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
        codings = ["gzip" if c == "x-gzip" else c for c in codings]
        known = [c for c in codings if c in ("gzip", "deflate")]
        if len(known) > MAX_CODINGS:
            raise ResponseTooLarge
        # applied in order, so undone in reverse
        self.layers = [_Inflater(c, budget) for c in reversed(known)]
        self.budget = budget
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next raw chunk."""
        for layer in self.layers:
            data = layer.feed(data)
        return self._count(data)

    def flush(self) -> bytes:
        """Whatever the layers still hold once the raw body has ended."""
        data = b""
        for layer in self.layers:
            data = layer.feed(data) + layer.flush()
        return self._count(data)

    def _count(self, data: bytes) -> bytes:
        self.size += len(data)
        if self.size > self.budget:
            raise ResponseTooLarge
        return data


async def read_bounded(response: httpx.Response, cap: int, *, what: str = "the response") -> bytes:
    """A streamed response's body, decoded layer by layer within ``cap`` bytes at every layer
    (``gzip, gzip`` bombs included), then closed; ``response_too_large`` past the cap,
    ``invalid_response`` when it does not match its Content-Encoding."""
    try:
        body = bytearray()
        decoder = BoundedDecoder(response.headers.get("content-encoding"), cap)
        async for chunk in response.aiter_raw():
            body += decoder.feed(chunk)
        body += decoder.flush()
        return bytes(body)
    except ResponseTooLarge:
        raise ActionError(
            f"{what} is larger than {cap} bytes once decoded", code="response_too_large"
        ) from None
    except zlib.error:
        raise ActionError(
            f"{what} does not match its Content-Encoding", code="invalid_response"
        ) from None
    finally:
        await response.aclose()


async def send_bounded(
    client: httpx.AsyncClient, request: httpx.Request, cap: int, *, what: str
) -> httpx.Response:
    """``request`` sent with ``client``, its answer read within ``cap`` (``read_bounded``) and
    handed back decoded, as a response whose body is already in memory."""
    response = await client.send(request, stream=True)
    body = await read_bounded(response, cap, what=what)
    kept = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(response.status_code, headers=kept, content=body, request=request)
