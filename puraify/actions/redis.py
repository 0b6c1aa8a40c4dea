"""Redis: ``redis.set`` and ``redis.get`` with ``coredis`` (the asyncio Redis client the rate
limits already use).

The server is the project's ``database_url`` credential of platform ``redis``
(``redis://[user:password@]host:port/db``, ``rediss://`` for TLS, certificates checked). Its
address passes the egress policy (the SSRF guard) and the client connects to the address that
was checked; over TLS the certificate is checked against the host's name. Values are binary-safe: ``encoding: base64`` reads and writes bytes as base64 text,
``utf-8`` (the default) text. ``ttl_seconds`` sets an expiry. ``redis.get`` reads a value
within ``http_max_response_bytes`` (its size is asked first), as every platform answer is read. Only SET and GET exist here: no
mission can send any other command (FLUSHALL, CONFIG, EVAL, KEYS ... are out of reach).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import coredis
from pydantic import Field

from ..codes import ErrorCode
from ..errors import ActionError
from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .platform import tls_for, too_slow, unreachable

__all__ = ["RedisGet", "RedisSet"]


async def _client(ctx: ActionContext, seconds: float) -> coredis.Redis[bytes]:
    credential = await ctx.credential("redis")
    url = credential.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ActionError(
            "the redis credential is not a redis:// or rediss:// URL",
            code=ErrorCode.INVALID_CREDENTIAL,
        )
    port = parts.port or 6379
    address = (
        await ctx.hosts.address(parts.hostname, port) if ctx.hosts is not None else parts.hostname
    )
    db = parts.path.strip("/")
    return coredis.Redis(
        # to the address that was checked (no second lookup to rebind); over TLS the
        # certificate is still checked against the host's name
        host=address,
        port=port,
        db=int(db) if db.isdigit() else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl_context=tls_for(parts.hostname) if parts.scheme == "rediss" else None,
        connect_timeout=seconds,
        stream_timeout=seconds,
    )


async def _run(client: coredis.Redis[bytes], call: Any, seconds: float) -> Any:
    try:
        # the whole command, connecting included, within the step's timeout
        async with asyncio.timeout(seconds):
            return await call(client)
    except (coredis.exceptions.TimeoutError, TimeoutError):
        raise too_slow("Redis") from None
    except coredis.exceptions.AuthenticationError:
        raise ActionError(
            "Redis refused the credential", code=ErrorCode.CREDENTIAL_INVALID
        ) from None
    except (coredis.exceptions.ConnectionError, OSError) as exc:
        raise unreachable("Redis", exc) from None
    except coredis.exceptions.RedisError as exc:
        raise ActionError(
            f"Redis refused the command ({type(exc).__name__})", code=ErrorCode.UPSTREAM_ERROR
        ) from None
    finally:
        client.connection_pool.disconnect()


class RedisSet(Action):
    """Set a key (binary-safe), optionally with an expiry."""

    class Params(ParamsModel):
        key: str = Field(min_length=1, max_length=1024)
        value: str = Field(max_length=16 * 1024 * 1024)
        encoding: Literal["utf-8", "base64"] = "utf-8"
        ttl_seconds: int | None = Field(default=None, gt=0, le=10 * 365 * 86400)
        timeout: float = Field(default=10.0, gt=0, le=120)

    class Output(OutputModel):
        key: str
        stored: bool

    name = "redis.set"
    aliases: ClassVar[tuple[str, ...]] = ("redis_set",)
    platform: ClassVar[str] = "redis"
    delivery: ClassVar = "idempotent"  # setting the same value again changes nothing
    credential: ClassVar = "required"
    description = "Set a Redis key (binary-safe, with an optional expiry)."
    example: ClassVar = {"key": "orders:last", "value": "A-1003", "ttl_seconds": 3600}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        try:
            data = (
                base64.b64decode(params.value, validate=True)
                if params.encoding == "base64"
                else params.value.encode()
            )
        except (binascii.Error, ValueError):
            raise ActionError(
                "value is not base64", code=ErrorCode.INVALID_PARAMETERS, field="value"
            ) from None
        client = await _client(ctx, params.timeout)
        stored = await _run(
            client, lambda c: c.set(params.key, data, ex=params.ttl_seconds), params.timeout
        )
        return {"key": params.key, "stored": bool(stored)}


class RedisGet(Action):
    """Read a key; ``found`` is false when it does not exist."""

    class Params(ParamsModel):
        key: str = Field(min_length=1, max_length=1024)
        encoding: Literal["utf-8", "base64"] = "utf-8"
        timeout: float = Field(default=10.0, gt=0, le=120)

    class Output(OutputModel):
        key: str
        found: bool
        value: str | None = None

    name = "redis.get"
    aliases: ClassVar[tuple[str, ...]] = ("redis_get",)
    platform: ClassVar[str] = "redis"
    delivery: ClassVar = "idempotent"
    credential: ClassVar = "required"
    description = "Read a Redis key (as text, or base64 for bytes)."
    example: ClassVar = {"key": "orders:last"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        cap = ctx.limit("http_max_response_bytes", 10 * 1024 * 1024)

        async def read(c: coredis.Redis[bytes]) -> bytes | None:
            # the size first: a value past the cap is never read into memory
            if await c.strlen(params.key) > cap:
                raise ActionError(
                    f"{params.key} holds more than {cap} bytes", code=ErrorCode.RESPONSE_TOO_LARGE
                )
            value = await c.get(params.key)
            if value is not None and len(value) > cap:  # grown since
                raise ActionError(
                    f"{params.key} holds more than {cap} bytes", code=ErrorCode.RESPONSE_TOO_LARGE
                )
            return value

        client = await _client(ctx, params.timeout)
        data = await _run(client, read, params.timeout)
        if data is None:
            return {"key": params.key, "found": False, "value": None}
        if params.encoding == "base64":
            return {"key": params.key, "found": True, "value": base64.b64encode(data).decode()}
        try:
            return {"key": params.key, "found": True, "value": data.decode()}
        except UnicodeDecodeError:
            raise ActionError(
                f"{params.key} holds bytes that are not UTF-8; read it with encoding: base64",
                code=ErrorCode.INVALID_PARAMETERS,
                field="encoding",
            ) from None
