"""RustChain's own example missions (../shared/examples/rustchain, INDEX.md) on this engine.

Every mission RustChain's loader accepts loads here. Those whose step types all exist in this
engine validate and run, in a temporary workspace, to the outcome DESIGN.md's semantics give
offline (egress limited to loopback: calls to public hosts end ``ssrf_blocked``; shells invoked
as programs end ``command_refused``). The others fail validation only with
``unknown_step_type``, naming step types a later issue brings.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from puraify.errors import ValidationError
from puraify.mission.loader import load_mission
from puraify.mission.model import MissionStatus, StepStatus
from tests.conftest import EXAMPLES, EngineFactory

if not (EXAMPLES / "INDEX.md").is_file():
    pytest.skip(f"RustChain examples not found at {EXAMPLES}", allow_module_level=True)


def _rows() -> list[tuple[str, bool, list[str]]]:
    rows = []
    for line in (EXAMPLES / "INDEX.md").read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| file") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        verdict = cells[2]
        types = re.search(r"step types: ([^;.]*)", verdict)
        names = [t.strip() for t in types.group(1).split(",")] if types else []
        rows.append((cells[0], verdict.startswith("loads"), names))
    return rows


ROWS = _rows()
LOADABLE = [r for r in ROWS if r[1]]

COMPLETED = {
    "community-v1.0.0/.archive/development/test_basic_functionality.yaml",
    "community-v1.0.0/.archive/development/test_core_functionality.yaml",
    "community-v1.0.0/.archive/development/test_simple.yaml",
    "community-v1.0.0/missions/coverage_mission_01_memory.yaml",
    "community-v1.0.0/missions/coverage_mission_02_tools.yaml",
    "community-v1.0.0/missions/coverage_mission_03_engine.yaml",
    "community/examples/automation_workflow.yaml",
    "community/examples/benchmark_suite.yaml",
    "community/examples/hello_world.yaml",
    "community/examples/hello_world_fixed.yaml",
    "community/gif_demo/simple_demo.yaml",
    "community/specs/quickstart/test_mission_engine.yaml",
    "community/specs/quickstart/test_security_mission.yaml",
}
SHELL = {"command_refused"}
OFFLINE = {"ssrf_blocked"}
#: mission -> the error codes its failed steps may carry (why it fails, offline and safely)
FAILED = {
    "community-v1.0.0/.archive/development/fix_shimmy_warnings.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_basic_validation.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_completion_check.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_connect_discovery_working.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_core_shim_mission.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_first_mission.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_integration_progress.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_practical_fixes.yaml": SHELL,
    "community-v1.0.0/.archive/development/shimmy_tool_calling_mission.yaml": SHELL,
    "community-v1.0.0/missions/coverage_mission_01_memory_fixed.yaml": SHELL,
    "community-v1.0.0/missions/coverage_mission_01_memory_v3.yaml": SHELL,
    # `cargo check` in an empty workspace: no Cargo.toml (or no cargo at all)
    "community-v1.0.0/missions/coverage_mission_01_memory_v2.yaml": {
        "command_failed",
        "command_not_found",
    },
    # absolute paths outside the workspace
    "community-v1.0.0/.archive/development/test_compliance_mission.yaml": {
        "path_outside_jail",
        "ssrf_blocked",
    },
    "community-v1.0.0/.archive/development/test_comply_integration.yaml": {"path_outside_jail"},
    # public hosts (httpbin.org, jsonplaceholder) are out of reach offline
    "community-v1.0.0/.archive/development/step_type_validation.yaml": OFFLINE,
    "community-v1.0.0/.archive/development/test_http_detailed.yaml": OFFLINE,
    "community-v1.0.0/.archive/development/test_http_fixed.yaml": OFFLINE,
    "community-v1.0.0/missions/dogfood_http_bridge_test.yaml": OFFLINE,
    "community/examples/api_integration.yaml": OFFLINE,
    "community/examples/security_validation.yaml": OFFLINE,
    "community/examples/showcase_workflow.yaml": OFFLINE,
    "community/examples/working_demo.yaml": OFFLINE,
    "rustchain/examples/api_integration.yaml": OFFLINE,
    # a local LLM server on 127.0.0.1:8080 that is not running here
    "community-v1.0.0/.archive/development/test_shimmy_integration.yaml": {
        "connection_error",
        "http_error",
    },
}


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_every_indexed_mission_loads(row: tuple[str, bool, list[str]]) -> None:
    """Ours is the more lenient loader: even files RustChain rejects (no `name`, PascalCase
    types, JSON with extra keys) load here."""
    loaded = load_mission(EXAMPLES / row[0])
    assert loaded.mission.steps


@pytest.mark.parametrize("row", LOADABLE, ids=[r[0] for r in LOADABLE])
async def test_rustchain_loadable_mission(
    row: tuple[str, bool, list[str]], make_engine: EngineFactory
) -> None:
    path, _, types = row
    engine = make_engine()
    ours = [t for t in types if engine.registry.canonical(t) is not None]
    later = sorted(set(types) - set(ours))
    if later:
        with pytest.raises(ValidationError) as info:
            engine.prepare(EXAMPLES / path)
        errors = [i for i in info.value.issues if i.severity == "error"]
        assert {i.code for i in errors} == {"unknown_step_type"}, [i.to_dict() for i in errors]
        named = {i.message.split("'")[1] for i in errors}
        assert named == set(later)
        return
    prepared = engine.prepare(EXAMPLES / path)
    result = await engine.run(prepared.mission)
    assert path in COMPLETED or path in FAILED, f"add {path} to the expected outcomes"
    if path in COMPLETED:
        assert result.status is MissionStatus.COMPLETED, result.model_dump()
        return
    assert result.status is MissionStatus.FAILED
    codes = {s.error.code for s in result.steps if s.status is StepStatus.FAILED and s.error}
    assert codes, "a failed mission names why"
    assert codes <= FAILED[path], (path, codes)


async def test_hello_world_writes_its_file(make_engine: EngineFactory, workspace: Path) -> None:
    engine = make_engine()
    prepared = engine.prepare(EXAMPLES / "community/examples/hello_world.yaml")
    result = await engine.run(prepared.mission)
    assert result.status is MissionStatus.COMPLETED
    text = (workspace / "hello_rustchain.txt").read_text()
    assert "Welcome to RustChain" in text
    assert "{{" not in text  # `{{ timestamp }}` was rendered
