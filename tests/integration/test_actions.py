"""Each local step type, end to end through the executor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from puraify.mission.model import MissionResult, StepStatus
from puraify.testing import RecordingSink, Reply
from tests.conftest import EngineFactory, run_text


async def one(make_engine: EngineFactory, step_type: str, **params: Any) -> MissionResult:
    text = f"steps:\n  - id: s\n    step_type: {step_type}\n    parameters: {json.dumps(params)}\n"
    return await run_text(make_engine(), text)


def out(result: MissionResult) -> dict[str, Any]:
    step = result.step("s")
    assert step.status is StepStatus.SUCCESS, step.error
    assert step.output is not None
    return step.output


async def test_http_request_shape(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/items", Reply(201, {"id": 7}, {"X-Trace": "abc"}))
    result = await one(
        make_engine,
        "http",
        url=f"{url}/items",
        method="POST",
        headers={"X-Api": "1"},
        query={"q": "a b"},
        body={"name": "x"},
        expected_status=[200, 201],
    )
    output = out(result)
    assert output["status"] == 201 and output["body"] == {"id": 7}
    assert output["headers"]["x-trace"] == "abc"
    (req,) = receiver.requests
    assert req.method == "POST" and req.query == "q=a+b" and req.json() == {"name": "x"}
    assert req.headers["x-api"] == "1" and req.headers["content-type"] == "application/json"
    assert req.headers["idempotency-key"] == f"{result.run_id}:s"


async def test_http_text_body_and_unexpected_status(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/t", Reply(200, "plain"))
    assert (
        out(await one(make_engine, "http", url=f"{url}/t", method="PUT", body="raw text"))["body"]
        == "plain"
    )
    assert receiver.requests[0].body == b"raw text"
    result = await one(make_engine, "http", url=f"{url}/t", expected_status=404)
    assert result.step("s").error.code == "http_error"  # type: ignore[union-attr]


async def test_http_response_cap(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str]
) -> None:
    receiver, url = sink
    receiver.script("/big", Reply(200, "x" * 50_000))
    result = await one(make_engine, "http", url=f"{url}/big", max_response_bytes=1000)
    assert result.step("s").error.code == "response_too_large"  # type: ignore[union-attr]


async def test_http_body_file(
    make_engine: EngineFactory, sink: tuple[RecordingSink, str], workspace: Path
) -> None:
    receiver, url = sink
    (workspace / "payload.json").write_text('{"from": "file"}')
    out(await one(make_engine, "http", url=f"{url}/f", method="POST", body_file="payload.json"))
    assert receiver.requests[0].json() == {"from": "file"}


async def test_create_read_edit_files(make_engine: EngineFactory, workspace: Path) -> None:
    engine = make_engine()
    text = """
steps:
  - {id: create, step_type: create_file, parameters: {path: notes/a.md, content: "hello world\\n"}}
  - {id: append, step_type: edit_file, depends_on: [create], parameters: {path: notes/a.md, operation: append, content: "more\\n"}}
  - {id: replace, step_type: edit_file, depends_on: [append], parameters: {path: notes/a.md, find: world, replace: there, backup: true}}
  - {id: read, step_type: read_file, depends_on: [replace], parameters: {path: notes/a.md}}
  - {id: exclusive, step_type: create_file, depends_on: [read], continue_on_error: true, parameters: {path: notes/a.md, content: x, overwrite: false}}
"""
    result = await run_text(engine, text)
    assert result.step("read").output["content"] == "hello there\nmore\n"  # type: ignore[index]
    assert result.step("replace").output["replacements"] == 1  # type: ignore[index]
    assert (workspace / "notes/a.md.bak").read_text() == "hello world\nmore\n"
    assert result.step("exclusive").error.code == "file_exists"  # type: ignore[union-attr]


async def test_copy_move_delete_list_search(make_engine: EngineFactory, workspace: Path) -> None:
    (workspace / "src").mkdir()
    (workspace / "src/a.py").write_text("import os\n# TODO: fix\n")
    (workspace / "src/b.txt").write_text("nothing\n")
    engine = make_engine()
    text = """
steps:
  - {id: copy, step_type: copy_file, parameters: {source: src/a.py, destination: backup/a.py}}
  - {id: move, step_type: move_file, depends_on: [copy], parameters: {source: backup/a.py, destination: backup/renamed.py}}
  - {id: list, step_type: list_directory, depends_on: [move], parameters: {path: ., recursive: true}}
  - {id: search, step_type: file_search, depends_on: [move], parameters: {path: ., pattern: "*.py", content: TODO}}
  - {id: delete, step_type: delete_file, depends_on: [list, search], parameters: {path: backup, recursive: true}}
"""
    result = await run_text(engine, text)
    names = {e["name"] for e in result.step("list").output["entries"]}  # type: ignore[index]
    assert {"src/a.py", "src/b.txt", "backup/renamed.py", "backup"} <= names
    matches = result.step("search").output["matches"]  # type: ignore[index]
    assert sorted(m["path"] for m in matches) == ["backup/renamed.py", "src/a.py"]
    assert all(m["line"] == 2 for m in matches)
    assert result.step("delete").output["deleted"] == 2  # type: ignore[index]
    assert not (workspace / "backup").exists()


async def test_parsers(make_engine: EngineFactory) -> None:
    assert out(await one(make_engine, "parse_yaml", content="a: [1, 2]\n"))["data"] == {"a": [1, 2]}
    xml = out(await one(make_engine, "parse_xml", content="<r><i id='1'>v</i></r>"))["data"]
    assert xml == {"tag": "r", "children": [{"tag": "i", "attributes": {"id": "1"}, "text": "v"}]}
    bad = await one(make_engine, "parse_json", content="{nope")
    assert bad.step("s").error.code == "parse_error"  # type: ignore[union-attr]
    bomb = '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><l>&b;</l>'
    assert (await one(make_engine, "parse_xml", content=bomb)).step("s").error.code == "parse_error"  # type: ignore[union-attr]
    tagged = await one(make_engine, "parse_yaml", content="!!python/object:os.system x")
    assert tagged.step("s").error.code == "parse_error"  # type: ignore[union-attr]


async def test_validate_schema_from_files(make_engine: EngineFactory, workspace: Path) -> None:
    (workspace / "schema.json").write_text(
        json.dumps(
            {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}
        )
    )
    (workspace / "good.json").write_text('{"id": 1}')
    (workspace / "bad.yaml").write_text("id: one\n")
    assert out(
        await one(make_engine, "validate_schema", schema_file="schema.json", data_file="good.json")
    )["valid"]
    bad = await one(make_engine, "validate_schema", schema_file="schema.json", data_file="bad.yaml")
    assert bad.step("s").error.code == "schema_mismatch"  # type: ignore[union-attr]
    soft = out(
        await one(
            make_engine, "validate_schema", schema={"type": "string"}, data=3, fail_on_invalid=False
        )
    )
    assert soft["valid"] is False and soft["errors"][0]["message"]


async def test_csv_process(make_engine: EngineFactory, workspace: Path) -> None:
    content = "name,age,city\nAda,36,London\nLinus,28,Helsinki\nGrace,45,NYC\n"
    output = out(
        await one(
            make_engine,
            "csv_process",
            content=content,
            filter=[{"column": "age", "op": "gt", "value": 30}],
            sort_by="age",
            descending=True,
            columns=["name", "age"],
            output_path="out/older.csv",
        )
    )
    assert output["rows"] == [{"name": "Grace", "age": "45"}, {"name": "Ada", "age": "36"}]
    assert output["statistics"]["age"]["mean"] == pytest.approx(40.5)
    assert (workspace / "out/older.csv").read_text().splitlines() == [
        "name,age",
        "Grace,45",
        "Ada,36",
    ]


async def test_log_message_and_noop(make_engine: EngineFactory) -> None:
    assert out(await one(make_engine, "log_message", message="hi", level="warning")) == {
        "message": "hi",
        "level": "warning",
    }
    assert out(await one(make_engine, "noop")) == {"message": None}


async def test_catalog_describes_every_action(make_engine: EngineFactory) -> None:
    engine = make_engine()
    for entry in engine.registry.catalog():
        assert entry["parameters"]["type"] == "object"
        assert entry["delivery"] in ("keyed", "idempotent", "unsafe")
        # the example validates against the action's own model
        engine.registry.get(entry["name"]).parse(entry["example"])


async def test_edit_file_in_the_specs_form(make_engine: EngineFactory, workspace: Path) -> None:
    """RustChain's ``edit_file {path, content, append, backup}``: content replaces the file,
    ``append: true`` appends, ``backup`` keeps the old text; ``replace`` without ``find`` is
    refused when the mission is validated, not when it runs."""
    from puraify.errors import ValidationError

    (workspace / "notes.txt").write_text("old\n")
    out(await one(make_engine, "edit_file", path="notes.txt", content="new\n", backup=True))
    assert (workspace / "notes.txt").read_text() == "new\n"
    assert (workspace / "notes.txt.bak").read_text() == "old\n"
    out(await one(make_engine, "edit_file", path="notes.txt", content="more\n", append=True))
    assert (workspace / "notes.txt").read_text() == "new\nmore\n"
    out(await one(make_engine, "edit_file", path="notes.txt", find="more", replace="less"))
    assert (workspace / "notes.txt").read_text() == "new\nless\n"
    with pytest.raises(ValidationError) as info:
        await one(make_engine, "edit_file", path="notes.txt", operation="replace", content="x")
    assert "needs `find`" in str(info.value)


EVIL = "(a+)+$"  # exponential for a backtracking engine on "aaaa...b"


async def test_user_regexes_match_in_linear_time(
    make_engine: EngineFactory, workspace: Path
) -> None:
    """F: the patterns that froze the engine (edit_file, validate_schema, file_search) finish
    at once: RE2 has no backtracking. A pattern RE2 refuses is invalid_parameters."""
    (workspace / "victim.txt").write_text("a" * 5000 + "b")
    edit = await one(
        make_engine, "edit_file", path="victim.txt", find=EVIL, replace="x", regex=True
    )
    assert out(edit)["replacements"] == 0
    schema = {"type": "string", "pattern": EVIL}
    checked = await one(
        make_engine, "validate_schema", data="a" * 5000 + "b", schema=schema, fail_on_invalid=False
    )
    assert out(checked)["valid"] is False
    props = {
        "type": "object",
        "patternProperties": {EVIL: {"type": "integer"}},
        "additionalProperties": False,
    }
    keyed = await one(
        make_engine,
        "validate_schema",
        data={"a" * 500 + "b": 1},
        schema=props,
        fail_on_invalid=False,
    )
    assert out(keyed)["valid"] is False
    found = await one(make_engine, "file_search", path=".", content=EVIL, regex=True)
    assert out(found)["matches"] == []
    refused = await one(
        make_engine, "edit_file", path="victim.txt", find="(?<=a)b", replace="x", regex=True
    )
    error = refused.step("s").error
    assert error is not None and error.code == "invalid_parameters" and "RE2" in error.message
