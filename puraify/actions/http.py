"""``http``: one HTTP request through the shared client (SSRF guard in its transport).

Keyed delivery: every request carries ``Idempotency-Key: <run_id>:<step_id>`` unless the step
sets one. Retryable failures: connection errors, timeouts, 5xx, and 429 (``Retry-After`` is
honoured). Other 4xx fail at once. A failed request that got an answer keeps it as the step's
output (status, headers, body), so a later step can read what the platform said; the error's
details carry the body cut to 1 KiB. Templates may read ``body`` as ``response`` too.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AliasChoices, Field

from ..errors import ActionError, GuardError
from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .content import read_bounded

__all__ = ["Http", "retry_after_seconds"]

_ERROR_BODY_BYTES = 1024


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Http(Action):
    """Send an HTTP request and return status, headers and the (parsed) body."""

    class Params(ParamsModel):
        url: str
        method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] = "GET"
        headers: dict[str, str] = Field(default_factory=dict)
        query: dict[str, Any] = Field(
            default_factory=dict, validation_alias=AliasChoices("query", "params")
        )
        body: Any = None
        json_body: Any = Field(default=None, validation_alias=AliasChoices("json", "json_body"))
        body_file: str | None = None
        timeout: float = Field(
            default=30.0, gt=0, validation_alias=AliasChoices("timeout", "timeout_seconds")
        )
        expected_status: int | list[int] | None = None
        follow_redirects: bool = True
        max_response_bytes: int | None = Field(default=None, gt=0)
        response_format: Literal["auto", "json", "text"] = "auto"
        #: a platform whose credential (from the vault, at call time) is sent as the
        #: Authorization header: Bearer for token, oauth2 and api_key, Basic for basic
        credential: str | None = Field(default=None, min_length=1, max_length=128)

    class Output(OutputModel):
        status: int
        headers: dict[str, str]
        body: Any
        url: str
        elapsed_ms: float

    name = "http"
    # a call to any URL: never signed with the project's webhook secret (call_webhook is),
    # which would hand a receiver's signature to whatever the URL names
    aliases: ClassVar[tuple[str, ...]] = ("http_request",)
    output_aliases: ClassVar = {"response": "body"}
    delivery: ClassVar = "keyed"
    description = "Send an HTTP request (SSRF-guarded); JSON responses are parsed."
    example: ClassVar = {
        "url": "https://api.example.com/items",
        "method": "POST",
        "body": {"name": "x"},
    }

    async def prepare(self, request: httpx.Request, params: Any, ctx: ActionContext) -> None:
        """Last changes to the request before it is sent (a signature over its body)."""

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        headers = dict(params.headers)
        if params.credential is not None:
            headers["Authorization"] = _authorization(
                params.credential, await ctx.credential(params.credential)
            )
        if not any(k.lower() == "idempotency-key" for k in headers):
            headers["Idempotency-Key"] = ctx.idempotency_key
        content: bytes | str | None = None
        json_payload: Any = params.json_body
        if params.body_file:
            with ctx.workspace.open(params.body_file, "r") as fh:
                content = fh.read(ctx.limit("file_max_read_bytes", 10 * 1024 * 1024))
        elif isinstance(params.body, dict | list):
            json_payload = params.body
        elif params.body is not None:
            content = (
                params.body if isinstance(params.body, str | bytes) else json.dumps(params.body)
            )
        # a step may ask for less than the operator's cap, never more
        cap = ctx.limit("http_max_response_bytes", 10 * 1024 * 1024)
        if params.max_response_bytes is not None:
            cap = min(cap, params.max_response_bytes)
        started = time.perf_counter()
        try:
            # `timeout` bounds the whole request: connecting, waiting and reading the body
            async with asyncio.timeout(params.timeout):
                request = ctx.http.build_request(
                    params.method,
                    params.url,
                    headers=headers,
                    params=params.query or None,
                    content=content,
                    json=json_payload,
                    timeout=params.timeout,
                )
                await self.prepare(request, params, ctx)
                response = await ctx.http.send(
                    request, stream=True, follow_redirects=params.follow_redirects
                )
                # decoded here, within the cap at every layer: `gzip, gzip` bombs included
                raw = await read_bounded(response, cap, what="the response body")
        except (httpx.TimeoutException, TimeoutError):
            raise ActionError(
                f"{params.method} {_safe(params.url)} timed out after {params.timeout}s",
                code="timeout",
                retryable=True,
            ) from None
        except httpx.TooManyRedirects:
            raise ActionError(
                f"too many redirects from {_safe(params.url)}", code="too_many_redirects"
            ) from None
        except httpx.InvalidURL:
            raise _invalid_url(params.url) from None
        except httpx.UnsupportedProtocol:
            raise GuardError(
                "only http and https URLs are allowed", code="ssrf_blocked", field="url"
            ) from None
        except httpx.TransportError as exc:
            raise ActionError(
                f"{params.method} {_safe(params.url)} failed: {type(exc).__name__}",
                code="connection_error",
                retryable=True,
            ) from None
        elapsed = (time.perf_counter() - started) * 1000
        body_bytes = bytes(raw)
        status = response.status_code
        expected = params.expected_status
        ok = (
            200 <= status < 300
            if expected is None
            else status in (expected if isinstance(expected, list) else [expected])
        )
        output = {
            "status": status,
            # cookies are the platform's session with this engine, which keeps none: not
            # data for a mission, and not to be stored with the run
            "headers": {k: v for k, v in response.headers.items() if k != "set-cookie"},
            "body": None,
            "url": _safe_url(response.url),
            "elapsed_ms": round(elapsed, 3),
        }
        if not ok:
            retryable = status >= 500 or status == 429 or status == 408
            snippet = body_bytes[:_ERROR_BODY_BYTES].decode("utf-8", "replace")
            try:
                output["body"] = _parse(body_bytes, response, params.response_format)
            except ActionError:  # an error page where JSON was asked for: kept as text
                output["body"] = body_bytes.decode(response.encoding or "utf-8", "replace")
            raise ActionError(
                f"{params.method} {_safe(params.url)} answered {status}",
                code="http_error",
                status=status,
                retryable=retryable,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
                details={"status": status, "body": snippet},
                output=output,
            )
        output["body"] = _parse(body_bytes, response, params.response_format)
        return output


def _parse(raw: bytes, response: httpx.Response, fmt: str) -> Any:
    text = raw.decode(response.encoding or "utf-8", "replace")
    is_json = fmt == "json" or (
        fmt == "auto" and "json" in response.headers.get("content-type", "").lower()
    )
    if is_json and text.strip():
        try:
            return json.loads(text)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            if fmt == "json":
                raise ActionError("response is not valid JSON", code="invalid_response") from None
    return text


def _invalid_url(url: str) -> ActionError:
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    try:
        socket.inet_aton(host)
    except OSError:
        return ActionError("the URL is not valid", code="invalid_url", field="url")
    # 0177.0.0.1 and friends: legacy IPv4 spellings are refused, never guessed at.
    return GuardError(
        f"host {host!r} is an ambiguous IPv4 spelling and is refused",
        code="ssrf_blocked",
        field="url",
    )


def _safe_url(url: httpx.URL) -> str:
    """``url`` without credentials or query (they may carry secrets)."""
    if not url.userinfo and not url.query:
        return str(url)
    return str(url.copy_with(username=None, password=None, query=None))


def _safe(url: str) -> str:
    try:
        return _safe_url(httpx.URL(url))
    except httpx.InvalidURL:
        return "<invalid url>"


def _authorization(platform: str, credential: Mapping[str, Any]) -> str:
    """The Authorization header a credential is sent as."""
    kind = credential.get("type")
    if kind == "basic":
        pair = f"{credential.get('username') or ''}:{credential.get('password') or ''}"
        return "Basic " + base64.b64encode(pair.encode()).decode()
    secret = {"token": "token", "oauth2": "access_token", "api_key": "api_key"}.get(str(kind))
    value = credential.get(secret) if secret else None
    if not isinstance(value, str) or not value:
        raise ActionError(
            f"the {platform} credential ({kind}) cannot be sent as an Authorization header; "
            f"read it in a template ({{{{ secrets.{platform} }}}}) instead",
            code="invalid_parameters",
            field="credential",
        )
    return f"Bearer {value}"
