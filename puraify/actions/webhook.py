"""Webhooks: ``webhook.call``, an ``http`` request that a receiver can verify, and
``zapier.trigger_zap``, a Zapier Catch Hook.

``webhook.call`` is the ``http`` action (any method, JSON or form body, the SSRF guard, keyed
delivery with ``Idempotency-Key: <run_id>:<step_id>``) plus, when the project holds a
``webhook_secret`` credential for the step's ``secret_platform`` (``webhook`` by default), two
headers a receiver checks before it trusts the call: ``X-Puraify-Timestamp`` (Unix seconds) and
``X-Puraify-Signature-256: sha256=<hex>``, the HMAC-SHA256 under the secret of
``<timestamp>.<body>`` (the timestamp lets a receiver refuse a replayed call).

``zapier.trigger_zap`` POSTs its JSON ``payload`` to ``<zapier_base_url>/hooks/catch/<hook>/``
(``hook`` is the ``<account>/<hook id>`` part of the Catch Hook's URL), as Zapier documents; the
hook's URL is its only credential, so no vault credential is needed. A plain REST call through
the context's client: Zapier offers no SDK for Catch Hooks.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from ..codes import ErrorCode
from ..errors import ActionError
from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .http import Http, retry_after_seconds
from .platform import call

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "TriggerZap", "WebhookCall", "signature"]

SIGNATURE_HEADER = "X-Puraify-Signature-256"
TIMESTAMP_HEADER = "X-Puraify-Timestamp"
ZAPIER_BASE_URL = "https://hooks.zapier.com"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookCall(Http):
    """Call a webhook; signed when the project holds a webhook secret."""

    class Params(Http.Params):
        #: the platform whose ``webhook_secret`` credential signs the call
        secret_platform: str = Field(default="webhook", min_length=1, max_length=128)

    name = "webhook.call"
    aliases: ClassVar[tuple[str, ...]] = ("call_webhook", "webhook")
    platform: ClassVar[str] = "webhook"
    credential: ClassVar = "optional"
    output_aliases: ClassVar = {"response": "body"}
    description = "Call a webhook (SSRF-guarded), signed with the project's webhook secret."
    example: ClassVar = {"url": "https://hooks.example.com/orders", "method": "POST", "json": {}}

    def endpoint(self, parameters: Mapping[str, Any]) -> str | None:
        """The receiver (host and port): one failing receiver never pauses calls to others."""
        url = parameters.get("url")
        if not isinstance(url, str):
            return None
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        return f"{parts.hostname or ''}:{port or ''}"

    async def prepare(self, request: httpx.Request, params: Any, ctx: ActionContext) -> None:
        found = ctx.credentials.get(params.secret_platform)
        if found is None and params.secret_platform != self.platform:
            found = await ctx.credential(params.secret_platform)
        if not found:
            return
        secret = found.get("secret")
        if not isinstance(secret, str) or not secret:
            raise ActionError(
                f"the {params.secret_platform} credential is not a webhook_secret",
                code=ErrorCode.INVALID_CREDENTIAL,
            )
        stamp = str(int(time.time()))
        request.headers[TIMESTAMP_HEADER] = stamp
        request.headers[SIGNATURE_HEADER] = signature(secret, stamp, request.content)


class TriggerZap(Action):
    """Trigger a Zap through its Catch Hook."""

    class Params(ParamsModel):
        hook: str = Field(min_length=3, max_length=200, pattern=r"^[0-9]+/[A-Za-z0-9]+/?$")
        payload: dict[str, Any] = Field(default_factory=dict)
        timeout: float = Field(default=30.0, gt=0, le=300)

    class Output(OutputModel):
        status: str
        id: str | None = None
        request_id: str | None = None
        attempt: str | None = None

    name = "zapier.trigger_zap"
    aliases: ClassVar[tuple[str, ...]] = ("trigger_zap",)
    platform: ClassVar[str] = "zapier"
    delivery: ClassVar = "keyed"
    description = "Trigger a Zap through its Catch Hook (POST of a JSON payload)."
    example: ClassVar = {"hook": "123456/abcdef", "payload": {"order": 42}}

    def endpoint(self, parameters: Mapping[str, Any]) -> str | None:
        """The hook: one failing Zap never pauses the others."""
        hook = parameters.get("hook")
        return str(hook) if hook is not None else None

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        url = f"{ctx.base_url('zapier', ZAPIER_BASE_URL)}/hooks/catch/{params.hook.strip('/')}/"
        response = await call(
            ctx,
            "Zapier",
            "POST",
            url,
            json=params.payload,
            headers={"Idempotency-Key": ctx.idempotency_key},
            timeout=params.timeout,
        )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code == 429 or response.status_code >= 500:
            raise ActionError(
                f"Zapier answered {response.status_code}",
                code=ErrorCode.RATE_LIMITED
                if response.status_code == 429
                else ErrorCode.UPSTREAM_ERROR,
                retryable=True,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
                status=response.status_code,
            )
        if response.status_code == 404 or response.status_code == 410:
            raise ActionError(
                f"Zapier knows no Catch Hook {params.hook}",
                code=ErrorCode.NOT_FOUND,
                status=response.status_code,
            )
        if response.status_code >= 400 or not isinstance(answer, dict):
            raise ActionError(
                f"Zapier refused the hook ({response.status_code})",
                code=ErrorCode.UPSTREAM_ERROR,
                status=response.status_code,
            )
        return {
            "status": str(answer.get("status", "success")),
            "id": answer.get("id"),
            "request_id": answer.get("request_id"),
            "attempt": answer.get("attempt"),
        }
