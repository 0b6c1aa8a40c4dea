"""`puraify runs ...` and `puraify db upgrade` as a user runs them (in-process, through the
console script's entry; a run that must live in another process, or die there, is one)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from puraify.store.database import HEAD_REVISION
from puraify.testing import LocalServer, RecordingSink, Reply
from tests.helpers import Completed, cli, wait_for


def puraify(*args: str, home: Path, cwd: Path) -> Completed:
    return cli(*args, cwd=cwd, env={"PURAIFY_HOME": str(home), "COLUMNS": "200"})


def test_history_retry_export_prune(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sink = RecordingSink()
    sink.script("/flaky", Reply(400, {"error": "bad input"}))
    with LocalServer(sink) as server:
        path = tmp_path / "m.yaml"
        path.write_text(
            "name: nightly\nconfig: {fail_fast: false}\nsteps:\n"
            f"  - {{id: fetch, step_type: http, parameters: {{url: '{server.url}/fetch'}}}}\n"
            f"  - {{id: push, step_type: http, depends_on: [fetch], parameters: {{url: '{server.url}/flaky', method: POST}}}}\n"
            "  - {id: report, step_type: create_file, depends_on: [push], parameters: {path: r.txt, content: done}}\n"
        )
        first = puraify("run", str(path), "--json", home=home, cwd=tmp_path)
        assert first.returncode == 1
        run_id = json.loads(first.stdout)["run_id"]

        listing = json.loads(
            puraify("runs", "list", "--json", "--status", "failed", home=home, cwd=tmp_path).stdout
        )
        assert [r["run_id"] for r in listing] == [run_id]
        shown = puraify("runs", "show", run_id, home=home, cwd=tmp_path)
        assert shown.returncode == 0
        assert "http_error" in shown.stdout and "█" in shown.stdout

        retried = puraify("runs", "retry", run_id, "--json", home=home, cwd=tmp_path)
        assert retried.returncode == 0, retried.stderr
        result = json.loads(retried.stdout)
        assert result["status"] == "completed"
        assert sink.count("/fetch") == 1 and sink.count("/flaky") == 2

        exported = json.loads(
            puraify("runs", "export", result["run_id"], home=home, cwd=tmp_path).stdout
        )
        assert exported["parent_run_id"] == run_id
        assert [a["step_id"] for a in exported["attempts"]] == ["push", "report"]
        assert exported["mission"]["name"] == "nightly"

        pruned = puraify("runs", "prune", "--older-than", "0s", home=home, cwd=tmp_path)
        assert "pruned 2 run(s)" in pruned.stdout
        assert json.loads(puraify("runs", "list", "--json", home=home, cwd=tmp_path).stdout) == []


def test_unknown_run_and_db_upgrade(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up = puraify("db", "upgrade", home=home, cwd=tmp_path)
    assert up.returncode == 0 and f"revision {HEAD_REVISION}" in up.stdout
    missing = puraify("runs", "show", "nope", home=home, cwd=tmp_path)
    assert missing.returncode == 2 and "run_not_found" in missing.stderr
    assert "Traceback" not in missing.stderr
    resume = puraify("run", "--resume", "nope", home=home, cwd=tmp_path)
    assert resume.returncode == 2 and "run_not_found" in resume.stderr


def test_idempotency_key_reuses_a_finished_run(tmp_path: Path) -> None:
    home = tmp_path / "home"
    path = tmp_path / "m.yaml"
    path.write_text(
        "steps:\n  - {id: a, step_type: create_file, parameters: {path: a.txt, content: x}}\n"
    )
    first = json.loads(
        puraify(
            "run", str(path), "--json", "--idempotency-key", "k", home=home, cwd=tmp_path
        ).stdout
    )
    again = json.loads(
        puraify(
            "run", str(path), "--json", "--idempotency-key", "k", home=home, cwd=tmp_path
        ).stdout
    )
    assert first["run_id"] == again["run_id"]
    assert len(json.loads(puraify("runs", "list", "--json", home=home, cwd=tmp_path).stdout)) == 1
    other = tmp_path / "other.yaml"
    other.write_text("steps:\n  - {id: b, step_type: noop}\n")
    clash = puraify("run", str(other), "--json", "--idempotency-key", "k", home=home, cwd=tmp_path)
    assert clash.returncode == 2
    assert json.loads(clash.stdout)["error"]["code"] == "idempotency_conflict"


def test_runs_cancel_stops_a_live_run(tmp_path: Path) -> None:

    home = tmp_path / "home"
    path = tmp_path / "slow.yaml"
    path.write_text(
        f"steps:\n  - {{id: wait, step_type: command, parameters: {{command: {sys.executable}, "
        "args: [-c, 'import time; time.sleep(120)']}}\n  - {id: after, step_type: noop, depends_on: [wait]}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "puraify", "run", str(path), "--json"],
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PURAIFY_HOME": str(home)},
    )
    try:

        def listed() -> list[dict[str, str]]:
            out = puraify("runs", "list", "--json", home=home, cwd=tmp_path).stdout
            return json.loads(out or "[]")  # type: ignore[no-any-return]

        wait_for(listed, seconds=90, what="the run in the store")
        run_id = listed()[0]["run_id"]
        asked = puraify("runs", "cancel", run_id, home=home, cwd=tmp_path)
        assert "cancellation requested" in asked.stdout
        out, err = proc.communicate(timeout=30)  # the owner sees the request at its next heartbeat
    finally:
        if proc.poll() is None:  # a failed check must not leave the run (and its pipes) behind
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert json.loads(out)["status"] == "cancelled"


def test_runs_show_after_a_resume_leaves_no_attempt_running(tmp_path: Path) -> None:
    """An unsafe step interrupted by a crash ends unknown_outcome on resume, and so does the
    attempt the dead engine had started: nothing is left shown as running."""

    home = tmp_path / "home"
    started = tmp_path / "started"
    code = f"import os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    path = tmp_path / "unsafe.yaml"
    path.write_text(
        f"steps:\n  - {{id: cmd, step_type: command, parameters: {{command: {sys.executable}, "
        f"args: [-c, {json.dumps(code)}]}}}}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "puraify", "run", str(path), "--json"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PURAIFY_HOME": str(home)},
        start_new_session=True,
    )
    try:
        wait_for(lambda: started.exists() and started.read_text(), what="the command running")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the engine dies with the step in flight
        proc.wait(timeout=30)
        if started.exists() and started.read_text():  # its command runs in its own session
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(started.read_text()), signal.SIGKILL)
    run_id = json.loads(puraify("runs", "list", "--json", home=home, cwd=tmp_path).stdout)[0][
        "run_id"
    ]
    resumed = puraify("runs", "resume", run_id, "--json", home=home, cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    assert json.loads(resumed.stdout)["steps"][0]["error"]["code"] == "unknown_outcome"
    shown = puraify("runs", "show", run_id, home=home, cwd=tmp_path)
    assert "cmd #1" in shown.stdout and "unknown_outcome" in shown.stdout, shown.stdout
    assert "running" not in shown.stdout.replace(run_id, ""), shown.stdout
