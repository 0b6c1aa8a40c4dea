"""``command``: run a program with an argv list. Never a shell (SEC-03).

The process gets its own process group; on timeout or cancellation the whole group is killed
with SIGKILL, so a ``sleep`` started by a script dies with it (REL-04). stdout and stderr are
read concurrently and capped; what is past the cap is drained and counted, never stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from typing import Any, ClassVar

from pydantic import AliasChoices, Field, field_validator

from ..errors import ActionError
from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel

__all__ = ["Command"]


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, int]:
    if stream is None:
        return b"", 0
    kept = bytearray()
    total = 0
    while chunk := await stream.read(65536):
        total += len(chunk)
        room = cap - len(kept)
        if room > 0:
            kept += chunk[:room]
    return bytes(kept), total


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


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
    description = "Run a program (argv only, never a shell) in the workspace."
    example: ClassVar = {"command": "git", "args": ["status", "--short"], "timeout": 30}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        argv = [params.command, *params.args]
        ctx.commands.check(argv, params.env)
        env = ctx.commands.environment(params.env)
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
        proc = await asyncio.create_subprocess_exec(
            program,
            *params.args,
            stdin=asyncio.subprocess.PIPE
            if params.stdin is not None
            else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(params.timeout):
                if params.stdin is not None and proc.stdin is not None:
                    proc.stdin.write(params.stdin.encode())
                    await proc.stdin.drain()
                    proc.stdin.close()
                (out, out_total), (err, err_total) = await asyncio.gather(
                    _read_capped(proc.stdout, cap), _read_capped(proc.stderr, cap)
                )
                code = await proc.wait()
        except TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            raise ActionError(
                f"command ran past its {params.timeout}s timeout and was killed",
                code="timeout",
                retryable=True,
            ) from None
        except BaseException:
            _kill_group(proc.pid)
            await asyncio.shield(proc.wait())
            raise
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        result = {
            "argv": argv,
            "exit_code": code,
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": out_total > len(out),
            "stderr_truncated": err_total > len(err),
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
