"""Where CPU-bound actions run: worker processes that a timeout or a cancel really stops.

Code on the engine's event loop cannot be interrupted: a parser, a schema check or a
transformation that runs for a minute holds up every other run and request of the process for
that minute, and a step's timeout only fires once it returns. Actions that declare
``sandboxed = True`` (parsers, ``validate_schema``, ``csv_process``, ``edit_file``,
``file_search``) run instead in a small pool of worker processes (pebble's, which terminates the
worker of a task that is cancelled): the engine awaits the result; a step's timeout or a cancel
ends the worker at once and a new one takes its place. Each worker has a memory cap
(``RLIMIT_AS``), its own copy of the workspace jail and no network.

Workers start on first use, forked from a preloaded server process (``forkserver``), so a
mission without such steps never starts one. One workspace (a project, in the server profile)
holds at most ``per_workspace`` workers at a time, so the steps of one project cannot take
every worker from the others.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import importlib
import multiprocessing
import os
import pickle
import resource
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from cachetools import LRUCache

from ..actions.base import Action, ActionContext
from ..errors import ActionError, GuardError
from .guards.commands import CommandPolicy
from .guards.jail import Jail

__all__ = ["MAX_RESULT_BYTES", "ActionPool", "Job"]

#: The largest result a sandboxed action may hand back (serialized).
MAX_RESULT_BYTES = 16 * 1024 * 1024

_log = structlog.get_logger("puraify.sandbox")


@dataclass(frozen=True)
class Job:
    """One attempt of a sandboxed action, as a worker needs it (everything picklable)."""

    action: str  # "module:QualifiedName" of the action's class
    params: Any
    run_id: str
    step_id: str
    attempt: int
    workspace: str
    protected: tuple[str, ...] = ()
    refuse_hard_links: bool = False
    limits: Mapping[str, int] = field(default_factory=dict)
    max_result_bytes: int = MAX_RESULT_BYTES


class ActionPool:
    """Worker processes for sandboxed actions; one per engine process, started on first use."""

    def __init__(
        self,
        workers: int,
        *,
        max_memory_bytes: int | None = None,
        max_result_bytes: int = MAX_RESULT_BYTES,
        per_workspace: int | None = None,
    ) -> None:
        self.workers = workers
        self.max_memory_bytes = max_memory_bytes
        self.max_result_bytes = max_result_bytes
        self.per_workspace = max(1, min(per_workspace or workers, workers))
        # per event loop and workspace: how many of its steps may hold a worker
        self._slots: LRUCache[tuple[int, str], asyncio.Semaphore] = LRUCache(maxsize=4096)
        self._pool: Any = None  # pebble.ProcessPool, imported on first use (~80 ms)
        self._starting = threading.Lock()

    def _started(self) -> Any:
        with self._starting:
            return self._start()

    def _start(self) -> Any:
        """The pool, started: its server process and workers run before it is handed out (the
        pool would start them on its first task, on the caller's thread: the event loop's)."""
        if self._pool is None:
            import pebble

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            pool = pebble.ProcessPool(
                max_workers=self.workers,
                initializer=_worker_started,
                initargs=(self.max_memory_bytes, os.getpid()),
                context=context,
            )
            pool.schedule(_ready).result()
            self._pool = pool
        return self._pool

    async def run(self, job: Job) -> dict[str, Any]:
        """The action's output, computed in a worker. Cancelling the caller (a step's timeout,
        a run's cancel) terminates the worker."""
        job = dataclasses.replace(job, max_result_bytes=self.max_result_bytes)
        key = (id(asyncio.get_running_loop()), job.workspace)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(self.per_workspace)
        async with slots:
            return await self._run(job)

    async def _run(self, job: Job) -> dict[str, Any]:
        from pebble import ProcessExpired

        # starting the pool starts its server process: off the event loop (~0.3 s)
        pool = self._pool if self._pool is not None else await asyncio.to_thread(self._started)
        future = pool.schedule(_run, args=(job,))
        try:
            return await asyncio.wrap_future(future)
        except ProcessExpired as exc:  # killed: memory cap, or a crash in C code
            raise ActionError(
                f"the action's worker process ended (exit status {exc.exitcode}); it may have "
                "passed its memory limit",
                code="resource_limit",
            ) from None
        except concurrent.futures.CancelledError:
            raise asyncio.CancelledError from None

    def close(self) -> None:
        """Stop the workers (any task still running is ended)."""
        pool: Any = self._pool  # pebble's stop() and join() are untyped
        if pool is not None:
            pool.stop()
            pool.join(timeout=10)
            self._pool = None


def action_ref(action: Action) -> str:
    cls = type(action)
    return f"{cls.__module__}:{cls.__qualname__}"


# -- in the worker ------------------------------------------------------------------------------

_actions: dict[str, Action] = {}


def _ready() -> None:
    """A first task: the pool has started once it is done."""


def _worker_started(max_memory_bytes: int | None, engine: int) -> None:
    if max_memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (max_memory_bytes, max_memory_bytes))
    threading.Thread(target=_watch_engine, args=(engine,), daemon=True).start()


def _watch_engine(engine: int) -> None:
    """End this worker once the engine that started the pool is gone, even if it was killed
    and could not stop its pool (the worker may be busy with a task that never ends)."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(engine, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid went to another user's process: the engine is gone
            os._exit(1)


class _NoNetwork(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise GuardError("sandboxed actions have no network", code="ssrf_blocked", field="url")


def _run(job: Job) -> dict[str, Any]:
    action = _actions.get(job.action)
    if action is None:
        module, _, name = job.action.partition(":")
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
        action = _actions[job.action] = target()
    ctx = ActionContext(
        run_id=job.run_id,
        step_id=job.step_id,
        attempt=job.attempt,
        http=httpx.AsyncClient(transport=_NoNetwork()),
        workspace=Jail(
            Path(job.workspace),
            protected=[Path(p) for p in job.protected],
            refuse_hard_links=job.refuse_hard_links,
        ),
        commands=CommandPolicy(enabled=False),
        limits=job.limits,
    )
    try:
        out: dict[str, Any] = asyncio.run(action.run(job.params, ctx))
        # the engine reads the result on its event loop: a huge one would hold it there
        if len(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)) > job.max_result_bytes:
            raise ActionError(
                f"the action's result is larger than {job.max_result_bytes} bytes; ask for "
                "less (a smaller file, a filter, fewer rows)",
                code="resource_limit",
            )
        return out
    except MemoryError:
        raise ActionError(
            "the action passed the memory its sandbox allows (action_max_memory_bytes)",
            code="resource_limit",
        ) from None
