"""SEC-03: argv only, never a shell; metacharacters literal; environment allowlisted."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

import pytest

from puraify.mission.model import StepStatus
from puraify.runtime.guards.commands import containment
from puraify.testing import CanaryListener
from tests.conftest import EngineFactory, run_text
from tests.helpers import process_running, wait_for


def cmd(command: str, args: list[str], **params: object) -> str:
    p = {"command": command, "args": args, **params}
    return f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"


async def test_sec03_metacharacters_reach_the_program_literally(
    make_engine: EngineFactory, workspace: Path
) -> None:
    engine = make_engine()
    nasty = ["; touch pwned", "$(touch pwned2)", "`touch pwned3`", "a && b", "| cat", "> out", "*"]
    result = await run_text(engine, cmd("echo", nasty))
    step = result.step("c")
    assert step.status is StepStatus.SUCCESS
    assert step.output is not None and step.output["stdout"] == " ".join(nasty) + "\n"
    assert not any((workspace / n).exists() for n in ("pwned", "pwned2", "pwned3", "out"))


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("bash", ["-c", "echo hi"]),
        ("/bin/sh", ["-c", "id"]),
        ("powershell", ["-Command", "ls"]),
        ("echo hi && rm -rf /", []),
        ("sudo", ["ls"]),
        ("rm", ["-rf", "/"]),
        ("rm", ["-rf", "~"]),
        ("mkfs.ext4", ["/dev/sda"]),
        ("dd", ["if=/dev/zero", "of=/dev/sda"]),
        ("shutdown", ["-h", "now"]),
        ("chmod", ["-R", "777", "/"]),
    ],
)
async def test_sec03_dangerous_commands_refused(
    make_engine: EngineFactory, command: str, args: list[str]
) -> None:
    engine = make_engine()
    result = await run_text(engine, cmd(command, args))
    step = result.step("c")
    assert step.status is StepStatus.FAILED
    assert step.error is not None and step.error.code == "command_refused", step.error


@pytest.mark.parametrize(
    "name",
    ["LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "PYTHONPATH", "BASH_ENV", "PATH"],
)
async def test_sec03_loader_hijack_env_refused(make_engine: EngineFactory, name: str) -> None:
    engine = make_engine()
    result = await run_text(engine, cmd("echo", ["x"], env={name: "/tmp/evil.so"}))
    assert result.step("c").error.code == "command_refused"  # type: ignore[union-attr]


async def test_sec03_environment_stripped_to_allowlist(make_engine: EngineFactory) -> None:
    engine = make_engine(
        environ={"PATH": "/usr/bin:/bin", "SECRET_TOKEN": "s3cr3t", "HOME": "/tmp"}
    )
    result = await run_text(
        engine,
        cmd(
            sys.executable,
            ["-c", "import os, json; print(json.dumps(dict(os.environ)))"],
            env={"MY_FLAG": "1"},
        ),
    )
    env = json.loads(result.step("c").output["stdout"])  # type: ignore[index]
    assert "SECRET_TOKEN" not in env
    assert env["MY_FLAG"] == "1"
    # the allow-listed variables, the step's own, and the mark that finds what it leaves behind
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "MY_FLAG"}
    assert set(env) <= allowed | {"PURAIFY_STEP_MARK"}


async def test_sec03_output_capped(make_engine: EngineFactory) -> None:
    engine = make_engine(command_max_output_bytes=1000)
    result = await run_text(engine, cmd(sys.executable, ["-c", "print('x' * 100000)"]))
    out = result.step("c").output
    assert out is not None and len(out["stdout"]) == 1000 and out["stdout_truncated"] is True


async def test_sec03_disabled_in_server_mode_unless_flag(
    make_engine: EngineFactory, workspace: Path
) -> None:
    engine = make_engine(mode="server")
    result = await run_text(engine, cmd("echo", ["hi"]))
    assert result.step("c").error.code == "command_disabled"  # type: ignore[union-attr]
    # on, the server runs only the programs the operator's allow list names
    engine = make_engine(mode="server", command_enabled=True)
    refused = (await run_text(engine, cmd("echo", ["hi"]))).step("c").error
    assert refused is not None and refused.code == "command_refused"
    assert "command_allow" in refused.message
    engine = make_engine(mode="server", command_enabled=True, command_allow=["echo", "env"])
    assert (await run_text(engine, cmd("echo", ["hi"]))).step("c").status is StepStatus.SUCCESS
    assert (await run_text(engine, cmd("env", ["echo", "hi"]))).step("c").status is (
        StepStatus.SUCCESS
    )
    # what a listed wrapper runs must be listed too
    wrapped = (await run_text(engine, cmd("env", ["ls"]))).step("c").error
    assert wrapped is not None and wrapped.code == "command_refused" and "ls" in wrapped.message
    # a name is a program found on PATH: a file of that name elsewhere is not it
    (workspace / "echo").write_text("#!/bin/sh\necho impostor\n")
    (workspace / "echo").chmod(0o755)
    impostor = (await run_text(engine, cmd(str(workspace / "echo"), []))).step("c").error
    assert impostor is not None and impostor.code == "command_refused"


async def test_the_local_profile_honours_an_allow_list_when_given(
    make_engine: EngineFactory,
) -> None:
    engine = make_engine(command_allow=[sys.executable])
    ok = await run_text(engine, cmd(sys.executable, ["-c", "print(1)"]))
    assert ok.step("c").status is StepStatus.SUCCESS
    other = (await run_text(engine, cmd("echo", ["hi"]))).step("c").error
    assert other is not None and other.code == "command_refused"


async def test_command_not_found_and_exit_codes(make_engine: EngineFactory) -> None:
    engine = make_engine()
    result = await run_text(engine, cmd("definitely-not-a-program-xyz", []))
    assert result.step("c").error.code == "command_not_found"  # type: ignore[union-attr]
    result = await run_text(
        engine, cmd(sys.executable, ["-c", "import sys; sys.exit(3)"], success_codes=[0, 3])
    )
    assert result.step("c").output["exit_code"] == 3  # type: ignore[index]


NAMESPACES = pytest.mark.skipif(
    containment() != "sandbox",
    reason="this kernel refuses unprivileged PID and network namespaces",
)


@NAMESPACES
async def test_a_command_has_no_network_unless_the_operator_allows_it(
    make_engine: EngineFactory,
) -> None:
    """F: command steps without network get a network namespace of their own: even loopback
    is unreachable; a step asking for network where the operator gives none is refused."""
    with CanaryListener() as canary:
        probe = (
            "import socket; s = socket.socket(); s.settimeout(3)\n"
            f"try:\n    s.connect(('127.0.0.1', {canary.port})); print('reached')\n"
            "except OSError as e:\n    print('refused', e.errno)\n"
        )
        closed = make_engine(command_network=False)
        result = await run_text(closed, cmd(sys.executable, ["-c", probe]))
        assert (result.step("c").output or {})["stdout"].startswith("refused")
        asked = await run_text(closed, cmd(sys.executable, ["-c", probe], network=True))
        error = asked.step("c").error
        assert error is not None and error.code == "command_refused"
        assert "command_network" in error.message
        assert canary.connections == 0
        opened = make_engine()  # the local profile lets commands reach the network
        reached = await run_text(opened, cmd(sys.executable, ["-c", probe]))
        assert (reached.step("c").output or {})["stdout"].startswith("reached")


async def test_a_command_past_its_memory_cap_fails_alone(make_engine: EngineFactory) -> None:
    engine = make_engine(command_max_memory_bytes=256 * 1024 * 1024)
    hog = "b = bytearray(1024 * 1024 * 1024); print(len(b))"
    result = await run_text(engine, cmd(sys.executable, ["-c", hog]))
    step = result.step("c")
    assert step.status is StepStatus.FAILED and step.error is not None
    assert "MemoryError" in (step.output or {}).get("stderr", ""), step.output


@NAMESPACES
async def test_a_detached_child_that_clears_its_environment_still_ends_with_its_step(
    make_engine: EngineFactory, workspace: Path
) -> None:
    """F: the PID namespace ends every process of the command when it ends, whatever they do
    (setsid(), a cleared environment, a double fork)."""
    token = f"600.{secrets.randbelow(10**9):09d}"  # how the host sees the hidden child
    code = (
        "import os, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        os.environ.clear()\n"
        "        open('h.tmp', 'w').write(os.readlink('/proc/self'))\n"
        "        os.rename('h.tmp', 'hidden.pid')\n"
        f"        os.execv('/bin/sleep', ['sleep', '{token}'])\n"
        "    os._exit(0)\n"
        "while not os.path.exists('hidden.pid'): time.sleep(0.01)\n"
        "hidden = open('hidden.pid').read()\n"
        f"while '{token}' not in open(f'/proc/{{hidden}}/cmdline').read(): time.sleep(0.01)\n"
    )
    result = await run_text(make_engine(), cmd(sys.executable, ["-c", code]))
    assert result.step("c").status is StepStatus.SUCCESS, result.step("c").error
    assert (workspace / "hidden.pid").read_text().isdigit()

    wait_for(lambda: not process_running(token), what="the hidden child ended with its step")


async def test_stdin_a_program_does_not_read_is_not_a_failure(make_engine: EngineFactory) -> None:
    result = await run_text(make_engine(), cmd("echo", ["x"], stdin="y" * 900_000))
    step = result.step("c")
    assert step.status is StepStatus.SUCCESS, step.error
    assert (step.output or {})["stdout"] == "x\n"
