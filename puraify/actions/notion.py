"""Notion: ``notion.create_page`` and ``notion.create_task``, pages in a database.

Through Notion's official SDK (``notion-client``), on a client of its own that sends through
the context's guarded one (the SDK sets its base URL and token on the client it is given, so
it never gets the shared one): the SSRF guard and pinned addresses hold, the SDK's retries are off
(the step's retry policy decides), and the API version is pinned (``2022-06-28``, where a page's
parent is ``{"database_id"}``). The base URL is ``notion_base_url`` (default
``https://api.notion.com``); the integration token comes from the vault (platform ``notion``).

``create_task`` maps ``title``, ``status``, ``due`` and ``assignee`` onto the database's
properties (named by ``title_property``, ``status_property``, ``due_property`` and
``assignee_property``: ``Name``, ``Status``, ``Due`` and ``Assignee`` by default); ``create_page``
takes Notion's own ``properties``. Notion's errors map to: ``unauthorized`` →
``credential_invalid``, ``restricted_resource`` → ``insufficient_scope``, ``object_not_found`` →
``not_found``, ``validation_error`` → ``invalid_parameters`` (with Notion's message),
``rate_limited`` → ``rate_limited`` (retryable), 5xx → ``upstream_error`` (retryable).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import httpx
from notion_client import AsyncClient
from notion_client.client import ClientOptions
from notion_client.errors import APIResponseError, HTTPResponseError, RequestTimeoutError
from pydantic import Field

from ..codes import ErrorCode
from ..errors import ActionError
from .base import MISSING_OR_SCOPE, Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .http import retry_after_seconds
from .platform import bearer_token, too_slow, unreachable

__all__ = ["CreatePage", "CreateTask"]

DEFAULT_BASE_URL = "https://api.notion.com"
NOTION_VERSION = "2022-06-28"

_CODES = {
    "unauthorized": ErrorCode.CREDENTIAL_INVALID,
    "restricted_resource": ErrorCode.INSUFFICIENT_SCOPE,
    "object_not_found": ErrorCode.NOT_FOUND,
    "validation_error": ErrorCode.INVALID_PARAMETERS,
    "invalid_json": ErrorCode.INVALID_PARAMETERS,
    "rate_limited": ErrorCode.RATE_LIMITED,
}


class _PageOutput(OutputModel):
    id: str
    url: str | None = None
    created_time: str | None = None
    properties: dict[str, Any] = Field(default_factory=dict)


class CreatePage(Action):
    """Create a page in a Notion database from Notion's own property values."""

    class Params(ParamsModel):
        database_id: str = Field(min_length=1, max_length=64)
        properties: dict[str, Any]
        children: list[dict[str, Any]] | None = Field(default=None, max_length=100)
        timeout: float = Field(default=30.0, gt=0, le=300)

    Output = _PageOutput
    name = "notion.create_page"
    aliases: ClassVar[tuple[str, ...]] = ()
    platform: ClassVar[str] = "notion"
    delivery: ClassVar = "unsafe"  # a page created twice is two pages
    credential: ClassVar = "required"
    description = "Create a page in a Notion database."
    example: ClassVar = {"database_id": "d9824bdc84454327be8b5b47500af6ce", "properties": {}}

    def properties(self, params: Any) -> dict[str, Any]:
        return dict(params.properties)

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        token = bearer_token(await ctx.credential("notion"), "notion")
        options = ClientOptions(
            auth=token,
            base_url=ctx.base_url("notion", DEFAULT_BASE_URL),
            timeout_ms=int(params.timeout * 1000),
            notion_version=NOTION_VERSION,
            retry=False,
            log_level=logging.CRITICAL,  # its refusals are the step's error, not a log line
        )
        own = ctx.own_client()
        client = AsyncClient(options, client=own)
        body: dict[str, Any] = {
            "parent": {"database_id": params.database_id},
            "properties": self.properties(params),
        }
        if getattr(params, "children", None):
            body["children"] = params.children
        try:
            async with own:
                page = await client.pages.create(**body)
        except APIResponseError as exc:
            raise _error(exc) from None
        except RequestTimeoutError:
            raise too_slow("Notion") from None
        except HTTPResponseError as exc:
            raise ActionError(
                f"Notion answered {exc.status}",
                code=ErrorCode.UPSTREAM_ERROR,
                retryable=exc.status >= 500,
                status=exc.status,
            ) from None
        except httpx.HTTPError as exc:
            raise unreachable("Notion", exc) from None
        page = dict(page) if isinstance(page, dict) else {}
        return {
            "id": str(page.get("id", "")),
            "url": page.get("url"),
            "created_time": page.get("created_time"),
            "properties": page.get("properties") or {},
        }


class CreateTask(CreatePage):
    """Create a task (a page) in a Notion database: title, status, due date, assignee."""

    class Params(ParamsModel):
        database_id: str = Field(min_length=1, max_length=64)
        title: str = Field(min_length=1, max_length=2000)
        status: str | None = Field(default=None, max_length=100)
        due: str | None = Field(default=None, max_length=40)
        assignee: str | None = Field(default=None, max_length=64)
        title_property: str = "Name"
        status_property: str = "Status"
        due_property: str = "Due"
        assignee_property: str = "Assignee"
        timeout: float = Field(default=30.0, gt=0, le=300)

    name = "notion.create_task"
    aliases: ClassVar[tuple[str, ...]] = ("create_task",)
    description = "Create a task in a Notion database (title, status, due date, assignee)."
    example: ClassVar = {
        "database_id": "d9824bdc84454327be8b5b47500af6ce",
        "title": "Review the launch plan",
        "status": "Not started",
        "due": "2026-12-24",
    }

    def properties(self, params: Any) -> dict[str, Any]:
        out: dict[str, Any] = {
            params.title_property: {"title": [{"text": {"content": params.title}}]}
        }
        if params.status is not None:
            out[params.status_property] = {"status": {"name": params.status}}
        if params.due is not None:
            out[params.due_property] = {"date": {"start": params.due}}
        if params.assignee is not None:
            out[params.assignee_property] = {"people": [{"id": params.assignee}]}
        return out


def _error(exc: APIResponseError) -> ActionError:
    said = str(getattr(exc.code, "value", exc.code))
    code = _CODES.get(said, ErrorCode.UPSTREAM_ERROR)
    message = f"Notion refused the page ({said}): {exc}"[:1000]
    if code == ErrorCode.INSUFFICIENT_SCOPE:
        message = f"{MISSING_OR_SCOPE}: Notion says {said}"
    return ActionError(
        message,
        code=code,
        retryable=code == ErrorCode.RATE_LIMITED or exc.status >= 500,
        retry_after=retry_after_seconds(exc.headers.get("retry-after")),
        status=exc.status,
        details={"notion_code": said},
    )
