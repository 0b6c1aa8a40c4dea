"""Slack: ``slack.send_message``, Slack Web API's ``chat.postMessage``.

The documented REST endpoint through the context's guarded HTTP client, not ``slack_sdk``: its
async client brings its own aiohttp session, which would bypass the engine's SSRF guard, pinned
addresses and response caps. The base URL is ``slack_base_url`` (default
``https://slack.com/api``). The bot token comes from the vault (``credential = "required"``, a
``token`` or ``oauth2`` credential of platform ``slack``).

Slack answers HTTP 200 with ``{"ok": false, "error": ...}`` for most failures; they map to:
``not_authed``, ``invalid_auth``, ``account_inactive``, ``token_revoked``, ``token_expired`` →
``credential_invalid``; ``missing_scope`` → ``insufficient_scope``; ``channel_not_found``,
``user_not_found``, ``not_in_channel`` → ``not_found``; ``ratelimited`` and HTTP 429 →
``rate_limited`` (retryable after ``Retry-After``); 5xx → ``upstream_error`` (retryable); any
other error → ``upstream_error`` with Slack's code.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
from pydantic import AliasChoices, Field, model_validator

from ..codes import ErrorCode
from ..errors import ActionError
from .base import MISSING_OR_SCOPE, Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .http import retry_after_seconds
from .platform import bearer_token, call

__all__ = ["SendMessage", "slack_error"]

DEFAULT_BASE_URL = "https://slack.com/api"

_CODES = {
    "not_authed": ErrorCode.CREDENTIAL_INVALID,
    "invalid_auth": ErrorCode.CREDENTIAL_INVALID,
    "account_inactive": ErrorCode.CREDENTIAL_INVALID,
    "token_revoked": ErrorCode.CREDENTIAL_INVALID,
    "token_expired": ErrorCode.CREDENTIAL_INVALID,
    "missing_scope": ErrorCode.INSUFFICIENT_SCOPE,
    "channel_not_found": ErrorCode.NOT_FOUND,
    "user_not_found": ErrorCode.NOT_FOUND,
    "not_in_channel": ErrorCode.NOT_FOUND,
    "is_archived": ErrorCode.NOT_FOUND,
    "ratelimited": ErrorCode.RATE_LIMITED,
}


def slack_error(response: httpx.Response, body: Any, method: str) -> ActionError:
    """The error a Slack Web API answer stands for (HTTP status, or ``ok: false``)."""
    retry_after = retry_after_seconds(response.headers.get("retry-after"))
    if response.status_code == 429:
        return ActionError(
            f"Slack rate limited {method}", code=ErrorCode.RATE_LIMITED, retryable=True,
            retry_after=retry_after, status=429,
        )  # fmt: skip
    if response.status_code >= 500:
        return ActionError(
            f"Slack answered {response.status_code} to {method}",
            code=ErrorCode.UPSTREAM_ERROR,
            retryable=True,
            status=response.status_code,
        )
    said = body.get("error") if isinstance(body, dict) else None
    if not isinstance(said, str):
        return ActionError(
            f"Slack answered {response.status_code} to {method} without a Slack answer",
            code=ErrorCode.UPSTREAM_ERROR,
            status=response.status_code,
        )
    code = _CODES.get(said, ErrorCode.UPSTREAM_ERROR)
    details: dict[str, Any] = {"slack_error": said}
    if said == "missing_scope" and isinstance(body, dict):
        details.update(needed=body.get("needed"), provided=body.get("provided"))
    message = f"Slack refused {method}: {said}"
    if code == ErrorCode.INSUFFICIENT_SCOPE:
        message = f"{MISSING_OR_SCOPE}: Slack says {said} ({body.get('needed')})"
    return ActionError(
        message,
        code=code,
        retryable=code == ErrorCode.RATE_LIMITED,
        retry_after=retry_after,
        details=details,
    )


class SendMessage(Action):
    """Post a message to a Slack channel (or thread) as the project's Slack app."""

    class Params(ParamsModel):
        channel: str = Field(
            min_length=1, max_length=200, validation_alias=AliasChoices("channel", "channel_id")
        )
        text: str | None = Field(
            default=None, max_length=40_000, validation_alias=AliasChoices("text", "message")
        )
        blocks: list[dict[str, Any]] | None = Field(default=None, max_length=50)
        thread_ts: str | None = Field(default=None, max_length=64)
        timeout: float = Field(default=30.0, gt=0, le=300)

        @model_validator(mode="after")
        def _something(self) -> SendMessage.Params:
            if not self.text and not self.blocks:
                raise ValueError("a message needs `text` or `blocks`")
            return self

    class Output(OutputModel):
        ok: bool
        channel: str
        ts: str
        message: dict[str, Any]

    name = "slack.send_message"
    aliases = ("send_slack", "send_slack_message")
    platform: ClassVar[str] = "slack"
    delivery: ClassVar = "unsafe"  # a message posted twice is seen twice
    required_scopes: ClassVar = ("chat:write",)
    credential: ClassVar = "required"
    description = "Post a message to a Slack channel (chat.postMessage)."
    example: ClassVar = {"channel": "#general", "text": "Deploy finished"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        token = bearer_token(await ctx.credential("slack"), "slack")
        body: dict[str, Any] = {"channel": params.channel}
        for name in ("text", "blocks", "thread_ts"):
            if getattr(params, name) is not None:
                body[name] = getattr(params, name)
        url = ctx.base_url("slack", DEFAULT_BASE_URL) + "/chat.postMessage"
        response = await call(
            ctx,
            "Slack",
            "POST",
            url,
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=params.timeout,
        )
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict) or not answer.get("ok"):
            raise slack_error(response, answer, "chat.postMessage")
        return {
            "ok": True,
            "channel": str(answer.get("channel", params.channel)),
            "ts": str(answer.get("ts", "")),
            "message": answer.get("message") if isinstance(answer.get("message"), dict) else {},
        }
