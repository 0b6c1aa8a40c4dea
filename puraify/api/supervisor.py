"""``puraify serve --workers N``: N API processes, each with its own listening socket.

uvicorn's own multi-process mode binds one socket in the parent and shares it; each worker then
accepts whatever arrives while it happens to be awake, and a client that opens its connections
at once (a gateway, a load balancer, a benchmark) routinely lands all of them on one process
while the other idles (measured: 64 connections, 64 on one worker, 0 on the other, p99 over 1 s).
Here every worker binds its own socket with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers by a hash of their addresses.

The parent only supervises: it restarts a worker that dies, and on SIGTERM or SIGINT passes the
signal on (each worker shuts down gracefully, as a single ``puraify serve`` does) and waits.
Each worker tells the parent through a pipe when it serves; one that dies before that could not
start, and when workers keep failing to start the parent gives up (exit status 1), however long
each attempt took. Each worker also holds the read end of a lifeline the parent never writes to:
when the parent dies, however it dies (SIGKILL included), the lifeline ends and the worker
shuts down gracefully, so no worker serves unsupervised.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

__all__ = ["bind_reuseport", "serve_workers"]

_log = structlog.get_logger("puraify.supervisor")


def bind_reuseport(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may bind as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # accepted sockets inherit it: a response written in two parts must not wait for the
    # client's delayed ACK (Nagle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def _worker(
    host: str,
    port: int,
    options: dict[str, Any],
    ready: Connection,
    lifeline: Connection,
    services: str = "all",
) -> None:
    import functools

    import uvicorn

    from .app import create_app_from_environment

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and not self.should_exit:
                ready.send(True)  # the parent counts this worker as started
                ready.close()

    sock = bind_reuseport(host, port)
    factory = functools.partial(create_app_from_environment, host=host, services=services)
    config = uvicorn.Config(factory, factory=True, **options)
    server = Server(config)

    def watch_parent() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # the parent never writes: this returns when it is gone
        _log.warning("supervisor_gone", pid=os.getpid())
        server.should_exit = True  # the graceful shutdown SIGTERM starts

    threading.Thread(target=watch_parent, name="puraify-lifeline", daemon=True).start()
    server.run(sockets=[sock])


@dataclass
class _Worker:
    """One API process and what the parent knows of it."""

    process: BaseProcess
    ready: Connection | None  # the readiness pipe, until the worker reports or dies
    started: bool = False  # it reported that it serves


def serve_workers(
    host: str,
    port: int,
    workers: int,
    options: dict[str, Any],
    *,
    start_failures: int = 5,
    services: str = "all",
) -> int:
    """Run ``workers`` API processes on ``host:port`` until SIGTERM or SIGINT.

    A worker that dies after it served is replaced. One that dies before it ever served (its
    settings or its store are unusable) is a start failure; after ``start_failures`` of those
    in a row, with no worker starting in between, the server stops with status 1 instead of
    restarting forever.
    """
    if port == 0:
        raise ValueError("several workers need a fixed port (each binds it)")
    bind_reuseport(host, port).close()  # fail here, once, if the address is taken
    ctx = multiprocessing.get_context("spawn")
    stopping = False
    failures = 0  # start failures in a row
    # held open here, never written: the workers read EOF from it when this process is gone
    lifeline, lifeline_end = ctx.Pipe(duplex=False)

    def start() -> _Worker:
        reader, writer = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_worker,
            args=(host, port, options, writer, lifeline, services),
            name="puraify-api",
        )
        process.start()
        writer.close()  # the child holds the only writer: its death reads as EOF here
        return _Worker(process, reader)

    def stop(signum: int, _frame: object | None) -> None:
        nonlocal stopping
        stopping = True
        for worker in procs:
            process = worker.process
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: graceful shutdown in the worker

    def heard(worker: _Worker) -> None:
        """Read the worker's readiness report, or the end of its pipe."""
        nonlocal failures
        assert worker.ready is not None
        with contextlib.suppress(EOFError):  # EOF: it died first; its exit is handled below
            worker.started = bool(worker.ready.recv())
        worker.ready.close()
        worker.ready = None
        if worker.started:
            failures = 0

    procs = [start() for _ in range(workers)]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while not stopping:
            waiting: list[Connection | int] = [w.process.sentinel for w in procs]
            waiting += [w.ready for w in procs if w.ready is not None]
            wait(waiting, timeout=1.0)
            for worker in procs:
                if worker.ready is not None and worker.ready.poll():
                    heard(worker)
            for i, worker in enumerate(procs):
                if worker.process.is_alive() or stopping:
                    continue
                if worker.ready is not None:
                    heard(worker)
                process = worker.process
                _log.warning(
                    "worker_died", pid=process.pid, exitcode=process.exitcode, served=worker.started
                )
                failures = 0 if worker.started else failures + 1
                if failures >= start_failures:  # it cannot start (settings, database)
                    _log.error("workers_cannot_start", exitcode=process.exitcode, tries=failures)
                    stop(signal.SIGTERM, None)
                    code = 1
                    break
                time.sleep(0.5)  # no tight restart loop
                procs[i] = start()
        deadline = time.monotonic() + 30
        for worker in procs:
            process = worker.process
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
            if worker.ready is not None:
                worker.ready.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lifeline.close()
        lifeline_end.close()
    return code
