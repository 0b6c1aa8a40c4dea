"""Driving an ASGI app the way a server does, without one (tests and benchmarks)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, cast

__all__ = ["Lifespan"]


class Lifespan:
    """Start an ASGI app through the lifespan protocol and shut it down on exit, as a server
    does (what ``asgi-lifespan`` does, in the few lines a test needs)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[MutableMapping[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lifespan:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        started = self.app(scope, self._to_app.get, self._from_app.put)
        self._task = asyncio.create_task(cast("Coroutine[Any, Any, None]", started))
        await self._step("startup")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._step("shutdown")
        assert self._task is not None
        await self._task

    async def _step(self, phase: str) -> None:
        assert self._task is not None
        await self._to_app.put({"type": f"lifespan.{phase}"})
        answer = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({answer, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            answer.cancel()
            self._task.result()  # the app's own exception, if it raised one
            raise RuntimeError(f"the app ended without answering lifespan.{phase}")
        message = answer.result()
        if message["type"] != f"lifespan.{phase}.complete":
            await self._task  # Starlette raises the app's exception after saying it failed
            raise RuntimeError(f"lifespan.{phase} failed: {message.get('message', '')}")
