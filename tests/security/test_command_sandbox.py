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


async def test_a_command_cannot_write_kernel_settings_or_reach_devices(
    make_engine: EngineFactory,
) -> None:
    """A process the kernel counts as root (an engine running as root) could write
    /proc/sys (core_pattern runs a program as the host's root), sysrq, or raw devices: its
    /proc keeps them read-only or hidden, its /dev holds only the harmless devices, and /run
    (where daemons keep their sockets) is its own, empty."""
    code = (
        "import os\n"
        "for path in ('/proc/sys/kernel/core_pattern', '/proc/sysrq-trigger', "
        "'/proc/sys/vm/drop_caches'):\n"
        "    try:\n        open(path, 'w').close(); print('opened', path)\n"
        "    except OSError as e:\n        print('refused', path)\n"
        "print(sorted(os.listdir('/dev')))\n"
        "print(os.listdir('/run') if os.path.isdir('/run') else [])\n"
        "print(open('/proc/kcore', 'rb').read(16) if os.path.exists('/proc/kcore') else b'')\n"
    )
    lines = stdout(await run_text(make_engine(), python(code))).splitlines()
    assert all(line.startswith("refused") for line in lines[:3]), lines
    devices = eval(lines[3])
    assert set(devices) <= {
        *("null", "zero", "full", "random", "urandom", "tty"),
        *("fd", "stdin", "stdout", "stderr", "shm", "pts"),
    }
    assert {"null", "zero", "urandom", "shm"} <= set(devices)
    assert lines[4] == "[]"
    assert lines[5] == "b''"


async def test_a_command_that_clears_its_parent_death_signal_still_ends_at_its_timeout(
    make_engine: EngineFactory,
) -> None:
    """F: the step's timeout ends the command through its first process, PID 1 of its
    namespace, which the program cannot opt out of; a big stdin it never reads changes
    nothing."""
    token = secrets.token_hex(8)
    code = (
        "import ctypes, time\n"
        "ctypes.CDLL(None).prctl(1, 0, 0, 0, 0)\n"  # PR_SET_PDEATHSIG, 0
        f"time.sleep(600)  # {token}\n"
    )
    text = (
        "steps:\n  - id: c\n    step_type: command\n    timeout_seconds: 1\n"
        f"    parameters: {json.dumps({'command': sys.executable, 'args': ['-c', code], 'stdin': 'x' * 500_000})}\n"
    )
    result = await run_text(make_engine(), text)
    error = result.step("c").error
    assert error is not None and error.code == "timeout"
    wait_for(lambda: not process_running(token), what="the command ended at its timeout")


async def test_a_command_line_past_the_limit_is_refused_and_harms_no_other(
    make_engine: EngineFactory,
) -> None:
    """F: arguments too large to run are a structured error; the launcher, and the commands
    of other steps, go on."""
    engine = make_engine()
    huge = ["{{ 'é' * 400000 }}"] * 2  # 2 x 800 KB, past the limit as the launcher reads it
    text = (
        "steps:\n  - id: c\n    step_type: command\n"
        f"    parameters: {json.dumps({'command': 'echo', 'args': huge})}\n"
    )
    error = (await run_text(engine, text)).step("c").error
    assert error is not None and error.code == "invalid_parameters", error
    assert stdout(await run_text(engine, python("print('still here')"))).strip() == "still here"


async def test_shared_memory_is_the_command_own(make_engine: EngineFactory) -> None:
    """F: SysV shared memory lives in the command's own IPC namespace, gone with it."""
    key = secrets.randbelow(2**30) + 1
    code = f"import ctypes\nprint(ctypes.CDLL(None).shmget({key}, 4096, 0o1000 | 0o600) >= 0)\n"
    assert stdout(await run_text(make_engine(), python(code))).strip() == "True"
    assert f" {key} " not in Path("/proc/sysvipc/shm").read_text()


@pytest.mark.skipif(
    os.getuid() == 0,
    reason="the kernel exempts its root user from process limits: an engine running as root "
    "gets no command_max_processes (puraify doctor warns of it)",
)
async def test_a_command_processes_are_capped(make_engine: EngineFactory) -> None:
    """F: a command's processes are capped (command_max_processes), counted in its own user
    namespace: the engine user's other processes do not count."""
    code = (
        "import os, time\n"
        "made = 0\n"
        "try:\n"
        "    for _ in range(64):\n"
        "        if os.fork() == 0:\n            time.sleep(30); os._exit(0)\n"
        "        made += 1\n"
        "except OSError:\n    print('refused after', made)\n"
    )
    engine = make_engine(command_max_processes=16)
    line = stdout(await run_text(engine, python(code))).strip()
    assert line.startswith("refused after") and int(line.split()[-1]) < 16, line


async def test_commands_run_in_the_default_server_layout(durable: Path) -> None:
    """The server's default: the home outside /tmp, every workspace under <home>/workspaces
    (hidden with the home, the command's own bound back in)."""
    home = durable / "home"
    mine = home / "workspaces" / "project-a"
    mine.mkdir(parents=True)
    (home / "puraify.db").write_text("secret state")
    settings = make_settings(
        durable, mode="server", home=home, command_enabled=True, command_allow=(sys.executable,)
    )
    engine = Engine.from_settings(settings, workspace=mine, environ=TEST_ENV)
    try:
        code = (
            "import os, sys\n"
            "print(os.path.exists(sys.argv[1]))\n"
            "open('mine.txt', 'w').write('mine')\n"
        )
        p = {"command": sys.executable, "args": ["-c", code, str(home / "puraify.db")]}
        text = f"steps:\n  - id: c\n    step_type: command\n    parameters: {json.dumps(p)}\n"
        assert stdout(await run_text(engine, text)).strip() == "False"
    finally:
        await engine.aclose()
    assert (mine / "mine.txt").read_text() == "mine"


async def test_a_hidden_home_stays_hidden_after_its_parent_is_renamed(
    make_engine: EngineFactory, workspace: Path
) -> None:
    """F: a home inside the workspace is hidden where it is now, not where it was: a step that
    renames a directory above it does not expose it to the next."""
    home = workspace / ".local" / "puraify"
    home.mkdir(parents=True)
    (home / "secret.txt").write_text("secret")
    engine = make_engine(home=home)
    first = python("import os\nos.rename('.local', 'moved')\nprint('moved')")
    assert stdout(await run_text(engine, first)).strip() == "moved"
    read = python(
        "try:\n    print(open('moved/puraify/secret.txt').read())\n"
        "except OSError as e:\n    print('hidden', e.errno)\n"
    )
    assert stdout(await run_text(engine, read)).startswith("hidden")


async def test_a_command_cannot_make_namespaces_mount_or_set_id_bits(
    make_engine: EngineFactory, workspace: Path
) -> None:
    """F: the command's system call filter: no namespace of its own (where it could mount a
    cgroup hierarchy and freeze or starve the host), no mount, no setuid or setgid file and no
    file capability for someone else to run; threads and child processes still work."""
    code = (
        "import ctypes, os, shutil, subprocess, sys, threading\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('unshare', libc.unshare(0x10000000 | 0x20000), ctypes.get_errno())\n"
        "print('mount', libc.mount(b'none', b'/tmp', b'tmpfs', 0, None), ctypes.get_errno())\n"
        "shutil.copy('/bin/true', 'prog')\n"
        "for mode in (0o4755, 0o2755):\n"
        "    try:\n        os.chmod('prog', mode); print('chmod', oct(mode), 'done')\n"
        "    except OSError as e:\n        print('chmod', oct(mode), 'refused', e.errno)\n"
        "try:\n    os.setxattr('prog', 'security.capability', b'\\x01' * 20); print('xattr done')\n"
        "except OSError as e:\n    print('xattr refused', e.errno)\n"
        "try:\n    os.open('made', os.O_CREAT | os.O_WRONLY, 0o4755); print('create done')\n"
        "except OSError as e:\n    print('create refused', e.errno)\n"
        "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
        "print(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())\n"
    )
    lines = stdout(await run_text(make_engine(), python(code))).splitlines()
    assert lines[0] == "unshare -1 1" and lines[1] == "mount -1 1", lines
    assert lines[2:6] == [
        "chmod 0o4755 refused 1",
        "chmod 0o2755 refused 1",
        "xattr refused 1",
        "create refused 1",
    ], lines
    assert lines[6] == "child"
    assert not (workspace / "prog").stat().st_mode & 0o6000


async def test_renaming_above_a_hidden_home_while_commands_start_never_exposes_it(
    make_engine: EngineFactory, workspace: Path
) -> None:
    """F: a command renaming a directory above the hidden home, back and forth, while others
    start: each of those either has the home hidden or does not start (what the engine holds
    is checked where it is mounted over); none reads it."""
    home = workspace / "st" / "home"
    home.mkdir(parents=True)
    (home / "secret.txt").write_text("secret")
    flip = (
        "import os, time\nend = time.monotonic() + 2\n"
        "while time.monotonic() < end:\n"
        "    os.rename('st', 'st2'); os.rename('st2', 'st')\n"
    )
    look = (
        "import os\nfor d in ('st/home', 'st2/home'):\n"
        "    try:\n        print('SEEN' if os.listdir(d) else 'empty', d)\n"
        "    except OSError:\n        pass\n"
    )
    steps = [
        {
            "id": "flip",
            "step_type": "command",
            "parameters": {"command": sys.executable, "args": ["-c", flip]},
        }
    ]
    steps += [
        {
            "id": f"look{i}",
            "step_type": "command",
            "continue_on_error": True,
            "parameters": {"command": sys.executable, "args": ["-c", look]},
        }
        for i in range(8)
    ]
    mission = {"config": {"max_concurrent_steps": 9}, "steps": steps}
    result = await run_text(make_engine(home=home), json.dumps(mission))
    for i in range(8):
        step = result.step(f"look{i}")
        seen = (step.output or {}).get("stdout", "")
        assert "SEEN" not in seen, seen
        if step.error is not None:  # refused to start: the home had moved
            assert step.error.code == "command_failed", step.error
