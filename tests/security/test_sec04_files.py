"""SEC-04: file steps stay in the workspace jail; a canary outside stays unchanged."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from puraify.errors import LoadError
from puraify.mission.model import StepStatus
from tests.conftest import EngineFactory, run_text


def step(step_type: str, **params: object) -> str:
    return f"steps:\n  - id: f\n    step_type: {step_type}\n    parameters: {json.dumps(params)}\n"


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.txt"
    path.write_text("untouched")
    return path


def assert_canary(canary: Path) -> None:
    assert canary.read_text() == "untouched"


@pytest.mark.parametrize(
    "path",
    [
        "../canary.txt",
        "a/../../canary.txt",
        "/etc/passwd",
        "..%2fcanary.txt",
        "%2e%2e/canary.txt",
        "~/canary.txt",
        "..\\canary.txt",
    ],
)
@pytest.mark.parametrize("kind", ["read_file", "create_file", "delete_file", "edit_file"])
async def test_sec04_traversal_refused(
    make_engine: EngineFactory, canary: Path, path: str, kind: str
) -> None:
    engine = make_engine()
    params: dict[str, object] = {"path": path}
    if kind in ("create_file", "edit_file"):
        params.update(
            content="pwned", operation="overwrite"
        ) if kind == "edit_file" else params.update(content="pwned")
    result = await run_text(engine, step(kind, **params))
    error = result.step("f").error
    assert error is not None and error.code == "path_outside_jail", error
    assert_canary(canary)


@pytest.mark.parametrize("kind", ["read_file", "create_file", "delete_file", "edit_file"])
async def test_sec04_a_nul_in_a_path_is_refused_in_the_document_and_at_run_time(
    make_engine: EngineFactory, canary: Path, kind: str
) -> None:
    engine = make_engine()
    extra = {"content": "pwned"} if kind in ("create_file", "edit_file") else {}
    if kind == "edit_file":
        extra["operation"] = "overwrite"
    with pytest.raises(LoadError) as refused:  # no document may hold a NUL
        engine.prepare(step(kind, path="a/\x00b", **extra))
    assert refused.value.code == "invalid_encoding"
    # a NUL that arrives through a template at run time meets the jail
    result = await run_text(
        engine, step(kind, path="{{ context.p }}", **extra), context={"p": "a/\x00b"}
    )
    error = result.step("f").error
    assert error is not None and error.code == "path_outside_jail", error
    assert_canary(canary)


async def test_sec04_absolute_path_inside_workspace_is_fine(
    make_engine: EngineFactory, workspace: Path
) -> None:
    engine = make_engine()
    result = await run_text(
        engine, step("create_file", path=str(workspace / "inside.txt"), content="ok")
    )
    assert result.step("f").status is StepStatus.SUCCESS
    assert (workspace / "inside.txt").read_text() == "ok"


@pytest.mark.parametrize("kind", ["read_file", "create_file", "edit_file", "copy_file"])
async def test_sec04_hard_links_out_of_the_jail_refused(
    make_engine: EngineFactory, workspace: Path, canary: Path, kind: str
) -> None:
    """F: a hard link inside the workspace is another name of a file outside it (a command step
    can make one): in the server profile, reading or writing through it is refused."""
    os.link(canary, workspace / "link.txt")
    params: dict[str, object] = {"path": "link.txt"}
    if kind in ("create_file", "edit_file"):
        params.update(content="pwned", overwrite=True)
        if kind == "edit_file":
            params = {"path": "link.txt", "content": "pwned", "operation": "overwrite"}
    if kind == "copy_file":
        params = {"source": "link.txt", "destination": "copy.txt"}
    result = await run_text(make_engine(mode="server"), step(kind, **params))
    error = result.step("f").error
    assert error is not None and error.code == "file_type_refused", error
    assert_canary(canary)
    assert not (workspace / "copy.txt").exists()


@pytest.mark.parametrize("kind", ["read_file", "create_file", "edit_file", "delete_file"])
async def test_sec04_symlinks_out_of_the_jail_refused(
    make_engine: EngineFactory, workspace: Path, canary: Path, kind: str
) -> None:
    (workspace / "link.txt").symlink_to(canary)
    (workspace / "dirlink").symlink_to(canary.parent, target_is_directory=True)
    engine = make_engine()
    for path in ("link.txt", "dirlink/canary.txt"):
        params: dict[str, object] = {"path": path, "content": "pwned"}
        if kind == "edit_file":
            params["operation"] = "overwrite"
        result = await run_text(engine, step(kind, **params))
        error = result.step("f").error
        if kind == "delete_file" and path == "link.txt":
            # deleting a symlink removes the link itself, never its target
            assert result.step("f").status is StepStatus.SUCCESS
            (workspace / "link.txt").symlink_to(canary)
        else:
            assert error is not None and error.code == "path_outside_jail", (kind, path, error)
    assert_canary(canary)


async def test_sec04_symlink_swapped_in_after_check(
    make_engine: EngineFactory, workspace: Path, canary: Path
) -> None:
    """A directory replaced by a symlink while writes are in flight never leads outside."""
    engine = make_engine()
    (workspace / "d").mkdir()
    stop = threading.Event()

    def swapper() -> None:
        while not stop.is_set():
            try:
                os.rename(workspace / "d", workspace / "d_real")
                os.symlink(canary.parent, workspace / "d")
                os.unlink(workspace / "d")
                os.rename(workspace / "d_real", workspace / "d")
            except OSError:
                pass

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            await run_text(
                engine, step("create_file", path="d/canary.txt", content="pwned", create_dirs=False)
            )
    finally:
        stop.set()
        thread.join()
    assert_canary(canary)


async def test_sec04_fifo_and_devices_refused(make_engine: EngineFactory, workspace: Path) -> None:
    os.mkfifo(workspace / "pipe")
    (workspace / "null").symlink_to("/dev/null")
    engine = make_engine()
    for kind in ("read_file", "create_file"):
        result = await run_text(engine, step(kind, path="pipe", content="x"))
        assert result.step("f").error.code == "file_type_refused"  # type: ignore[union-attr]
    result = await run_text(engine, step("read_file", path="null"))
    assert result.step("f").error.code == "path_outside_jail"  # type: ignore[union-attr]


async def test_sec04_engine_state_refused(
    make_engine: EngineFactory, workspace: Path, tmp_path: Path
) -> None:
    # the engine's home (DB, keys) inside the workspace is still off limits
    home = workspace / ".puraify"
    home.mkdir()
    (home / "puraify.db").write_text("db")
    engine = make_engine(home=home)
    for kind in ("read_file", "delete_file"):
        result = await run_text(engine, step(kind, path=".puraify/puraify.db"))
        assert result.step("f").error.code == "path_outside_jail"  # type: ignore[union-attr]
    os.link(home / "puraify.db", workspace / "hardlink.db")
    result = await run_text(engine, step("read_file", path="hardlink.db"))
    assert result.step("f").error.code == "path_outside_jail"  # type: ignore[union-attr]
    assert (home / "puraify.db").read_text() == "db"


async def test_sec04_copy_and_move_stay_inside(
    make_engine: EngineFactory, workspace: Path, canary: Path
) -> None:
    (workspace / "src.txt").write_text("data")
    engine = make_engine()
    for kind in ("copy_file", "move_file"):
        result = await run_text(engine, step(kind, source="src.txt", destination="../canary.txt"))
        assert result.step("f").error.code == "path_outside_jail"  # type: ignore[union-attr]
        result = await run_text(
            engine, step(kind, source="../canary.txt", destination="stolen.txt")
        )
        assert result.step("f").error.code == "path_outside_jail"  # type: ignore[union-attr]
    assert_canary(canary)
    assert not (workspace / "stolen.txt").exists()


async def test_parent_created_concurrently_by_another_process(
    make_engine: EngineFactory, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `mkdir -p` running in parallel wins the race for a parent directory: still fine."""
    real_mkdir = os.mkdir

    def racing_mkdir(name: str, *args: object, **kwargs: object) -> None:
        real_mkdir(name, *args, **kwargs)  # the other process gets there first
        real_mkdir(name, *args, **kwargs)  # ours then finds it there: FileExistsError

    engine = make_engine()
    monkeypatch.setattr("puraify.runtime.guards.jail.os.mkdir", racing_mkdir)
    result = await run_text(engine, step("create_file", path="new/dir/f.txt", content="x"))
    assert result.step("f").status is StepStatus.SUCCESS, result.step("f").error
    assert (workspace / "new/dir/f.txt").read_text() == "x"


async def test_workspace_inside_engine_home(tmp_path: Path) -> None:
    """The server default (home/workspace): files in the workspace work, the engine's DB beside
    it stays unreachable, also through a hard link."""
    from puraify.runtime.guards import Jail

    home = tmp_path / "home"
    (home / "workspace").mkdir(parents=True)
    (home / "puraify.db").write_text("db")
    (home / "workspace" / "data.txt").write_text("ok")
    jail = Jail(home / "workspace", protected=[home])
    with jail.open("data.txt", "r") as fh:
        assert fh.read() == b"ok"
    with jail.open("new.txt", "w") as fh:
        fh.write(b"x")
    os.link(home / "puraify.db", home / "workspace" / "db-link")
    with pytest.raises(Exception) as info:
        jail.open("db-link", "r")
    assert getattr(info.value, "code", None) == "path_outside_jail"
    with pytest.raises(Exception) as info:
        jail.open("../puraify.db", "r")
    assert getattr(info.value, "code", None) == "path_outside_jail"


def test_engine_file_written_after_start_is_refused_through_a_hard_link(tmp_path: Path) -> None:
    """Files the engine writes once the jail exists (a key in a subdirectory of its home) are
    protected too, and a hard-linked workspace file that is not engine state still opens."""
    from puraify.errors import GuardError
    from puraify.runtime.guards import Jail

    home, workspace = tmp_path / "home", tmp_path / "workspace"
    (home / "keys").mkdir(parents=True)
    jail = Jail(workspace, protected=[home])
    (workspace / "shared.txt").write_text("ok")
    os.link(workspace / "shared.txt", tmp_path / "elsewhere.txt")
    with jail.open("shared.txt", "r") as fh:
        assert fh.read() == b"ok"
    (home / "keys" / "master.key").write_text("secret")
    os.link(home / "keys" / "master.key", workspace / "key-link")
    with pytest.raises(GuardError) as info:
        jail.open("key-link", "r")
    assert info.value.code == "path_outside_jail"
    with jail.open("shared.txt", "r") as fh:
        assert fh.read() == b"ok"
