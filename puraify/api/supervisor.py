"""``puraify serve --workers N``: N API processes, each with its own listening socket.

uvicorn's own multi-process mode binds one socket in the parent and shares it; each worker then
accepts whatever arrives while it happens to be awake, and a client that opens its connections
at once (a gateway, a load balancer, a benchmark) routinely lands all of them on one process
while the other idles (measured: 64 connections, 64 on one worker, 0 on the other, p99 over 1 s).
Here every worker binds its own socket with ``SO_REUSEPORT``, so the kernel spreads new
connections over the workers by a hash of their addresses.

The parent only supervises: it restarts a worker that dies, and on SIGTERM or SIGINT passes the
signal on (each worker shuts down gracefully, as a single ``puraify serve`` does) and waits.
"""

from __future__ import annotations

import multiprocessing
import signal
import socket
import time
from multiprocessing.connection import wait
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


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    import functools

    import uvicorn

    from .app import create_app_from_environment

    sock = bind_reuseport(host, port)
    factory = functools.partial(create_app_from_environment, host=host)
    config = uvicorn.Config(factory, factory=True, **options)
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int, options: dict[str, Any]) -> int:
    """Run ``workers`` API processes on ``host:port`` until SIGTERM or SIGINT."""
    if port == 0:
        raise ValueError("several workers need a fixed port (each binds it)")
    bind_reuseport(host, port).close()  # fail here, once, if the address is taken
    ctx = multiprocessing.get_context("spawn")
    stopping = False

    quick_failures = 0

    def start() -> BaseProcess:
        process = ctx.Process(target=_worker, args=(host, port, options), name="puraify-api")
        process.start()
        return process

    def stop(signum: int, _frame: object | None) -> None:
        nonlocal stopping
        stopping = True
        for process in procs:
            if process.pid is not None and process.is_alive():
                process.terminate()  # SIGTERM: graceful shutdown in the worker

    procs = [start() for _ in range(workers)]
    born = [time.monotonic()] * workers  # when procs[i] was started
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while not stopping:
            wait([p.sentinel for p in procs], timeout=1.0)
            for i, process in enumerate(procs):
                if process.is_alive() or stopping:
                    continue
                _log.warning("worker_died", pid=process.pid, exitcode=process.exitcode)
                quick_failures = quick_failures + 1 if time.monotonic() - born[i] < 5 else 0
                if quick_failures >= 5:  # it cannot start (settings, database): stop trying
                    _log.error("workers_cannot_start", exitcode=process.exitcode)
                    stop(signal.SIGTERM, None)
                    code = 1
                    break
                time.sleep(0.5)  # no tight restart loop
                procs[i], born[i] = start(), time.monotonic()
        deadline = time.monotonic() + 30
        for process in procs:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
