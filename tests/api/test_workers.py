"""``puraify serve --workers N``: every worker takes connections, a dead one is replaced, and
SIGTERM stops them all."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from puraify.testing import LocalServer, RecordingSink
from tests.api.test_server import Server


def _workers(pid: int) -> list[int]:
    """The API worker processes of the server ``pid`` (not multiprocessing's helpers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(int(child))
    return found


def _connections(pid: int) -> list[tuple[int, int]]:
    """The established TCP connections the process ``pid`` holds: (local port, remote port)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "01" and int(fields[9]) in inodes:
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                found.append((local, remote))
    return found


def _clients(port: int) -> set[int]:
    """The local ports of this process's connections to ``port``."""
    return {local for local, remote in _connections(os.getpid()) if remote == port}


def _established(pid: int, port: int, clients: set[int]) -> int:
    """How many of the connections from ``clients`` to ``port`` the process ``pid`` holds (a
    probe abandoned while a worker started is not one of them)."""
    return sum(1 for local, remote in _connections(pid) if local == port and remote in clients)


def _wait_for(predicate, seconds: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_workers_share_connections_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    server = Server(tmp_path / "home", {})
    token = server.token()
    server.start(workers=2)
    assert server.proc is not None
    parent = server.proc.pid
    clients: list[httpx.Client] = []
    try:
        _wait_for(lambda: len(_workers(parent)) == 2)
        workers = _workers(parent)
        # both listen before the connections open: one answering /readyz is not both ready
        _wait_for(lambda: _listening(server.port) == 2, seconds=90)
        # 32 connections opened at once: with one shared socket they could all land on one
        # worker; with a socket each, the kernel spreads them (all on one: probability 2^-31)
        clients = [httpx.Client(base_url=server.url, timeout=10) for _ in range(32)]
        for client in clients:
            assert client.get("/healthz").status_code == 200
        ports = _clients(server.port)
        assert len(ports) == 32
        held = {pid: _established(pid, server.port, ports) for pid in workers}
        assert sum(held.values()) == 32 and all(n > 0 for n in held.values()), held
        r = clients[0].post(
            "/execute",
            headers={"Authorization": f"Bearer {token}"},
            json={"action": "log_message", "parameters": {"message": "hi"}},
        )
        assert r.status_code == 200 and r.json()["status"] == "success"

        os.kill(workers[0], signal.SIGKILL)
        _wait_for(lambda: len(_workers(parent)) == 2 and workers[0] not in _workers(parent))
        for client in clients:
            client.close()
        clients = []
        with httpx.Client(base_url=server.url, timeout=10) as fresh:
            _wait_for(lambda: fresh.get("/readyz").status_code == 200)
    finally:
        for client in clients:
            client.close()
        server.stop(signal.SIGTERM)
    assert server.proc is None
    for pid in workers[1:]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def _serve(tmp_path: Path, port: int, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "puraify", "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, "PURAIFY_HOME": str(tmp_path / "home"), **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proc = _serve(tmp_path, taken.getsockname()[1], {})
    assert proc.returncode == 2
    assert "cannot serve on 127.0.0.1" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_workers_that_cannot_start_end_the_server(tmp_path: Path) -> None:
    """No endless restart loop: a store that cannot be opened stops the server with exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    missing = tmp_path / "not-a-dir" / "file"
    missing.parent.write_text("a file where the database's folder should be")
    proc = _serve(tmp_path, port, {"PURAIFY_DATABASE_URL": f"sqlite+aiosqlite:///{missing}/x.db"})
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "workers_cannot_start" in proc.stderr


def _listening(port: int) -> int:
    """How many sockets listen on ``port`` (one per ready worker)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sse_subscribers_on_every_worker_see_the_run_finish(tmp_path: Path) -> None:
    """With two workers, 20 subscribers to one run (spread over both by the kernel) all see
    every transition and ``run_finished``, whichever worker executes the run."""
    sink = RecordingSink()
    sink.hold("/slow")
    with LocalServer(sink, host="127.0.0.2") as upstream:
        server = Server(tmp_path / "home", {"PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.2"]'})
        token = server.token()
        headers = {"Authorization": f"Bearer {token}"}
        server.start(workers=2)
        assert server.proc is not None
        parent = server.proc.pid
        try:
            _wait_for(lambda: _listening(server.port) == 2, seconds=90)
            mission = {
                "steps": [
                    {
                        "id": "slow",
                        "step_type": "http",
                        "parameters": {"url": f"{upstream.url}/slow"},
                    },
                    {"id": "after", "step_type": "noop", "depends_on": ["slow"]},
                ]
            }
            created = httpx.post(
                f"{server.url}/missions/execute", json=mission, headers=headers, timeout=30
            )
            run_id = created.json()["run_id"]
            _wait_for(lambda: sink.count("/slow") == 1, seconds=60)

            subscribed = threading.Semaphore(0)
            received: list[list[dict[str, Any]]] = [[] for _ in range(20)]

            def subscribe(events: list[dict[str, Any]]) -> None:
                with httpx.stream(
                    "GET", f"{server.url}/runs/{run_id}/events", headers=headers, timeout=90
                ) as response:
                    subscribed.release()
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            events.append(json.loads(line[6:]))

            threads = [threading.Thread(target=subscribe, args=(r,)) for r in received]
            for thread in threads:
                thread.start()
            for _ in threads:
                assert subscribed.acquire(timeout=60), "a subscriber got no answer"
            ports = _clients(server.port)
            held = [_established(pid, server.port, ports) for pid in _workers(parent)]
            assert sum(held) == 20 and all(n > 0 for n in held), held  # both workers serve some
            sink.release()
            for thread in threads:
                thread.join(timeout=90)
        finally:
            sink.release()
            server.stop(signal.SIGTERM)
    for events in received:
        assert events, "a subscriber received nothing"
        assert (events[-1]["event"], events[-1]["status"]) == ("run_finished", "completed"), events
        assert ("after", "success") in {(e.get("step_id"), e.get("status")) for e in events}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_workers_stop_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """F: after SIGKILL of the supervisor, its workers do not go on serving unsupervised: they
    see their lifeline end and shut down gracefully."""
    server = Server(tmp_path / "home", {})
    server.start(workers=2)
    assert server.proc is not None
    parent = server.proc.pid
    workers: list[int] = []
    try:
        _wait_for(lambda: len(_workers(parent)) == 2, seconds=90)
        workers = _workers(parent)
        _wait_for(lambda: _listening(server.port) == 2, seconds=90)
        server.proc.kill()  # SIGKILL: the supervisor has no chance to stop anything
        server.proc.wait(timeout=30)

        def gone(pid: int) -> bool:
            try:
                return "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
            except OSError:
                return True

        _wait_for(lambda: all(gone(pid) for pid in workers), seconds=60)
        assert _listening(server.port) == 0
    finally:
        for pid in workers:  # a failed check must not leave them serving
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        server.proc = None
        server.log.close()
