"""The command policy (SEC-03): argv only, no shells, no privilege, no system wreckers.

Which programs, arguments and environment variables are refused is decided by
``mission.programs``, the table the safety analysis reads too; this module enforces it. An
operator's allow list (``command_allow``) comes first: when set, only the programs it names
run, and so must every program a wrapper would run (``env``, ``timeout``, ``xargs`` ...); the
deny list stays as the safety net under it.

Containment (``start``): where the system allows unprivileged user namespaces, a command runs in
the launcher's sandbox (``launcher.py``): its own PID namespace, so every process it started
ends with it, ``setsid()`` or not; a network namespace without interfaces unless the step may
reach the network; a read-only view of the filesystem where the workspace (and the operator's
``command_writable`` directories) are the only writable places, ``/tmp`` is fresh and capped,
and the engine's home, its config and the other projects' workspaces are hidden. Its memory
(data segment), CPU time and open files are capped. Where namespaces are refused, the limits
still apply (``prlimit``) and the step's process group and mark are what ends its processes;
``containment()`` says which, with the reason, and ``puraify doctor`` and the server's start-up
log show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal, Protocol

from ...errors import GuardError
from ...mission.programs import env_refusal, program_name, programs_run, refusal
from .confinement import Request, launcher, probe

__all__ = [
    "CONTAINMENT_MEANING",
    "CommandPolicy",
    "Containment",
    "Started",
    "containment",
    "containment_reason",
]

Containment = Literal["sandbox", "limits", "process-group"]
CONTAINMENT_MEANING: dict[Containment, str] = {
    "sandbox": "each command runs in its own PID, network and mount namespaces, with limits; "
    "it writes only in its workspace",
    "limits": "no sandbox here: commands run with limits, in a process group, and can write "
    "wherever the engine's user can",
    "process-group": "no sandbox or prlimit here: commands run in a process group, without "
    "limits, and can write wherever the engine's user can",
}


class Started(Protocol):
    """A command that runs: its exit code (negative: the signal that ended it), and a kill
    that ends it and every process it started that containment can reach."""

    pid: int

    async def wait(self) -> int: ...
    async def kill(self) -> None: ...


@functools.cache
def _probe() -> tuple[Containment, str]:
    sandbox, why = probe()
    if sandbox:
        return "sandbox", why
    if shutil.which("prlimit") is None:
        return "process-group", f"{why}; no prlimit either"
    return "limits", why


def containment() -> Containment:
    """What this system lets the engine contain a command with (probed once per process)."""
    return _probe()[0]


def containment_reason() -> str:
    """Why ``containment()`` is what it is (what the sandbox uses, or what refused it)."""
    return _probe()[1]


class _Group:
    """A command started directly, in a process group of its own (no sandbox)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self.pid = proc.pid

    async def wait(self) -> int:
        return await self._proc.wait()

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


class CommandPolicy:
    """Argv-only command execution rules: no shells, no privilege, no system wreckers,
    no loader-hijacking environment, output capped."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        allow_shell: bool = False,
        env_allow: Iterable[str] = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"),
        max_output_bytes: int = 1024 * 1024,
        base_env: Mapping[str, str] | None = None,
        allow: Iterable[str] | None = None,
        network: bool = True,
        max_memory_bytes: int | None = None,
        max_cpu_seconds: int | None = None,
        max_open_files: int | None = None,
        max_processes: int | None = None,
        contain: bool = True,
        workspace: Path | None = None,
        hide: Iterable[Path] = (),
        writable: Iterable[Path] = (),
        tmp_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.enabled = enabled
        # names (`git`) match the program's name; paths (`/usr/bin/git`) its path exactly
        self.allow = None if allow is None else frozenset(allow)
        self.network = network  # whether command steps may reach the network at all
        self.contained = contain
        self.limits = {
            name: value
            for name, value in (
                ("data", max_memory_bytes),
                ("cpu", max_cpu_seconds),
                ("nofile", max_open_files),
                ("nproc", max_processes),
            )
            if value is not None
        }
        # the sandbox's view: where the command may write, and what it may not even read
        self.workspace = workspace
        self.writable = tuple(writable)
        # held open, so that a hidden directory is found where it is now, also after a command
        # renamed a directory above it
        self._hidden = [_Held(p) for p in hide]
        self.tmp_bytes = tmp_bytes
        self.allow_shell = allow_shell
        self.env_allow = tuple(env_allow)
        self.max_output_bytes = max_output_bytes
        self._base = {k: v for k, v in (base_env or {}).items() if k in self.env_allow}
        self._base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        """The environment a command gets: the allowed part of the engine's, plus ``extra``."""
        return {**self._base, **extra}

    def check(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Raise ``GuardError`` unless ``argv`` may run with the extra environment ``env``."""
        if not self.enabled:
            raise GuardError(
                "command steps are disabled here; an operator turns them on with the `command` "
                "feature flag",
                code="command_disabled",
                field="command",
            )
        if not argv or not argv[0]:
            raise GuardError("no program given", code="command_refused", field="command")
        if self.allow is not None:
            if not self.allow:
                raise GuardError(
                    "this engine runs command steps only from the operator's command_allow "
                    "list, and it lists no program",
                    code="command_refused",
                    field="command",
                )
            for inner in programs_run(list(argv)):
                program = inner[0]
                # a name matches a program found on PATH; a path must be listed as that path
                listed = (
                    program in self.allow if "/" in program else program_name(program) in self.allow
                )
                if not listed:
                    raise GuardError(
                        f"{program_name(program)} is not among the programs this engine runs "
                        "(the operator's command_allow list)",
                        code="command_refused",
                        field="command",
                    )
        found = refusal(argv, allow_shell=self.allow_shell) or env_refusal(env)
        if found is not None:
            raise GuardError(found.message, code="command_refused", field=found.field)

    @property
    def mode(self) -> Containment:
        """How this policy's commands are contained here."""
        return containment() if self.contained else "process-group"

    @property
    def isolates_processes(self) -> bool:
        """Whether a contained command's processes all end with it (a PID namespace)."""
        return self.mode == "sandbox"

    async def start(
        self,
        program: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        network: bool,
        stdin: int,
        stdout: int,
        stderr: int,
    ) -> Started:
        """Start ``argv`` (``program`` is its resolved path) contained as the module says;
        ``network``: whether this step may reach the network (``GuardError`` if the operator
        does not let command steps do so). The three streams are descriptors the caller
        keeps."""
        if network and not self.network:
            raise GuardError(
                "command steps have no network here (the operator's command_network setting)",
                code="command_refused",
                field="network",
            )
        mode = self.mode
        if mode == "sandbox":
            workspace = self.workspace or cwd
            writable = (workspace, *self.writable)
            environment = dict(env)
            if not any(_within(environment.get("TMPDIR", ""), w) for w in writable):
                environment["TMPDIR"] = "/tmp"
            request = Request(
                program=program,
                argv=argv,
                env=environment,
                cwd=cwd,
                workspace=workspace,
                network=network,
                hide=tuple(held.where() for held in self._hidden),
                writable=self.writable,
                tmp_bytes=self.tmp_bytes,
                limits=self.limits,
            )
            return await launcher().start(request, (stdin, stdout, stderr))
        line = [program, *argv[1:]]
        if mode == "limits":
            prlimit = shutil.which("prlimit") or "prlimit"
            # no process limit here: outside a user namespace it would count all of the user's
            limits = [f"--{k}={v}" for k, v in self.limits.items() if k != "nproc"]
            line = [prlimit, *limits, "--", *line]
        proc = await asyncio.create_subprocess_exec(
            *line,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
        return _Group(proc)


class _Held:
    """A path, and a descriptor of what it named (``path()``: where that is now)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None
        with contextlib.suppress(OSError):
            self._fd = os.open(path, os.O_PATH | os.O_NOFOLLOW)

    def where(self) -> tuple[Path, tuple[int, int] | None]:
        """Where it is now, and its (device, inode): the launcher hides what is there only if
        it is still this (a rename meanwhile fails the command, never exposes the file)."""
        if self._fd is None:
            return self._path, None
        try:
            now = os.readlink(f"/proc/self/fd/{self._fd}")
            st = os.fstat(self._fd)
        except OSError:
            return self._path, None
        if now.endswith(" (deleted)"):
            return self._path, None
        return Path(now), (st.st_dev, st.st_ino)

    def __del__(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _within(path: str, parent: Path) -> bool:
    return bool(path) and (path == str(parent) or path.startswith(str(parent).rstrip("/") + "/"))
