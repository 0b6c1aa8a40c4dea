"""F: the command sandbox: a command writes only in its workspace, sees only its own processes,
cannot read the engine's state or another project's files, and cannot undo any of it."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from puraify.mission.model import MissionResult, StepStatus
from puraify.runtime.engine import Engine
from puraify.runtime.guards.commands import containment, containment_reason
from puraify.runtime.guards.confinement import launcher
from tests.conftest import TEST_ENV, EngineFactory, make_settings, run_text
from tests.helpers import poll, process_running, wait_for

# CI runs where the sandbox works: there, a system that refuses it fails instead of skipping
pytestmark = pytest.mark.skipif(
    containment() != "sandbox" and os.environ.get("CI") != "true",
    reason=f"no command sandbox here: {containment_reason()}",
)


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Path]:
    """A directory outside /tmp and /var/tmp (which the sandbox replaces with its own), so
    that what the sandbox hides there is really hidden, not merely absent."""
    for parent in (Path.home(), Path(__file__).resolve().parents[2]):
        try:
            with tempfile.TemporaryDirectory(dir=parent, prefix=".puraify-test-") as made:
                yield Path(made)
            return
        except OSError:
            continue
    pytest.skip("no writable directory outside /tmp")


def python(code: str, **params: object) -> str:
    p = {"command": sys.executable, "args": ["-c", code], **params}
    return f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"


def stdout(result: MissionResult) -> str:
    step = result.step("c")
    assert step.status is StepStatus.SUCCESS, (step.error, step.output)
    return str((step.output or {})["stdout"])


WRITE = (
    "import sys\n"
    "for path in sys.argv[1:]:\n"
    "    try:\n"
    "        open(path, 'w').write('x')\n"
    "        print('wrote', path)\n"
    "    except OSError as e:\n"
    "        print('refused', path, e.errno)\n"
)


def write_to(*paths: str | Path) -> str:
    p = {"command": sys.executable, "args": ["-c", WRITE, *map(str, paths)]}
    return f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"


async def test_a_command_writes_only_in_its_workspace(
    make_engine: EngineFactory, workspace: Path, tmp_path: Path
) -> None:
    """F (rm -rf ../x acted outside the workspace): the command's view is read-only but for
    its workspace and a fresh /tmp of its own."""
    token = secrets.token_hex(6)
    read_only = [
        Path(f"/etc/puraify-{token}"),
        Path.home() / f"puraify-{token}",
        Path(__file__).parent / f"puraify-{token}",  # the engine's own code
    ]
    # the sandbox's own, fresh /tmp and /var/tmp (which may hold the workspace's parents)
    scratch = [
        tmp_path / f"sibling-{token}",
        Path(f"/tmp/puraify-{token}"),
        Path(f"/var/tmp/puraify-{token}"),
    ]
    result = await run_text(
        make_engine(), write_to(workspace / "inside.txt", "relative.txt", *read_only, *scratch)
    )
    lines = stdout(result).splitlines()
    assert lines[:2] == [f"wrote {workspace / 'inside.txt'}", "wrote relative.txt"]
    assert [line.split()[0] for line in lines[2:5]] == ["refused"] * 3, lines
    assert (workspace / "inside.txt").read_text() == "x"
    assert (workspace / "relative.txt").read_text() == "x"
    for path in [*read_only, *scratch]:
        assert not path.exists(), path  # nothing changed outside the workspace


async def test_a_command_cannot_delete_outside_its_workspace(
    make_engine: EngineFactory, workspace: Path, tmp_path: Path
) -> None:
    """F: `rm -rf ../x` (here through a program the deny list cannot judge) changes nothing
    outside the workspace."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    code = (
        "import shutil, sys\n"
        "try:\n    shutil.rmtree('../victim')\nexcept OSError as e:\n    print('refused', e.errno)\n"
    )
    assert stdout(await run_text(make_engine(), python(code))).startswith("refused")
    assert (victim / "keep.txt").read_text() == "keep"


async def test_a_command_cannot_read_the_engine_state(
    make_engine: EngineFactory, durable: Path
) -> None:
    """The engine's home (its database, its tokens) is hidden from commands, as is its config
    file."""
    home = durable / "home"
    home.mkdir()
    (home / "puraify.db").write_text("secret state")
    config = durable / "puraify.toml"
    config.write_text("# secret config\n")
    code = (
        "import os, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        print(os.listdir(path) if os.path.isdir(path) else repr(open(path).read()))\n"
        "    except OSError as e:\n"
        "        print(e.errno)\n"
    )
    engine = make_engine(home=home, config_file=config)
    p = {"command": sys.executable, "args": ["-c", code, str(home), str(config)]}
    text = f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"
    assert stdout(await run_text(engine, text)).splitlines() == ["[]", "''"]


async def test_a_project_command_sees_no_other_project(tmp_path: Path, durable: Path) -> None:
    """In the server profile the workspaces' directory is hidden; a command's own workspace
    is bound back in, at its own path."""
    root = durable / "workspaces"
    mine, theirs = root / "project-a", root / "project-b"
    for ws in (mine, theirs):
        ws.mkdir(parents=True)
    (theirs / "secret.txt").write_text("theirs")
    settings = make_settings(
        tmp_path,
        mode="server",
        workspace=root,
        command_enabled=True,
        command_allow=(sys.executable,),
    )
    engine = Engine.from_settings(settings, workspace=mine, environ=TEST_ENV)
    try:
        code = (
            "import os, sys\n"
            "print(sorted(os.listdir(sys.argv[1])))\n"
            "print(os.path.exists(sys.argv[2]))\n"
            "open('mine.txt', 'w').write('mine')\n"
        )
        p = {"command": sys.executable, "args": ["-c", code, str(root), str(theirs / "secret.txt")]}
        text = f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"
        lines = stdout(await run_text(engine, text)).splitlines()
    finally:
        await engine.aclose()
    assert lines == ["['project-a']", "False"]
    assert (mine / "mine.txt").read_text() == "mine"
    assert sorted(p.name for p in theirs.iterdir()) == ["secret.txt"]


async def test_a_command_sees_only_its_own_processes(make_engine: EngineFactory) -> None:
    """Its /proc is its PID namespace's: the engine's processes (and their environments) are
    not there to read or signal."""
    code = (
        "import os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "print(pids[0], os.getpid())\n"
        "print(any(b'py' b'test' in open(f'/proc/{p}/cmdline', 'rb').read() for p in pids))\n"
    )
    first, me, pytest_seen = stdout(await run_text(make_engine(), python(code))).split()
    assert first == "1" and me == "1"  # the command is its namespace's first process
    assert pytest_seen == "False"


async def test_a_command_cannot_undo_its_sandbox(make_engine: EngineFactory) -> None:
    """Remounting writable, in place or from a user and mount namespace of its own, fails:
    the command holds no privilege over the mounts it sees."""
    target = Path(__file__).parent / f"undone-{secrets.token_hex(6)}.txt"
    code = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "MS_REMOUNT, MS_BIND = 32, 4096\n"
        "print(libc.mount(None, b'/', None, MS_REMOUNT | MS_BIND, None))\n"
        "if libc.unshare(0x10000000 | 0x20000) == 0:\n"
        "    libc.mount(None, b'/', None, MS_REMOUNT | MS_BIND, None)\n"
        "    libc.mount(None, os.path.dirname(sys.argv[1]).encode(), None, MS_REMOUNT | MS_BIND, None)\n"
        "try:\n    open(sys.argv[1], 'w').write('x'); print('wrote')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )
    p = {"command": sys.executable, "args": ["-c", code, str(target)]}
    text = f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"
    lines = stdout(await run_text(make_engine(), text)).splitlines()
    assert lines[0] == "-1" and lines[-1].startswith("refused"), lines
    assert not target.exists()


async def test_a_command_tmp_is_capped(make_engine: EngineFactory) -> None:
    """/tmp is memory: it holds at most command_tmp_bytes."""
    code = (
        "try:\n    open('/tmp/big', 'wb').write(b'x' * 4 * 1024 * 1024); print('wrote')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )
    engine = make_engine(command_tmp_bytes=1024 * 1024)
    assert stdout(await run_text(engine, python(code))).strip() == "refused 28"  # ENOSPC


async def test_an_operator_lists_more_writable_directories(
    make_engine: EngineFactory, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    engine = make_engine(command_writable=(cache,))
    lines = stdout(await run_text(engine, write_to(cache / "entry"))).splitlines()
    assert lines == [f"wrote {cache / 'entry'}"]
    assert (cache / "entry").read_text() == "x"


async def test_commands_go_on_after_the_launcher_dies(
    make_engine: EngineFactory, workspace: Path
) -> None:
    """The launcher is the engine's own process: a command running when it dies fails with a
    reason, and the next command starts a new launcher."""
    engine = make_engine()
    token = secrets.token_hex(8)
    code = f"import time\nopen('started', 'w').close()\ntime.sleep(600)  # {token}\n"
    running = asyncio.create_task(run_text(engine, python(code)))

    async def started() -> bool:
        return (workspace / "started").exists()

    await poll(started, bool, what="the command started")
    process = launcher()._process
    assert process is not None
    process.kill()
    result = await running
    step = result.step("c")
    assert step.status is StepStatus.FAILED and step.error is not None
    assert step.error.code == "command_failed" and "launcher" in step.error.message
    wait_for(lambda: not process_running(token), what="the command ended with its launcher")
    assert stdout(await run_text(engine, python("print('again')"))).strip() == "again"
