"""The engine's side of the command launcher (``launcher.py``, which says what it builds).

One launcher serves every engine of a process; it is started on the first contained command
and again if it ever ends. ``probe`` says once per process whether this system supports the
launcher's sandbox, and if not, why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ActionError
from . import launcher as _protocol

__all__ = ["MAX_REQUEST_BYTES", "ConfinedProcess", "Launcher", "Request", "launcher", "probe"]

_SCRIPT = str(Path(_protocol.__file__).resolve())
#: The most a command's arguments and environment may take, as sent to the launcher (Linux
#: refuses an argv and environment past about 2 MiB; each string past 128 KiB).
MAX_REQUEST_BYTES = 2 * 1024 * 1024
_START_SECONDS = 30.0  # a launcher that is not ready by then is not coming (a stalled machine)


def _command() -> list[str]:
    # -I -S: no user site, no environment, no site-packages; the launcher needs only stdlib
    return [sys.executable, "-I", "-S", _SCRIPT]


def _identity() -> list[str]:
    """The launcher's arguments after its first: the engine's uid and gid, and where the
    libseccomp binding is."""
    import pyseccomp

    return [str(os.getuid()), str(os.getgid()), str(Path(pyseccomp.__file__).resolve())]


@functools.cache
def probe() -> tuple[bool, str]:
    """Whether contained commands can run here in the launcher's sandbox; if not, why."""
    if sys.platform != "linux":
        return False, "the command sandbox needs Linux namespaces"
    # outside /tmp, which the sandbox replaces: what it hides there must really be hidden
    parent = Path.home() / ".cache"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        place = tempfile.TemporaryDirectory(prefix="puraify-probe-", dir=parent)
    except OSError:
        place = tempfile.TemporaryDirectory(prefix="puraify-probe-")
    with place as directory:
        try:
            done = subprocess.run(
                [*_command(), "--probe", directory, *_identity()],
                capture_output=True,
                timeout=_START_SECONDS,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return False, f"the command launcher could not start: {exc}"
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return False, reason[-1] if reason else f"the probe exited with {done.returncode}"
    return True, "user, mount, PID, network and IPC namespaces, a seccomp filter"


@dataclass(frozen=True)
class Request:
    """One command to run in the sandbox (see ``launcher.py``)."""

    program: str
    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    workspace: Path
    network: bool
    #: what to hide: where it is, and what it is (device, inode), when known
    hide: Sequence[tuple[Path, tuple[int, int] | None]] = ()
    writable: Sequence[Path] = ()
    tmp_bytes: int = 64 * 1024 * 1024
    limits: Mapping[str, int] = field(default_factory=dict)

    def message(self, ident: str) -> dict[str, Any]:
        return {
            "id": ident,
            "program": self.program,
            "argv": list(self.argv),
            "env": dict(self.env),
            "cwd": str(self.cwd),
            "workspace": str(self.workspace),
            "network": self.network,
            "hide": [
                {"path": str(path), "id": list(identity) if identity else None}
                for path, identity in self.hide
            ],
            "writable": [str(p) for p in self.writable],
            "tmp_bytes": self.tmp_bytes,
            "limits": dict(self.limits),
            "uid": os.getuid(),
            "gid": os.getgid(),
        }


class ConfinedProcess:
    """A command the launcher started: ``wait`` for its exit code, ``kill`` it (and with it,
    every process it started)."""

    def __init__(self, owner: Launcher, ident: str, started: asyncio.Future[dict[str, Any]]):
        self._owner = owner
        self._ident = ident
        self._started = started
        self._exited: asyncio.Future[dict[str, Any]] = started.get_loop().create_future()
        self.pid = 0

    async def wait(self) -> int:
        """The program's exit code (negative: the signal that ended it)."""
        if not self.pid:
            self.pid = int((await asyncio.shield(self._started))["pid"])
        reply = await asyncio.shield(self._exited)
        if "error" in reply:
            raise ActionError(
                f"the command could not run in its sandbox: {reply['error']}",
                code="command_failed",
            )
        return int(reply["exit"])

    async def kill(self) -> None:
        if not self._exited.done():
            with contextlib.suppress(ActionError):  # no launcher: nothing of it runs anymore
                await asyncio.to_thread(self._owner.send, {"kill": self._ident})


class Launcher:
    """The engine's connection to its launcher process (thread-safe; see the module)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._ids = itertools.count()
        self._waiting: dict[str, tuple[ConfinedProcess, asyncio.Future[dict[str, Any]]]] = {}

    async def start(self, request: Request, fds: Sequence[int]) -> ConfinedProcess:
        """Run ``request`` with ``fds`` as its stdin, stdout and stderr (the launcher gets
        copies; the caller keeps its own)."""
        loop = asyncio.get_running_loop()
        ident = f"{os.getpid()}-{next(self._ids)}"
        started: asyncio.Future[dict[str, Any]] = loop.create_future()
        process = ConfinedProcess(self, ident, started)
        self._waiting[ident] = (process, started)
        message = request.message(ident)
        size = len(json.dumps(message))
        if size > MAX_REQUEST_BYTES:  # exec would refuse it (E2BIG) anyway
            self._waiting.pop(ident, None)
            raise ActionError(
                f"the command's arguments and environment take {size} bytes; at most "
                f"{MAX_REQUEST_BYTES} are accepted",
                code="invalid_parameters",
                field="args",
            )
        sending = asyncio.ensure_future(asyncio.to_thread(self._send_request, message, fds))
        try:
            await asyncio.shield(sending)
            process.pid = int((await asyncio.shield(started))["pid"])
        except asyncio.CancelledError:
            # the descriptors are the caller's again only once the send is over; a command
            # that started meanwhile is killed, not left without a step
            with contextlib.suppress(Exception):
                await sending
                await process.kill()
            self._waiting.pop(ident, None)
            raise
        except BaseException:
            self._waiting.pop(ident, None)
            raise
        return process

    def _send_request(self, message: dict[str, Any], fds: Sequence[int]) -> None:
        with self._lock:
            if self._sock is None:
                self._connect()
        self.send(message, fds)

    def send(self, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
        sock = self._sock
        if sock is None:
            return
        with self._send_lock:
            try:
                _protocol.send(sock, message, fds)
            except OSError as exc:
                raise ActionError(
                    f"the command launcher is gone: {exc}", code="command_failed"
                ) from None

    def _connect(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen(
                [*_command(), str(theirs.fileno()), *_identity()],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C at a terminal is the engine's to handle
            )
        finally:
            theirs.close()
        ours.settimeout(_START_SECONDS)
        ready = None
        with contextlib.suppress(OSError, ValueError):
            ready = _protocol.receive(ours)
        if ready is None or not ready[0].get("ready"):
            ours.close()
            process.kill()
            process.wait()
            why = ready[0].get("error", "no answer") if ready else "it did not start"
            raise ActionError(f"the command launcher could not start: {why}", code="command_failed")
        ours.settimeout(None)
        self._sock, self._process = ours, process
        threading.Thread(
            target=self._read, args=(ours,), name="puraify-launcher", daemon=True
        ).start()

    def _read(self, sock: socket.socket) -> None:
        """Hand each reply to the command it is for; when the launcher ends, fail them all."""
        while True:
            try:
                frame = _protocol.receive(sock)
            except (OSError, ValueError):
                frame = None
            if frame is None:
                break
            message, _ = frame
            entry = self._waiting.get(str(message.get("id")))
            if entry is None:
                continue
            process, started = entry
            if "pid" in message:
                _settle(started, message)
            else:
                self._waiting.pop(process._ident, None)
                _settle(started, {"pid": 0, **message})
                _settle(process._exited, message)
        with self._lock:
            if self._sock is sock:
                self._sock = None
                if self._process is not None:
                    self._process.wait()
                    self._process = None
            sock.close()
        gone = {"exit": -9, "error": "the command launcher ended"}
        for ident, (process, started) in list(self._waiting.items()):
            self._waiting.pop(ident, None)
            _settle(started, {"pid": 0, **gone})
            _settle(process._exited, gone)


def _settle(future: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    def settle() -> None:
        if not future.done():
            future.set_result(value)

    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody is waiting
        future.get_loop().call_soon_threadsafe(settle)


@functools.cache
def launcher() -> Launcher:
    """This process's launcher."""
    return Launcher()
