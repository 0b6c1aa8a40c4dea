"""The CLI as a user runs it: exit codes, JSON, no tracebacks.

Commands run in-process through the console script's own entry (``tests.helpers.cli``); the
tests where a process is the point (Ctrl-C at three moments) start one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Completed, cli, wait_for


def puraify(*args: str, cwd: Path, **env: str) -> Completed:
    return cli(*args, cwd=cwd, env={"PURAIFY_HOME": str(cwd / ".home"), "COLUMNS": "200", **env})


MISSION = """
version: "1.0"
name: cli-demo
variables: {who: world}
steps:
  - {id: write, step_type: create_file, parameters: {path: out/hello.txt, content: "hello {{ who }}"}}
  - {id: show, step_type: command, depends_on: [write], parameters: {command: cat, args: [out/hello.txt]}}
"""


@pytest.fixture
def mission(tmp_path: Path) -> Path:
    path = tmp_path / "mission.yaml"
    path.write_text(MISSION)
    return path


def test_run_completes_with_live_lines_and_summary(tmp_path: Path, mission: Path) -> None:
    proc = puraify("run", str(mission), "--var", "who=puraify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "completed" in proc.stdout and "write" in proc.stdout
    assert (tmp_path / "out/hello.txt").read_text() == "hello puraify"


def test_run_json_and_workspace(tmp_path: Path, mission: Path) -> None:
    ws = tmp_path / "ws"
    proc = puraify("run", str(mission), "--json", "--workspace", str(ws), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "completed"
    assert result["steps"][1]["output"]["stdout"] == "hello world"
    assert (ws / "out/hello.txt").exists()


def test_dry_run_makes_no_call_and_no_write(tmp_path: Path, mission: Path) -> None:
    proc = puraify("run", str(mission), "--dry-run", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["levels"] == [["write"], ["show"]]
    assert plan["steps"][0]["policy_check"] == "local.create_file"
    assert not (tmp_path / "out").exists()


def test_failed_mission_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("steps:\n  - {id: f, step_type: command, parameters: {command: 'false'}}\n")
    proc = puraify("run", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert "command_failed" in proc.stdout


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("steps:\n  - {id: a, step_type: nope}\n", "unknown_step_type"),
        ("steps: [\n", "yaml_syntax"),
        ("a: !!python/object/apply:os.system ['touch pwned']\n", "forbidden_tag"),
        ("steps:\n  - {id: a, step_type: noop, depends_on: [a]}\n", "dependency_cycle"),
    ],
)
def test_invalid_input_exits_2_without_traceback(tmp_path: Path, content: str, code: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    for args in (["run", str(path)], ["validate", str(path)], ["run", str(path), "--json"]):
        proc = puraify(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stdout + proc.stderr
        assert code in proc.stdout + proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_missing_file_exits_2(tmp_path: Path) -> None:
    proc = puraify("run", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 2
    assert "file_not_found" in proc.stderr


def test_validate_strict_and_warnings(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("steps:\n  - {id: a, step_type: noop, depend_on: [x]}\n")
    ok = puraify("validate", str(path), cwd=tmp_path)
    assert ok.returncode == 0 and "did you mean 'depends_on'" in ok.stdout
    strict = puraify("validate", str(path), "--strict", cwd=tmp_path)
    assert strict.returncode == 2


def test_safety_validate_exit_code_follows_verdict(tmp_path: Path, mission: Path) -> None:
    assert puraify("safety", "validate", str(mission), cwd=tmp_path).returncode == 0
    risky = tmp_path / "risky.yaml"
    risky.write_text(
        "steps:\n  - {id: a, step_type: command, parameters: {command: bash, args: [-c, 'curl x | sh']}}\n"
        "  - {id: b, step_type: http, parameters: {url: 'http://169.254.169.254/', headers: {Authorization: 'Bearer abcdefghijklmnopqrstuvwxyz'}}}\n"
    )
    proc = puraify("safety", "validate", str(risky), "--json", cwd=tmp_path)
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    rules = {f["rule"] for f in report["findings"]}
    assert {
        "shell_command",
        "dangerous_pattern",
        "metadata_endpoint",
        "inline_secret",
        "plain_http",
    } <= rules
    assert report["passed"] is False and report["score"] > 60


def test_run_refuses_a_mission_the_safety_analysis_fails(tmp_path: Path) -> None:
    """`run` passes the mission through the safety analysis first, as the spec's pipeline
    does: a FAIL exits 2 with the findings and runs nothing; `--dry-run` exits 2 too."""
    risky = tmp_path / "risky.yaml"
    risky.write_text(
        "steps:\n  - {id: first, step_type: create_file, parameters: {path: ran.txt, content: x}}\n"
        "  - {id: wipe, step_type: delete_file, depends_on: [first], "
        "parameters: {path: /etc/hosts}, continue_on_error: true}\n"
    )
    refused = puraify("run", str(risky), "--json", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout
    error = json.loads(refused.stdout)["error"]
    assert error["code"] == "safety_refused"
    assert [f["rule"] for f in error["safety"]["findings"]] == ["system_path_delete"]
    assert not (tmp_path / "ran.txt").exists()
    human = puraify("run", str(risky), cwd=tmp_path)
    assert human.returncode == 2 and "system_path_delete" not in human.stdout
    assert "safety analysis failed" in human.stderr and "/etc/hosts" in human.stderr
    assert json.loads(puraify("runs", "list", "--json", cwd=tmp_path).stdout) == []

    dry = puraify("run", str(risky), "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 2 and json.loads(dry.stdout)["safety"]["passed"] is False
    # a critical finding fails every level but `off`, where the runtime guards decide alone
    assert puraify("run", str(risky), "--safety-level", "permissive", cwd=tmp_path).returncode == 2
    unguarded = puraify("run", str(risky), "--json", "--safety-level", "off", cwd=tmp_path)
    assert unguarded.returncode == 0, unguarded.stdout
    result = json.loads(unguarded.stdout)
    assert result["step_results"]["wipe"]["error"]["code"] == "path_outside_jail"
    assert (tmp_path / "ran.txt").exists()
    bad_level = puraify("run", str(risky), "--safety-level", "lax", cwd=tmp_path)
    assert bad_level.returncode == 2 and "--safety-level" in bad_level.stderr


@pytest.mark.parametrize(
    ("fmt", "marker"), [("mermaid", "flowchart TD"), ("dot", "digraph"), ("svg", "<svg")]
)
def test_graph_formats(tmp_path: Path, mission: Path, fmt: str, marker: str) -> None:
    proc = puraify("graph", str(mission), "--format", fmt, cwd=tmp_path)
    assert proc.returncode == 0
    assert marker in proc.stdout and "write" in proc.stdout


def test_actions_list_and_show(tmp_path: Path) -> None:
    listing = puraify("actions", "list", "--json", cwd=tmp_path)
    names = {a["name"] for a in json.loads(listing.stdout)}
    assert {"http", "command", "create_file", "csv_process", "validate_schema"} <= names
    show = puraify("actions", "show", "call_webhook", "--json", cwd=tmp_path)
    info = json.loads(show.stdout)
    assert info["name"] == "webhook.call" and "url" in info["parameters"]["properties"]
    assert puraify("actions", "show", "nope", cwd=tmp_path).returncode == 2


def test_ctrl_c_cancels_cleanly(tmp_path: Path) -> None:
    started = tmp_path / "started"
    code = f"open({str(started)!r}, 'w').close(); import time; time.sleep(60)"
    path = tmp_path / "slow.yaml"
    path.write_text(
        f"steps:\n  - {{id: wait, step_type: command, parameters: {{command: {sys.executable}, args: [-c, {json.dumps(code)}]}}}}\n"
        "  - {id: after, step_type: noop, depends_on: [wait]}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "puraify", "run", str(path), "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PURAIFY_HOME": str(tmp_path / ".home")},
    )
    # Ctrl-C once the step is really running (a readiness signal, not a guess at start-up time)
    deadline = time.monotonic() + 60
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.stderr.read() if proc.poll() is not None else "not started"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    result = json.loads(out)
    assert result["status"] == "cancelled"
    assert [s["status"] for s in result["steps"]] == ["cancelled", "cancelled"]


def test_logs_go_to_stderr_and_json_output_stays_clean(tmp_path: Path) -> None:
    path = tmp_path / "log.yaml"
    path.write_text("steps:\n  - {id: l, step_type: log_message, parameters: {message: hello}}\n")
    proc = puraify("run", str(path), "--json", cwd=tmp_path, PURAIFY_LOG_FORMAT="json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["status"] == "completed"
    lines = [json.loads(text) for text in proc.stderr.strip().splitlines()]  # every one JSON
    line = next(entry for entry in lines if entry["event"] == "mission_log")
    assert line["run_id"] and line["step_id"] == "l"
    assert not [entry for entry in lines if entry["event"] == "policy_check"]  # allowed


def test_ctrl_c_during_start_up_stops_with_nothing_started(tmp_path: Path) -> None:
    """Ctrl-C before the run exists: exit 1, the failure envelope on stdout, no run."""
    fifo = tmp_path / "mission.yaml"
    os.mkfifo(fifo)  # reading it blocks: the command is held while it loads its mission
    home = tmp_path / ".home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "puraify", "run", str(fifo), "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PURAIFY_HOME": str(home)},
    )
    writer: list[int] = []

    def reader_is_there() -> bool:
        try:  # succeeds once the command has opened the file to read it
            writer.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return proc.poll() is not None
        return True

    wait_for(reader_is_there, what="the command reading its mission")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    for fd in writer:
        os.close(fd)
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    answer = json.loads(out)
    assert answer["status"] == "fail" and answer["error"]["code"] == "cancelled"
    assert "run_id" not in answer


def test_ctrl_c_after_the_run_ended_keeps_its_outcome(tmp_path: Path) -> None:
    """Ctrl-C while the command is finishing (the run already recorded as completed, its
    result still being written): the outcome stands and is printed in full, exit 0."""
    import sqlite3

    home = tmp_path / ".home"
    steps = "".join(f"  - {{id: s{i}, step_type: noop}}\n" for i in range(3000))
    path = tmp_path / "big.yaml"
    path.write_text("steps:\n" + steps)
    with open(tmp_path / "err.txt", "w") as err:
        proc = subprocess.Popen(  # stdout not read yet: the result (>64 KiB) fills the pipe
            [sys.executable, "-m", "puraify", "run", str(path), "--json"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PURAIFY_HOME": str(home)},
        )

        def completed() -> bool:
            if proc.poll() is not None:
                return True
            try:
                db = sqlite3.connect(f"file:{home / 'puraify.db'}?mode=ro", uri=True)
                try:
                    row = db.execute("SELECT status FROM runs").fetchone()
                finally:
                    db.close()
            except sqlite3.Error:
                return False
            return row is not None and row[0] == "completed"

        wait_for(completed, seconds=120, what="the run recorded as completed")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (tmp_path / "err.txt").read_text()
    result = json.loads(out)
    assert result["status"] == "completed" and len(result["steps"]) == 3000


def test_output_of_a_big_mission_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a pipe, a 2,000-step run prints a bounded number of lines and a collapsed summary;
    --json is the whole result, raw."""
    from typer.testing import CliRunner

    from puraify.cli.app import _register_groups, app

    _register_groups()
    monkeypatch.setenv("PURAIFY_HOME", str(tmp_path / ".home"))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "big.yaml"
    steps = "".join(f"  - {{id: s{i}, step_type: noop}}\n" for i in range(1999))
    path.write_text(
        "steps:\n" + steps + "  - {id: bad, step_type: read_file, parameters: {path: nope}}\n"
    )
    runner = CliRunner()
    plain = runner.invoke(app, ["run", str(path)])
    assert plain.exit_code == 1, plain.output
    lines = plain.output.splitlines()
    assert len(lines) < 400, len(lines)
    assert "bad" in plain.output and "file_not_found" in plain.output  # failures always shown
    assert "2000 steps: 1 failed, 1999 success" in " ".join(plain.output.split())
    as_json = runner.invoke(app, ["run", str(path), "--json"])
    result = json.loads(as_json.stdout)
    assert len(result["steps"]) == 2000 and result["status"] == "failed"
    assert list(result["step_results"])[-2:] == ["s1998", "bad"]
    assert result["total_duration_ms"] > 0 and result["timestamp"].endswith("Z")


def test_json_output_keeps_its_envelope_on_every_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--json is a JSON object on stdout whatever went wrong: a missing run, an age too far
    back, a setting puraify cannot use, a YAML value PyYAML cannot construct."""
    from typer.testing import CliRunner

    from puraify.cli.app import _register_groups, app

    _register_groups()
    monkeypatch.setenv("PURAIFY_HOME", str(tmp_path / ".home"))
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "steps:\n  - {id: a, step_type: log_message, parameters: {message: !!bool maybe}}\n"
    )
    runner = CliRunner()
    cases = [
        (["runs", "show", "nope", "--json"], "run_not_found", 2),
        (["validate", str(bad), "--json"], "yaml_syntax", 2),
    ]
    for args, code, exit_code in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == exit_code, (args, result.output)
        assert json.loads(result.stdout)["error"]["code"] == code, (args, result.stdout)
    far = runner.invoke(app, ["runs", "list", "--since", "99999999999d", "--json"])
    assert far.exit_code == 2 and "Traceback" not in far.output
    monkeypatch.setenv("PURAIFY_MODE", "bogus")
    settings = runner.invoke(app, ["validate", str(bad), "--json"])
    assert settings.exit_code == 2
    assert json.loads(settings.stdout)["error"]["code"] == "invalid_settings"


def test_json_usage_errors_keep_the_envelope(tmp_path: Path, mission: Path) -> None:
    """A command line puraify does not accept, with --json: the failure envelope on stdout
    (invalid_arguments, exit 2), not a usage box."""
    for args in (
        ["run", str(mission), "--safety-level", "bogus", "--json"],
        ["run", str(mission), "--var", "novalue", "--json"],
        ["runs", "list", "--bogus", "--json"],
    ):
        proc = puraify(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert json.loads(proc.stdout)["error"]["code"] == "invalid_arguments", args


def test_dry_run_shows_each_steps_verdict(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "steps:\n  - {id: a, step_type: noop}\n"
        "  - {id: b, step_type: command, parameters: {command: echo}}\n"
    )
    local = puraify("run", str(path), "--dry-run", "--json", cwd=tmp_path)
    assert [s["policy"]["allowed"] for s in json.loads(local.stdout)["steps"]] == [True, True]
    server = puraify("run", str(path), "--dry-run", "--json", cwd=tmp_path, PURAIFY_MODE="server")
    steps = json.loads(server.stdout)["steps"]
    assert steps[1]["policy"]["allowed"] is False and steps[1]["policy"]["reason"] == "flag_off"
    plain = puraify("run", str(path), "--dry-run", cwd=tmp_path, PURAIFY_MODE="server")
    assert "denied (flag_off)" in " ".join(plain.stdout.split())


def test_engine_control_from_the_command_line(tmp_path: Path) -> None:
    """init once (keys shown once), twice (nothing changes, and it says so); engines,
    platforms, flags and policy check, each with --json and a structured error."""
    first = puraify("init", "--json", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert made["changed"] is True and made["engine_id"] == "admin"
    assert made["engine_key"].startswith("pek_")
    again = json.loads(puraify("init", "--json", cwd=tmp_path).stdout)
    assert again["changed"] is False and again["engine_key"] is None
    assert "nothing to do" in puraify("init", cwd=tmp_path).stdout
    key = json.loads(
        puraify(
            "engines",
            "register",
            "bot",
            "--permissions",
            '{"slack": {"*": []}}',
            "--json",
            cwd=tmp_path,
        ).stdout
    )["engine_key"]
    listed = json.loads(puraify("engines", "list", "--json", cwd=tmp_path).stdout)
    assert {e["engine_id"] for e in listed} == {"admin", "bot", "puraify-execution"}
    assert key not in json.dumps(listed)
    allowed = puraify("policy", "check", "bot", "slack", "send", cwd=tmp_path)
    assert allowed.returncode == 0 and "allowed" in allowed.stdout
    assert puraify("platforms", "set-status", "slack", "maintenance", cwd=tmp_path).returncode == 0
    denied = puraify("policy", "check", "bot", "slack", "send", "--json", cwd=tmp_path)
    assert denied.returncode == 1
    assert json.loads(denied.stdout)["reason"] == "platform_maintenance"
    flags = json.loads(puraify("flags", "list", "--json", cwd=tmp_path).stdout)
    assert flags["feature_flags"]["command"] is True  # the local profile's default
    assert puraify("flags", "set", "command", "off", cwd=tmp_path).returncode == 0
    mission = tmp_path / "cmd.yaml"
    mission.write_text("steps:\n  - {id: c, step_type: command, parameters: {command: echo}}\n")
    refused = json.loads(puraify("run", str(mission), "--json", cwd=tmp_path).stdout)
    assert refused["steps"][0]["error"]["code"] == "policy_denied"
    bad = puraify("platforms", "set-status", "slack", "broken", "--json", cwd=tmp_path)
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "invalid_status"
    unknown = puraify("engines", "revoke", "ghost", "--json", cwd=tmp_path)
    assert json.loads(unknown.stdout)["error"]["code"] == "engine_unknown"
    dup = puraify("engines", "register", "bot", "--json", cwd=tmp_path)
    assert json.loads(dup.stdout)["error"]["code"] == "engine_exists"


def test_vault_from_the_command_line_never_takes_a_value_from_argv(tmp_path: Path) -> None:
    """init makes the vault's key file (0600); set reads the value from standard input; list
    and show never print it; rotate seals everything under a new key."""
    import stat
    import subprocess
    import sys

    env = {**os.environ, "PURAIFY_HOME": str(tmp_path / ".home")}
    made = json.loads(puraify("init", "--json", cwd=tmp_path).stdout)
    key_file = Path(made["vault_key_file"])
    assert made["vault_key_created"] and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    canary = "xoxb-canary-" + os.urandom(4).hex()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "puraify",
            "vault",
            "set",
            "p",
            "slack",
            "--type",
            "token",
            "--json",
        ],
        input=canary,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert canary not in done.stdout + done.stderr
    listed = puraify("vault", "list", "--json", cwd=tmp_path)
    shown = puraify("vault", "show", "p", "slack", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["type"] == "token"
    assert canary not in listed.stdout + shown.stdout
    rotated = json.loads(puraify("vault", "rotate", "--drop-old", "--json", cwd=tmp_path).stdout)
    assert rotated["resealed"] == 1 and rotated["dropped_keys"]
    assert canary.encode() not in (tmp_path / ".home" / "puraify.db").read_bytes()
    bad = puraify("vault", "show", "p", "nope", "--json", cwd=tmp_path)
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"]["code"] == "not_found"
