"""The API in-process (httpx ASGITransport, lifespan run) on a real SQLite store.

The app is started and stopped through the ASGI lifespan protocol, as a server does
(``tests.helpers.Lifespan``), not through Starlette's router internals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from puraify.api import create_app
from puraify.settings import Settings
from tests.conftest import TEST_ENV
from tests.helpers import Lifespan


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mode": "server",
        "home": tmp_path / "home",
        "ssrf_allow_hosts": ("127.0.0.1",),
        "egress_only_allowlisted": True,
        "execute_timeout_seconds": 10,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    tokens: dict[str, str]

    def auth(self, project: str = "a") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[project]}"}

    async def token(self, project: str, *scopes: str) -> str:
        _, token = await self.app.state.tokens.create(project, set(scopes))
        return token  # type: ignore[no-any-return]


ApiFactory = Callable[..., Any]


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[ApiFactory]:
    stack: list[Any] = []

    async def factory(**overrides: Any) -> Api:
        app = create_app(api_settings(tmp_path, **overrides), environ=TEST_ENV)
        lifespan = Lifespan(app)
        await lifespan.__aenter__()
        stack.append(lifespan)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        stack.append(client)
        all_scopes = {"execute", "runs:read", "runs:write", "actions:read", "metrics:read"}
        tokens = {}
        for project in ("a", "b"):
            _, tokens[project] = await app.state.tokens.create(project, all_scopes)
        return Api(app, client, tokens)

    yield factory
    for item in reversed(stack):
        if isinstance(item, httpx.AsyncClient):
            await item.aclose()
        else:
            await item.__aexit__(None, None, None)


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()  # type: ignore[no-any-return]
