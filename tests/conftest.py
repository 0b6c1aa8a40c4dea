"""Shared fixtures: an engine on a temporary workspace, and real servers on loopback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from puraify.mission.model import MissionResult
from puraify.redaction import OPERATOR, RUNS
from puraify.runtime.engine import Engine
from puraify.runtime.executor import RunHandle
from puraify.settings import Settings
from puraify.testing import LocalServer, RecordingSink

EXAMPLES = Path(__file__).resolve().parents[2] / "shared" / "examples" / "rustchain"
if not EXAMPLES.is_dir():  # a clone laid out elsewhere: look next to the repository
    EXAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "examples" / "rustchain"

TEST_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8"}


@pytest.fixture(autouse=True)
def _logging_reset() -> Iterator[None]:
    """Logging is process-wide: a test that configured it (an in-process CLI run binds the
    runner's captured stderr, closed afterwards) must not leave it to the next test."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _secrets_reset() -> Iterator[None]:
    """The redactor is process-wide: the values one test's steps fetched are not the next
    test's (a server process keeps them for its life)."""
    yield
    RUNS.clear()
    OPERATOR.clear()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Local-mode settings confined to ``tmp_path``; egress limited to loopback."""
    values: dict[str, Any] = {
        "mode": "local",
        "home": tmp_path / "home",
        "egress_only_allowlisted": True,
        "ssrf_allow_loopback": True,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


EngineFactory = Callable[..., Engine]


@pytest.fixture
async def make_engine(tmp_path: Path, workspace: Path) -> AsyncIterator[EngineFactory]:
    engines: list[Engine] = []

    def factory(hooks: Any = (), environ: dict[str, str] | None = None, **overrides: Any) -> Engine:
        engine = Engine.from_settings(
            make_settings(tmp_path, **overrides),
            workspace=workspace,
            hooks=hooks,
            environ=environ if environ is not None else TEST_ENV,
        )
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.aclose()


@pytest.fixture
async def engine(make_engine: EngineFactory) -> Engine:
    return make_engine()


async def run_text(
    engine: Engine,
    text: str,
    *,
    context: dict[str, Any] | None = None,
    handle: RunHandle | None = None,
) -> MissionResult:
    prepared = engine.prepare(text, context_names=list(context or {}))
    return await engine.run(prepared.mission, context=context, handle=handle)


@pytest.fixture
def sink() -> Iterator[tuple[RecordingSink, str]]:
    receiver = RecordingSink()
    with LocalServer(receiver) as server:
        yield receiver, server.url
