"""``command``: run a program with an argv list. Never a shell (SEC-03).

The command guard starts it contained (``CommandGuard.start``); on timeout or cancellation it
is killed with SIGKILL, and with it what it started, so a ``sleep`` started by a script dies
with it (REL-04). stdout and stderr are read concurrently and capped; what is past the cap is
drained and counted, never stored.

A process the command leaves behind does not outlive the step: once the program has ended, its
output is read for at most ``DRAIN_SECONDS`` more (a detached child holding the pipes open
cannot keep the step running). In the guard's sandbox (a PID namespace of its own) every
process it started ends with it; elsewhere its process group is killed, and every process of
the engine's user that carries the step's mark in its environment, whether it stayed in the
group or left it with ``setsid()`` (one that also clears its environment is not found that
way).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, field_validator

from ..errors import ActionError
from .base import Action, ActionContext, StartedCommand
from .base import Output as OutputModel
from .base import Params as ParamsModel

__all__ = ["Command"]


DRAIN_SECONDS = 1.0
_MARK = "PURAIFY_STEP_MARK"


class _Capture:
    """What a stream gave, up to ``cap`` bytes kept; readable even if reading was stopped."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.total = 0

    async def read(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.total += len(chunk)
            room = self.cap - len(self.kept)
            if room > 0:
                self.kept += chunk[:room]


def _kill_marked(mark: str, *, passes: int = 10) -> int:
    """Kill every process of this user whose environment carries ``mark``, again until a pass
    finds none (a process may start another between two looks; at most ``passes``)."""
    total = 0
    for _ in range(passes):
        killed = _kill_marked_once(mark)
        total += killed
        if not killed:
            break
    return total


def _kill_marked_once(mark: str) -> int:
    needle = f"{_MARK}={mark}".encode()
    uid = os.getuid()
    killed = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid:
                continue
            with open(f"/proc/{name}/environ", "rb") as fh:
                marked = needle in fh.read().split(b"\0")
            if marked:
                os.kill(int(name), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return killed


class _Feed:
    """The program's stdin: the step's ``stdin`` text through a pipe written without blocking
    as the program reads it, or ``/dev/null``. A program that exits or closes its stdin
    without reading all of it is its own business, not a failure of the step."""

    def __init__(self, text: str | None) -> None:
        self._data = None if text is None else text.encode()
        if self._data is None:
            self.read_fd, self._write_fd = os.open(os.devnull, os.O_RDONLY), -1
        else:
            self.read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._write_fd, False)
        self._writer: asyncio.Task[None] | None = None

    def started(self) -> None:
        """The program holds its own copy of the read end: write to it."""
        os.close(self.read_fd)
        self.read_fd = -1
        if self._data is not None:
            self._writer = asyncio.get_running_loop().create_task(self._write(self._data))

    async def _write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[os.write(self._write_fd, view) :]
                except BlockingIOError:
                    ready = loop.create_future()
                    loop.add_writer(self._write_fd, ready.set_result, None)
                    try:
                        await ready
                    finally:
                        loop.remove_writer(self._write_fd)
        except OSError:
            pass  # the program is gone, or closed its stdin
        finally:
            self.close()

    async def finish(self) -> None:
        """Stop writing (the program has ended) and close the pipe."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self.close()

    def close(self) -> None:
        for fd in (self.read_fd, self._write_fd):
            if fd >= 0:
                os.close(fd)
        self.read_fd = self._write_fd = -1


class _Pipe:
    """A pipe the engine owns (not the subprocess transport): the program's exit is seen when
    it happens, even while a process it left behind holds the write end open (asyncio on
    Python 3.11 reports a program's exit only once its own pipes have closed). Each end is
    closed exactly once, whenever the step ends."""

    def __init__(self) -> None:
        read_fd, self.write_fd = os.pipe()
        self.file = os.fdopen(read_fd, "rb", buffering=0)  # owns the read end from here
        self.stream = asyncio.StreamReader()
        self.transport: asyncio.BaseTransport | None = None

    def _release_write_end(self) -> None:
        if self.write_fd >= 0:
            fd, self.write_fd = self.write_fd, -1
            os.close(fd)

    async def open(self) -> None:
        """Start reading; the program holds its own copy of the write end by now."""
        self._release_write_end()
        loop = asyncio.get_running_loop()
        connecting = asyncio.ensure_future(
            loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self.stream), self.file)
        )
        try:
            self.transport, _ = await asyncio.shield(connecting)
        except asyncio.CancelledError:  # the transport exists now: keep it, to close it
            self.transport, _ = await connecting
            raise

    def close(self) -> None:
        self._release_write_end()
        if self.transport is not None:
            self.transport.close()
        else:
            self.file.close()


async def _ended(
    proc: StartedCommand,
    readers: asyncio.Future[Any] | None,
    pipes: list[_Pipe],
    feed: _Feed,
    mark: str | None,
) -> None:
    """Leave nothing of the step behind: the program and what it started killed and reaped,
    every process that carries its mark killed, the pipes closed."""
    await proc.kill()
    with contextlib.suppress(ActionError):
        await proc.wait()
    await feed.finish()
    if mark is not None:
        await asyncio.to_thread(_kill_marked, mark)
    if readers is not None:
        readers.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await readers
    for pipe in pipes:
        pipe.close()
    await asyncio.sleep(0)  # a pipe transport releases its descriptor on the next loop turn


class Command(Action):
    """Run ``command`` with ``args`` in the workspace (or ``working_dir`` inside it)."""

    class Params(ParamsModel):
        command: str = Field(validation_alias=AliasChoices("command", "program", "cmd"))
        args: list[str] = Field(
            default_factory=list, validation_alias=AliasChoices("args", "arguments")
        )
        working_dir: str | None = Field(
            default=None, validation_alias=AliasChoices("working_dir", "working_directory", "cwd")
        )
        env: dict[str, str] = Field(default_factory=dict)
        stdin: str | None = None
        timeout: float | None = Field(
            default=None, gt=0, validation_alias=AliasChoices("timeout", "timeout_seconds")
        )
        success_codes: list[int] = Field(default_factory=lambda: [0])
        #: whether the program may reach the network (default: what the operator lets command
        #: steps do; asking for it where they may not is refused)
        network: bool | None = None

        @field_validator("args", mode="before")
        @classmethod
        def _stringify(cls, value: Any) -> Any:
            if isinstance(value, list):
                return [v if isinstance(v, str) else str(v) for v in value]
            return value

    class Output(OutputModel):
        argv: list[str]
        exit_code: int
        stdout: str
        stderr: str
        stdout_truncated: bool
        stderr_truncated: bool

    name = "command"
    aliases = ("run_command", "shell_command")
    delivery: ClassVar = "unsafe"
    dangerous: ClassVar = True
    description = "Run a program (argv only, never a shell) in the workspace."
    example: ClassVar = {"command": "git", "args": ["status", "--short"], "timeout": 30}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        argv = [params.command, *params.args]
        ctx.commands.check(argv, params.env)
        env = ctx.commands.environment(params.env)
        # without a PID namespace to end them, leftovers are found by a mark in their environment
        mark = None if ctx.commands.isolates_processes else secrets.token_hex(16)
        if mark is not None:
            env[_MARK] = mark
        cwd = ctx.workspace.root
        if params.working_dir:
            if not ctx.workspace.is_dir(params.working_dir):
                raise ActionError(
                    f"working_dir {params.working_dir!r} is not a directory in the workspace",
                    code="invalid_parameters",
                    field="working_dir",
                )
            cwd = cwd / ctx.workspace.display(params.working_dir)
        program = shutil.which(params.command, path=env.get("PATH"))
        if program is None:
            raise ActionError(
                f"program {params.command!r} was not found on PATH",
                code="command_not_found",
                field="command",
            )
        cap = ctx.commands.max_output_bytes
        network = ctx.commands.network if params.network is None else params.network
        pipes = [_Pipe(), _Pipe()]
        feed = _Feed(params.stdin)
        try:
            proc = await ctx.commands.start(
                program,
                argv,
                cwd=cwd,
                env=env,
                network=network,
                stdin=feed.read_fd,
                stdout=pipes[0].write_fd,
                stderr=pipes[1].write_fd,
            )
        except BaseException:
            feed.close()
            for pipe in pipes:
                pipe.close()
            raise
        feed.started()
        out, err = _Capture(cap), _Capture(cap)
        readers: asyncio.Future[Any] | None = None
        try:
            for pipe in pipes:
                await pipe.open()
            readers = asyncio.gather(out.read(pipes[0].stream), err.read(pipes[1].stream))
            async with asyncio.timeout(params.timeout):
                code = await proc.wait()
            # the program ended; what it wrote is read to the end, unless something it left
            # behind holds the pipes open
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    await asyncio.shield(readers)
        except TimeoutError:
            raise ActionError(
                f"command ran past its {params.timeout}s timeout and was killed",
                code="timeout",
                retryable=True,
            ) from None
        finally:
            await asyncio.shield(_ended(proc, readers, pipes, feed, mark))
        stdout = out.kept.decode("utf-8", "replace")
        stderr = err.kept.decode("utf-8", "replace")
        result = {
            "argv": argv,
            "exit_code": code,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": out.total > len(out.kept),
            "stderr_truncated": err.total > len(err.kept),
        }
        if code not in params.success_codes:
            raise ActionError(
                f"{params.command} exited with code {code}"
                + (f": {stderr.strip()[-300:]}" if stderr.strip() else ""),
                code="command_failed",
                details={"exit_code": code, "stdout": stdout[-1024:], "stderr": stderr[-1024:]},
                output=result,
            )
        return result
