"""Each project has its own workspace in the server profile: another project's files cannot be
listed, read, changed or deleted."""

from __future__ import annotations

from typing import Any

from puraify.service import project_dirname
from tests.api.conftest import Api


async def _run(api: Api, project: str, *steps: dict[str, Any]) -> dict[str, Any]:
    r = await api.client.post(
        "/missions/execute?wait=true",
        headers=api.auth(project),
        json={"config": {"fail_fast": False}, "steps": list(steps)},
    )
    assert r.status_code == 200, r.text
    return {s["step_id"]: s for s in r.json()["steps"]}


async def test_two_projects_cannot_see_change_or_delete_each_others_files(api: Api) -> None:
    created = await _run(
        api,
        "a",
        {
            "id": "w",
            "step_type": "create_file",
            "parameters": {"path": "notes/secret.txt", "content": "project a only"},
        },
    )
    assert created["w"]["status"] == "success"

    b = await _run(
        api,
        "b",
        {"id": "read", "step_type": "read_file", "parameters": {"path": "notes/secret.txt"}},
        {"id": "list", "step_type": "list_directory", "parameters": {"path": "."}},
        {"id": "find", "step_type": "file_search", "parameters": {"path": ".", "pattern": "*"}},
        {
            "id": "over",
            "step_type": "create_file",
            "parameters": {"path": "notes/secret.txt", "content": "written by b"},
            "depends_on": ["read", "list", "find"],
            "trigger_rule": "all_done",
        },
        {
            "id": "climb",
            "step_type": "read_file",
            "parameters": {"path": f"../{project_dirname('a')}/notes/secret.txt"},
        },
    )
    assert b["read"]["error"]["code"] == "file_not_found"
    assert b["over"]["status"] == "success"
    assert "secret" not in str(b["list"]["output"]) and "secret" not in str(b["find"]["output"])
    assert b["climb"]["error"]["code"] == "path_outside_jail"

    deleted = await _run(
        api,
        "b",
        {
            "id": "rm",
            "step_type": "delete_file",
            "parameters": {"path": "notes", "recursive": True},
        },
    )
    assert deleted["rm"]["status"] == "success"  # b's own notes/, which b wrote above

    a = await _run(
        api,
        "a",
        {"id": "read", "step_type": "read_file", "parameters": {"path": "notes/secret.txt"}},
    )
    assert a["read"]["output"]["content"] == "project a only"

    home = api.app.state.application.settings.home
    dirs = sorted(p.name for p in (home / "workspaces").iterdir())
    assert dirs == sorted([project_dirname("a"), project_dirname("b")])


def test_project_directory_names_are_distinct_and_never_paths() -> None:
    names = {project_dirname(p) for p in ("a", "A", "a/b", "../a", "..", ".", "", "a b", "ä")}
    assert len(names) == 9
    for name in names:
        assert "/" not in name and name not in (".", "..") and not name.startswith(".")
