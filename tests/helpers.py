"""Helpers shared by tests (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["Completed", "Lifespan", "ManualClock", "cli", "poll", "wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], object], seconds: float = 60.0, what: str = "condition"
) -> None:
    """Poll ``predicate`` until it is true: a readiness signal, never a guess at how long
    something takes (the deadline only bounds a test that would otherwise hang)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {seconds} s")
        time.sleep(0.05)


async def poll(
    fetch: Callable[[], Awaitable[T]],
    done: Callable[[T], object],
    seconds: float = 60.0,
    what: str = "condition",
) -> T:
    """Await ``fetch()`` until ``done`` holds for its value, and return that value; the async
    ``wait_for`` (the deadline only bounds a test that would otherwise hang)."""
    deadline = time.monotonic() + seconds
    while True:
        value = await fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {seconds} s (last: {value!r})")
        await asyncio.sleep(0.02)


class ManualClock:
    """Time that passes only when a test says so: ``monotonic`` for timers and caches, ``now``
    for timestamps, both moved together by ``advance``."""

    def __init__(self, start: datetime | None = None) -> None:
        self.seconds = 1000.0
        self._start = start or datetime.now(UTC)

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.seconds - 1000.0)

    def advance(self, seconds: float) -> None:
        self.seconds += seconds


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
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
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


@dataclass(frozen=True)
class Completed:
    """What a command left: its exit code and what it wrote (``subprocess.CompletedProcess``'s
    names, so a test reads the same whether the command ran in-process or as a process)."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> Completed:
    """Run ``puraify ARGS`` in this process, as the console script runs it (the same entry and
    last-resort boundary), in ``cwd`` with ``env`` added to the environment, capturing stdout
    and stderr apart. For everything but what needs a real process: signals, kills, `serve`."""
    from click.testing import CliRunner

    from puraify.cli.app import run_app

    code = 0
    with CliRunner().isolation(env=dict(env or {})) as streams, contextlib.chdir(cwd):
        try:
            run_app(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()  # as a process does when it exits
        sys.stderr.flush()
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Completed(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


def process_running(token: str) -> bool:
    """Whether a process whose command line holds ``token`` runs on this machine."""
    for entry in Path("/proc").iterdir():
        try:
            if token.encode() in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False
