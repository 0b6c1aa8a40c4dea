"""The service as a real process (uvicorn on 127.0.0.1): SSE, graceful shutdown and resume."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from puraify.testing import LocalServer, RecordingSink, Reply
from tests.helpers import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``puraify serve`` as a real process. ``clean``: an environment with nothing of the
    operator's in it (no ``PURAIFY_*``, no config file): ``HOME`` only, so that the engine's
    home is ``<home>`` = ``$HOME/.puraify``; ``env`` adds to it."""

    def __init__(self, home: Path, env: dict[str, str], *, clean: bool = False) -> None:
        self.home = home
        if clean:
            assert home.name == ".puraify"
            self.env = {"HOME": str(home.parent), **env}
        else:
            self.env = {**os.environ, "PURAIFY_HOME": str(home), "PURAIFY_MODE": "server", **env}
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def token(
        self, project: str = "p", scopes: tuple[str, ...] = ("execute", "runs:read", "runs:write")
    ) -> str:
        args = [arg for scope in scopes for arg in ("--scope", scope)]
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "puraify",
                "tokens",
                "create",
                "--project",
                project,
                *args,
                "--json",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        return str(json.loads(out)["token"])

    def start(self, workers: int = 1, host: str | None = None) -> Server:
        # the log goes to a file: an unread pipe would fill up and stall the server
        self.log = open(self.home.parent / f"server-{self.port}.log", "a")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "puraify", "serve", "--port", str(self.port)),
                *("--workers", str(workers)),
                *(("--host", host) if host else ()),
            ],
            cwd=self.home.parent,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # start-up compiles every module from source on these machines: wait for readiness
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self, sig: int = signal.SIGTERM) -> str:
        if self.proc is None:
            return ""
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.log.close()
        return (self.home.parent / f"server-{self.port}.log").read_text()


@pytest.fixture
def receiver() -> Iterator[tuple[RecordingSink, str]]:
    sink = RecordingSink()
    with LocalServer(sink) as server:
        yield sink, server.url


@pytest.mark.slow
def test_sse_streams_live_transitions(tmp_path: Path, receiver: tuple[RecordingSink, str]) -> None:
    sink, url = receiver
    sink.script("/slow", Reply(200, {"ok": True}, delay=0.5))
    server = Server(tmp_path / "home", {"PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]'})
    token = server.token()
    server.start()
    try:
        headers = {"Authorization": f"Bearer {token}"}
        mission = {
            "steps": [
                {"id": "first", "step_type": "http", "parameters": {"url": f"{url}/slow"}},
                {"id": "second", "step_type": "noop", "depends_on": ["first"]},
            ]
        }
        run_id = httpx.post(f"{server.url}/missions/execute", json=mission, headers=headers).json()[
            "run_id"
        ]
        events = []
        with httpx.stream(
            "GET", f"{server.url}/runs/{run_id}/events", headers=headers, timeout=20
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        kinds = [(e["event"], e.get("step_id")) for e in events]
        assert kinds[-1] == ("run_finished", None)
        assert ("step_finished", "second") in kinds
        assert events[-1]["status"] == "completed"
    finally:
        server.stop()


@pytest.mark.slow
def test_sigterm_leaves_long_runs_resumable(
    tmp_path: Path, receiver: tuple[RecordingSink, str]
) -> None:
    """REL-05: short in-flight work finishes, a long run stays resumable and completes after a
    restart; nothing acknowledged is lost."""
    sink, url = receiver
    sink.script("/long", Reply(200, {"ok": True}, delay=8))
    server = Server(tmp_path / "home", {"PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]'})
    token = server.token()
    headers = {"Authorization": f"Bearer {token}"}
    server.start()
    mission = {
        "steps": [
            {"id": "long", "step_type": "http", "parameters": {"url": f"{url}/long"}},
            {"id": "after", "step_type": "noop", "depends_on": ["long"]},
        ]
    }
    run_id = httpx.post(f"{server.url}/missions/execute", json=mission, headers=headers).json()[
        "run_id"
    ]
    wait_for(lambda: sink.count("/long") == 1, what="the long step in flight")
    server.stop(signal.SIGTERM)
    server.start()  # resumes orphaned runs at start
    try:
        deadline = time.monotonic() + 30
        status = "running"
        while status == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = httpx.get(f"{server.url}/runs/{run_id}", headers=headers).json()["status"]
        assert status == "completed"
        keys = {r.headers["idempotency-key"] for r in sink.requests}
        assert keys == {f"{run_id}:long"}  # the re-dispatch reused the step's key
    finally:
        server.stop()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_rel08_sustained_load_steady_memory(
    tmp_path: Path, receiver: tuple[RecordingSink, str]
) -> None:
    """REL-08 (CI variant): a bounded number of single actions sent at a steady pace, a few in
    flight at a time: 0 errors, every acknowledged run stored and completed, RSS growth under
    10% after warm-up. How many a second the server takes is bench/api_load.py's measure."""
    import asyncio

    _sink, url = receiver
    requests = int(os.environ.get("PURAIFY_REL08_REQUESTS", "500"))
    pace = 50.0  # requests started per second at most; a slower server slows the pace
    in_flight = 8
    server = Server(tmp_path / "home", {"PURAIFY_SSRF_ALLOW_HOSTS": '["127.0.0.1"]'})
    token = server.token()
    server.start()
    assert server.proc is not None
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "action": "http_request",
        "platform": "webhook",
        "parameters": {"url": f"{url}/load", "method": "POST", "body": {"n": 1}},
    }

    async def drive(count: int) -> tuple[list[str], list[str]]:
        run_ids: list[str] = []
        errors: list[str] = []
        gate = asyncio.Semaphore(in_flight)
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:

            async def one() -> None:
                try:
                    response = await client.post("/execute", json=body)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    return
                finally:
                    gate.release()
                if response.status_code == 200:
                    run_ids.append(response.json()["run_id"])
                else:
                    errors.append(f"{response.status_code} {response.text[:300]}")

            tasks = []
            start = time.monotonic()
            for n in range(count):
                await gate.acquire()
                tasks.append(asyncio.create_task(one()))
                await asyncio.sleep(max(0.0, start + (n + 1) / pace - time.monotonic()))
            await asyncio.gather(*tasks)
        return run_ids, errors

    def stored() -> dict[str, str]:
        found: dict[str, str] = {}
        offset = 0
        while True:
            page = httpx.get(
                f"{server.url}/runs?limit=200&offset={offset}", headers=headers, timeout=60
            ).json()["runs"]
            found.update((r["run_id"], r["status"]) for r in page)
            offset += 200
            if len(page) < 200:
                return found

    try:
        warm_ids, warm_errors = asyncio.run(drive(max(20, requests // 5)))
        assert warm_errors == [], warm_errors[:3]
        before = _rss_kb(server.proc.pid)
        run_ids, errors = asyncio.run(drive(requests))
        after = _rss_kb(server.proc.pid)
        assert errors == [], (len(errors), errors[:3])
        assert len(run_ids) == requests
        runs = stored()
        lost = [run_id for run_id in warm_ids + run_ids if run_id not in runs]
        assert lost == [], lost[:5]  # every acknowledged run is in the store ...
        assert {runs[run_id] for run_id in run_ids} == {"completed"}  # ... and finished
        assert after < before * 1.10, (before, after)
    finally:
        server.stop()
