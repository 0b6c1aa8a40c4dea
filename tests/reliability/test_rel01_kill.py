"""REL-01: kill -9 the engine at random moments while runs are in flight; restart; I1-I6 hold.

Each run is `puraify run mission.yaml --idempotency-key K` as a whole process on the embedded
SQLite store; restarting the same command continues the run. Receivers dedupe on
`Idempotency-Key`, like a careful platform.

A kill is aimed by the store, not by the clock: the engine is killed once the run's row is
`running` with an attempt in flight (read from the SQLite file, read-only), so every counted
kill interrupts a live run, however long the process took to start.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from puraify.testing import LocalServer, RecordingSink, Reply
from tests.helpers import process_running, wait_for

RUNS = int(os.environ.get("PURAIFY_REL01_RUNS", "20"))
KILLS = int(os.environ.get("PURAIFY_REL01_KILLS", "5"))
STEPS = 6
MAX_CONCURRENT = 3


def mission(url: str) -> str:
    lines = ["name: rel01", f"config: {{max_concurrent_steps: {MAX_CONCURRENT}}}", "steps:"]
    for i in range(STEPS):
        deps = [f"s{i - 2}"] if i >= 2 else []
        lines.append(
            f"  - {{id: s{i}, step_type: http, depends_on: {deps}, "
            f"parameters: {{url: '{url}/effect', method: POST, body: {{step: {i}}}}}}}"
        )
    return "\n".join(lines) + "\n"


def in_flight(db: Path, key: str) -> tuple[str | None, int, int]:
    """The run ``key``'s status, its attempts so far and those running, read-only."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:  # the engine has not created the database yet
        return None, 0, 0
    try:
        row = conn.execute(
            "select r.status, count(a.id), coalesce(sum(a.status = 'running'), 0) from runs r "
            "left join step_attempts a on a.run_id = r.id where r.idempotency_key = ? "
            "group by r.id",
            (key,),
        ).fetchone()
    except sqlite3.OperationalError:  # no tables yet (the schema is being created)
        return None, 0, 0
    finally:
        conn.close()
    return (row[0], row[1], row[2]) if row else (None, 0, 0)


def cli(args: list[str], home: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "puraify", *args],
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PURAIFY_HOME": str(home)},
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rel01_kill9_cli_engine_then_restart(tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("PURAIFY_REL01_SEED", "1")))
    sink = RecordingSink()
    for _ in range(RUNS * STEPS * 2):
        sink.script("/effect", Reply(200, {"ok": True}, delay=rng.uniform(0.05, 0.15)))
    home = tmp_path / "home"
    db = home / "puraify.db"
    with LocalServer(sink) as server:
        path = tmp_path / "m.yaml"
        path.write_text(mission(server.url))
        kills = 0
        for i in range(RUNS):
            key = f"rel01-{i}"
            args = ["run", str(path), "--json", "--idempotency-key", key]
            # spread the kills over the runs; a run that ends before its kill passes it on
            if kills < KILLS and rng.random() < (KILLS - kills) / (RUNS - i):
                # kill after a random number of attempts, with one of them still in flight
                after = rng.randint(1, STEPS - 1)
                proc = cli(args, home, tmp_path)
                while proc.poll() is None:
                    status, started, running = in_flight(db, key)
                    if status == "running" and running and started >= after:
                        proc.send_signal(signal.SIGKILL)
                        break
                    time.sleep(0.005)
                proc.communicate(timeout=60)
                # counted only if the run was really cut short: the store still says running
                if proc.returncode == -signal.SIGKILL and in_flight(db, key)[0] == "running":
                    kills += 1
            for _attempt in range(5):  # restart until the run reports its end
                proc = cli(args, home, tmp_path)
                out, err = proc.communicate(timeout=120)
                if proc.returncode != 2:
                    break
                assert "run_busy" in err, err
                time.sleep(0.2)
            assert proc.returncode == 0, err
            assert json.loads(out)["status"] == "completed"
    keys = {r.headers["idempotency-key"] for r in sink.requests}
    deliveries = len(sink.requests)
    store = sqlite3.connect(db)
    try:
        # I1/I2: every run is stored and completed
        statuses = dict(store.execute("select idempotency_key, status from runs").fetchall())
        assert statuses == {f"rel01-{i}": "completed" for i in range(RUNS)}
        # I3: each keyed step took effect once; a delivery beyond that is the re-dispatch of an
        # attempt a kill interrupted (at most max_concurrent_steps of them per kill)
        assert len(keys) == RUNS * STEPS == sink.effects
        attempts = store.execute("select count(*) from step_attempts").fetchone()[0]
        redispatched = attempts - RUNS * STEPS
        assert deliveries <= RUNS * STEPS + redispatched, (deliveries, redispatched)
        assert redispatched <= kills * MAX_CONCURRENT, (redispatched, kills)
        # I5: each step's stored fence is its latest attempt
        stale = store.execute(
            "select count(*) from run_steps s where s.fence != "
            "(select max(a.fence) from step_attempts a where a.run_id = s.run_id and a.step_id = s.step_id)"
        ).fetchone()[0]
        assert stale == 0
        # an attempt a kill cut short ends with the resume, none is left shown running
        running = store.execute(
            "select count(*) from step_attempts where status = 'running'"
        ).fetchone()[0]
        assert running == 0
        cut = store.execute(
            "select count(*) from step_attempts where error_code = 'interrupted'"
        ).fetchone()[0]
        assert cut == redispatched
        # I6
        assert store.execute("pragma integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()
    assert kills == KILLS


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_rel01_unsafe_step_interrupted_ends_unknown_outcome(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ws = tmp_path / "ws"
    ws.mkdir()
    marker = ws / "effects.txt"
    # the step writes its effect, stays in flight for the kill, then says it ended
    token = secrets.token_hex(8)  # how the host finds the orphaned attempt
    script = (
        "import time; open('effects.txt', 'a').write('done;'); time.sleep(3); "
        f"open('ended', 'w').close()  # {token}"
    )
    path = tmp_path / "unsafe.yaml"
    path.write_text(
        "steps:\n  - id: side_effect\n    step_type: command\n"
        f"    parameters: {{command: {sys.executable}, args: ['-c', \"{script}\"]}}\n"
        "  - {id: after, step_type: noop, depends_on: [side_effect]}\n"
    )
    args = ["run", str(path), "--json", "--workspace", str(ws), "--idempotency-key", "unsafe-1"]
    proc = cli(args, home, tmp_path)
    wait_for(lambda: marker.exists() or proc.poll() is not None, what="the command started")
    assert marker.exists(), "the command never started"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    proc = cli(args, home, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    result = json.loads(out)
    step = result["steps"][0]
    assert step["status"] == "failed" and step["error"]["code"] == "unknown_outcome"
    assert result["steps"][1]["status"] in ("skipped", "cancelled")
    # the orphaned first attempt ends (in the command sandbox it died with its engine; else it
    # runs to its end): it must be the only one that took effect
    wait_for(lambda: not process_running(token), what="the orphaned attempt ended")
    assert marker.read_text() == "done;"
