"""SEC-06 and loader limits: hostile YAML/JSON gets a structured error with a position, fast."""

from __future__ import annotations

import json
import time

import pytest

from puraify.errors import LoadError
from puraify.mission.parse import ParseLimits, parse_document


def _fails(text: str | bytes, code: str, **kw: object) -> LoadError:
    start = time.monotonic()
    with pytest.raises(LoadError) as info:
        parse_document(text, **kw)  # type: ignore[arg-type]
    assert time.monotonic() - start < 1.0, "hostile input must be refused in under 1 s"
    assert info.value.code == code, info.value.to_dict()
    return info.value


def test_sec06_python_tag_refused_with_position() -> None:
    err = _fails("steps:\n  - !!python/object/apply:os.system ['echo pwned']\n", "forbidden_tag")
    assert (err.line, err.column) == (2, 5)


def test_sec06_custom_and_set_tags_refused() -> None:
    _fails("a: !custom x\n", "forbidden_tag")
    _fails("a: !!set {x, y}\n", "forbidden_tag")


def test_sec06_billion_laughs_alias_bomb() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i in range(1, 10):
        prev, cur = chr(96 + i), chr(97 + i)
        bomb += f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]\n"
    err = _fails(bomb, "too_many_aliases")
    assert err.line is not None


def test_sec06_alias_count_limit() -> None:
    text = "a: &x 1\nb: [" + ", ".join(["*x"] * 101) + "]\n"
    _fails(text, "too_many_aliases")


@pytest.mark.parametrize("depth", [65, 10_000, 1_000_000])
def test_sec06_deep_yaml_nesting(depth: int) -> None:
    _fails(
        "[" * depth + "]" * depth,
        "document_too_deep",
        fmt="yaml",
        limits=ParseLimits(max_bytes=10_000_000),
    )


@pytest.mark.parametrize("depth", [65, 100_000])
def test_sec06_deep_json_nesting(depth: int) -> None:
    _fails(
        "[" * depth + "]" * depth,
        "document_too_deep",
        fmt="json",
        limits=ParseLimits(max_bytes=10_000_000),
    )


def test_sec06_huge_numbers() -> None:
    _fails("a: " + "9" * 5000 + "\n", "number_too_large")
    err = _fails('{"a": ' + "9" * 5000 + "}", "number_too_large")
    assert err.line == 1


def test_sec06_duplicate_keys_yaml_and_json() -> None:
    err = _fails("name: a\nsteps: []\nname: b\n", "duplicate_key")
    assert (err.line, err.column) == (3, 1)
    err = _fails('{"name": "a",\n "name": "b"}', "duplicate_key")
    assert err.line == 2


def test_sec06_oversize_document() -> None:
    _fails("a: " + "x" * 2000 + "\n", "document_too_large", limits=ParseLimits(max_bytes=1000))


def test_sec06_syntax_errors_have_positions() -> None:
    err = _fails("steps:\n  - id: [unclosed\n", "yaml_syntax")
    assert err.line is not None and err.column is not None
    err = _fails('{"steps": [}', "json_syntax", fmt="json")
    assert (err.line, err.column) == (1, 12)


def test_sec06_multiple_documents_refused() -> None:
    _fails("a: 1\n---\nb: 2\n", "yaml_syntax")


def test_sec06_not_utf8() -> None:
    _fails(b"a: \xff\xfe\n", "invalid_encoding")


def test_yaml_values_and_positions() -> None:
    parsed = parse_document(
        "a: 1\nb: [x, 'y', 3.5, true, null, 2024-01-01]\nbase: &base {k: v}\n"
        "merged:\n  <<: *base\n  z: 1\n"
    )
    assert parsed.data == {
        "a": 1,
        "b": ["x", "y", 3.5, True, None, "2024-01-01"],
        "base": {"k": "v"},
        "merged": {"z": 1, "k": "v"},
    }
    assert parsed.positions[("b",)] == (2, 1)
    assert parsed.positions[("merged", "z")] == (6, 3)


def test_json_roundtrip_and_detection() -> None:
    doc = {"steps": [{"id": "a", "step_type": "noop"}], "n": 1.5}
    assert parse_document(json.dumps(doc)).data == doc
    assert parse_document(json.dumps(doc)).fmt == "json"


def test_a_big_document_without_aliases_is_not_an_alias_bomb() -> None:
    """Only what aliases repeat counts against the expansion limit."""
    steps = "".join(
        f"  - {{id: s{i}, step_type: noop, parameters: {{a: 1, b: [1, 2]}}}}\n"
        for i in range(5_000)
    )
    parsed = parse_document(
        "steps:\n" + steps, fmt="yaml", limits=ParseLimits(max_expanded_nodes=50_000)
    )
    assert len(parsed.data["steps"]) == 5_000
