"""Helpers shared by tests (fixtures stay in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from puraify.testing import Lifespan

__all__ = [
    "Completed",
    "Flaky",
    "Lifespan",
    "ManualClock",
    "cli",
    "listening",
    "poll",
    "service_or_skip",
    "silent_server",
    "wait_for",
]


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


@dataclass(frozen=True)
class Completed:
    """What a command left: its exit code and what it wrote (``subprocess.CompletedProcess``'s
    names, so a test reads the same whether the command ran in-process or as a process)."""

    returncode: int
    stdout: str
    stderr: str


def cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, input: str | None = None
) -> Completed:
    """Run ``puraify ARGS`` in this process, as the console script runs it (the same entry and
    last-resort boundary), in ``cwd`` with ``env`` added to the environment and ``input`` on
    standard input, capturing stdout and stderr apart. For everything but what needs a real process: signals, kills, `serve`."""
    from click.testing import CliRunner

    from puraify.cli.app import run_app

    code = 0
    with CliRunner().isolation(input=input, env=dict(env or {})) as streams, contextlib.chdir(cwd):
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


class Flaky:
    """A TCP proxy in front of a server (a database, Redis) that drops its first ``drop``
    connections and relays the others; with ``cut_on``, it cuts the first relayed connection
    as soon as the server's answer holds those bytes (the answer never arrives)."""

    def __init__(
        self, upstream: tuple[str, int], drop: int = 0, *, cut_on: bytes | None = None
    ) -> None:
        self.upstream, self.drop, self.cut_on, self.accepted = upstream, drop, cut_on, 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.accepted <= self.drop:
            writer.transport.abort()
            return
        cut_on = self.cut_on if self.accepted == self.drop + 1 else None
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, cut: bytes | None
        ) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if cut is not None and cut in data:
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, None), pipe(up_reader, writer, cut_on))


@contextlib.asynccontextmanager
async def listening(handler: Callable[..., Awaitable[None]]) -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 with ``handler`` for each connection; its port."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never answers; its port. The
    connections are cut when it closes."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    try:
        async with listening(accept) as port:
            yield port
    finally:
        for writer in held:
            writer.transport.abort()


def service_or_skip(name: str, address: tuple[str, int]) -> None:
    """Skip with the reason when a local service does not answer, except under CI=true,
    where it fails."""
    import socket

    import pytest

    try:
        socket.create_connection(address, timeout=2).close()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required under CI=true and is not reachable: {exc}")
        pytest.skip(f"{name} not reachable at {address}: {exc}")
