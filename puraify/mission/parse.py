"""Safe YAML and JSON parsing with limits, duplicate-key refusal and source positions.

YAML goes through libyaml's event parser (``CSafeLoader`` when present) and is built from the
event stream here, never by composing a node graph: composition recurses in C and crashes on deep
nesting, and it keeps a mark for every node. The event walk checks every limit as it goes (size,
depth, aliases and their expanded size, tags, huge numbers, duplicate keys) and records the
line and column of the first few levels (enough to point at a step and its fields).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import LoadError
from .data import UNSAFE_CHARS

__all__ = ["ParseLimits", "Parsed", "SourceMap", "parse_document"]

Path_ = tuple[str | int, ...]
SourceMap = dict[Path_, tuple[int, int]]

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

_STD = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {f"{_STD}{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_MAX_NUMBER_DIGITS = 100
# The JSON escapes that may spell what no store can hold (a valid surrogate pair is one
# character once parsed).
_UNSAFE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
_MAP_DEPTH = 4  # how deep source positions are recorded


@dataclass(frozen=True)
class ParseLimits:
    """Input limits; defaults match ``Settings``."""

    max_bytes: int = 4 * 1024 * 1024
    max_depth: int = 64
    max_aliases: int = 100
    max_expanded_nodes: int = 2_000_000


@dataclass(frozen=True)
class Parsed:
    """A parsed document and where its parts start (``path -> (line, column)``, 1-based)."""

    data: Any
    positions: SourceMap
    fmt: str


def parse_document(
    text: str | bytes,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    limits: ParseLimits = ParseLimits(),
) -> Parsed:
    """Parse YAML or JSON text under ``limits``; raise ``LoadError`` with a position on failure.

    ``fmt`` is ``"yaml"``, ``"json"`` or ``None`` (decided by file extension, then content).
    """
    size = len(text)
    if size > limits.max_bytes:
        raise LoadError(
            f"document is {size} bytes; the limit is {limits.max_bytes}",
            code="document_too_large",
            file=filename,
        )
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise LoadError(
                f"document is not UTF-8 (byte {exc.start})", code="invalid_encoding", file=filename
            ) from None
    if fmt is None:
        if filename and filename.lower().endswith(".json"):
            fmt = "json"
        elif filename and filename.lower().endswith((".yaml", ".yml")):
            fmt = "yaml"
        else:
            fmt = "json" if text.lstrip()[:1] in ("{", "[") else "yaml"
    if fmt == "json":
        return Parsed(_parse_json(text, filename, limits), {}, "json")
    data, positions = _YamlBuilder(text, filename, limits).build()
    return Parsed(data, positions, "yaml")


# -- JSON ---------------------------------------------------------------------------------------


def _parse_json(text: str, filename: str | None, limits: ParseLimits) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                line, col = _locate_json_key(text, key)
                raise LoadError(
                    f"duplicate key {key!r}",
                    code="duplicate_key",
                    file=filename,
                    line=line,
                    column=col,
                    field=key,
                )
            out[key] = value
        return out

    def parse_int(literal: str) -> int:
        if len(literal.lstrip("-")) > _MAX_NUMBER_DIGITS:
            raise _NumberTooLarge(literal, f"number with more than {_MAX_NUMBER_DIGITS} digits")
        return int(literal)

    def parse_float(literal: str) -> float:
        number = float(literal)
        if not math.isfinite(number):  # 1e999
            raise _NumberTooLarge(literal, f"{literal[:40]} is too large for a number")
        return number

    def parse_constant(literal: str) -> float:  # NaN, Infinity: Python's, not JSON's
        raise _NotJson(literal)

    try:
        data = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_int=parse_int,
            parse_float=parse_float,
            parse_constant=parse_constant,
        )
    except _NumberTooLarge as exc:
        line, col = _locate(text, text.find(exc.args[0]))
        raise LoadError(
            exc.args[1], code="number_too_large", file=filename, line=line, column=col
        ) from None
    except _NotJson as exc:
        line, col = _locate(text, text.find(exc.args[0]))
        raise LoadError(
            f"invalid JSON: {exc.args[0]} is not a JSON number",
            code="invalid_number",
            file=filename,
            line=line,
            column=col,
        ) from None
    except json.JSONDecodeError as exc:
        raise LoadError(
            f"invalid JSON: {exc.msg}",
            code="json_syntax",
            file=filename,
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:
        raise LoadError(
            f"document nests deeper than {limits.max_depth} levels",
            code="document_too_deep",
            file=filename,
            line=1,
            column=1,
        ) from None
    if type(data) is dict or type(data) is list:
        _check_depth(data, limits.max_depth, filename)
    escape = _UNSAFE_ESCAPE.search(text)  # only an escape can spell them in JSON text
    if escape is not None and _holds_unsafe_text(data):
        line, col = _locate(text, escape.start())
        raise LoadError(
            "a string holds a NUL character or a lone surrogate, which no run can store",
            code="invalid_encoding",
            file=filename,
            line=line,
            column=col,
        )
    return data


def _holds_unsafe_text(data: Any) -> bool:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if UNSAFE_CHARS.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


class _NumberTooLarge(ValueError):
    pass


class _NotJson(ValueError):
    pass


def _locate(text: str, offset: int) -> tuple[int | None, int | None]:
    if offset < 0:
        return None, None
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _locate_json_key(text: str, key: str) -> tuple[int | None, int | None]:
    # The hook has no position; the duplicate is the last occurrence of the key seen so far.
    matches = list(re.finditer(re.escape(json.dumps(key)) + r"\s*:", text))
    if len(matches) >= 2:
        return _locate(text, matches[1].start())
    return None, None


def _check_depth(data: Any, max_depth: int, filename: str | None) -> None:
    # Only containers are pushed: scalars are most of a document and need no visit.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > max_depth:
            raise LoadError(
                f"document nests deeper than {max_depth} levels",
                code="document_too_deep",
                file=filename,
            )
        children = value.values() if type(value) is dict else value
        stack.extend((c, depth + 1) for c in children if type(c) is dict or type(c) is list)


# -- YAML ---------------------------------------------------------------------------------------


class _Frame:
    __slots__ = ("anchor", "container", "key", "key_mark", "merges", "nodes", "path")

    def __init__(self, container: dict[Any, Any] | list[Any], path: Path_, anchor: str | None):
        self.container = container
        self.path = path
        self.anchor = anchor
        self.key: Any = _NO_KEY
        self.key_mark: Any = None
        self.nodes = 1  # expanded node count of this collection
        self.merges: list[Any] = []


_NO_KEY = object()


class _YamlBuilder:
    def __init__(self, text: str, filename: str | None, limits: ParseLimits) -> None:
        self.text = text
        self.filename = filename
        self.limits = limits
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.aliases = 0
        self.expanded = 0
        self.positions: SourceMap = {}
        self.constructor = yaml.SafeLoader("")

    def error(self, message: str, code: str, mark: Any) -> LoadError:
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        return LoadError(message, code=code, file=self.filename, line=line, column=col)

    def build(self) -> tuple[Any, SourceMap]:
        loader = _Loader(self.text)
        try:
            return self._walk(loader.get_event), self.positions
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            if "nesting depth" in str(exc.problem):
                # libyaml (PyYAML >= 6.0.3) has its own depth limit, which can be reached
                # before ours: the same document is refused with the same code either way
                raise self.error(
                    f"document nests deeper than {self.limits.max_depth} levels",
                    "document_too_deep",
                    mark,
                ) from None
            raise self.error(
                f"invalid YAML: {exc.problem or exc.context}", "yaml_syntax", mark
            ) from None
        except yaml.YAMLError as exc:
            raise LoadError(
                f"invalid YAML: {exc}", code="yaml_syntax", file=self.filename
            ) from None
        finally:
            loader.dispose()

    def _walk(self, next_event: Callable[[], Any]) -> Any:
        stack: list[_Frame] = []
        root: Any = None
        documents = 0
        while True:
            event = next_event()
            kind = type(event)
            if kind is yaml.StreamEndEvent:
                break
            if kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise self.error(
                        "a mission file holds exactly one YAML document",
                        "yaml_syntax",
                        event.start_mark,
                    )
                continue
            if kind in (yaml.StreamStartEvent, yaml.DocumentEndEvent):
                continue
            if kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                frame = stack.pop()
                if frame.merges:
                    self._apply_merges(frame)
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (frame.container, frame.nodes)
                value, nodes = frame.container, frame.nodes
                mark = None
            elif kind is yaml.ScalarEvent:
                value, nodes, mark = self._scalar(event), 1, event.start_mark
                if event.anchor is not None:
                    self.anchors[event.anchor] = (value, 1)
            elif kind is yaml.AliasEvent:
                if event.anchor not in self.anchors:
                    raise self.error(
                        f"unknown alias *{event.anchor}", "yaml_syntax", event.start_mark
                    )
                self.aliases += 1
                if self.aliases > self.limits.max_aliases:
                    raise self.error(
                        f"more than {self.limits.max_aliases} aliases",
                        "too_many_aliases",
                        event.start_mark,
                    )
                value, nodes = self.anchors[event.anchor]
                mark = event.start_mark
                # only what aliases repeat counts here: the document's own nodes are bounded by
                # its size, and counting them (once per enclosing collection) refused big plain
                # documents as alias bombs
                self.expanded += nodes
                if self.expanded > self.limits.max_expanded_nodes:
                    raise self.error(
                        "aliases expand the document past its size limit",
                        "too_many_aliases",
                        mark,
                    )
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                self._check_tag(event, "map" if kind is yaml.MappingStartEvent else "seq")
                parent_path = stack[-1].path if stack else ()
                path = parent_path
                if stack:
                    path = self._child_path(stack[-1])
                if len(stack) >= self.limits.max_depth:
                    raise self.error(
                        f"document nests deeper than {self.limits.max_depth} levels",
                        "document_too_deep",
                        event.start_mark,
                    )
                if len(path) <= _MAP_DEPTH and stack:
                    self._record(stack[-1], path, event.start_mark)
                container: dict[Any, Any] | list[Any] = {} if kind is yaml.MappingStartEvent else []
                stack.append(_Frame(container, path, event.anchor))
                continue
            else:  # pragma: no cover - libyaml emits nothing else
                continue

            if not stack:
                root = value
                continue
            self._add(stack[-1], value, nodes, mark)
        return root

    def _child_path(self, parent: _Frame) -> Path_:
        if isinstance(parent.container, list):
            return (*parent.path, len(parent.container))
        key = parent.key
        return (*parent.path, key if isinstance(key, str | int) else str(key))

    def _record(self, parent: _Frame, path: Path_, mark: Any) -> None:
        if isinstance(parent.container, dict) and parent.key_mark is not None:
            mark = parent.key_mark
        self.positions[path] = (mark.line + 1, mark.column + 1)

    def _add(self, frame: _Frame, value: Any, nodes: int, mark: Any) -> None:
        frame.nodes += nodes
        container = frame.container
        if isinstance(container, list):
            if mark is not None and len(frame.path) < _MAP_DEPTH:
                self.positions[(*frame.path, len(container))] = (mark.line + 1, mark.column + 1)
            container.append(value)
            return
        if frame.key is _NO_KEY:
            if isinstance(value, dict | list):
                raise self.error("mapping keys must be scalars", "yaml_syntax", mark)
            frame.key, frame.key_mark = value, mark
            return
        key, key_mark = frame.key, frame.key_mark
        frame.key, frame.key_mark = _NO_KEY, None
        if key == "<<" and isinstance(value, dict | list):
            frame.merges.append(value)
            return
        if key in container:
            raise self.error(f"duplicate key {key!r}", "duplicate_key", key_mark)
        container[key] = value
        if key_mark is not None and len(frame.path) < _MAP_DEPTH:
            self.positions[(*frame.path, key if isinstance(key, str | int) else str(key))] = (
                key_mark.line + 1,
                key_mark.column + 1,
            )

    def _apply_merges(self, frame: _Frame) -> None:
        container = frame.container
        assert isinstance(container, dict)
        for merge in frame.merges:
            sources = merge if isinstance(merge, list) else [merge]
            for source in sources:
                if not isinstance(source, dict):
                    raise self.error("merge key << needs a mapping", "yaml_syntax", None)
                for key, value in source.items():
                    container.setdefault(key, value)

    def _check_tag(self, event: Any, default: str) -> None:
        tag = event.tag
        if tag is None or tag in ("!", f"{_STD}{default}"):
            return
        raise self.error(f"tag {tag!r} is not allowed", "forbidden_tag", event.start_mark)

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        value: str = event.value
        if UNSAFE_CHARS.search(value):  # "\0", "\x00", "\ud800" in a quoted string
            raise self.error(
                "a string holds a NUL character or a lone surrogate, which no run can store",
                "invalid_encoding",
                event.start_mark,
            )
        if tag is None or tag == "!":
            if not event.implicit[0]:
                return value  # quoted
            tag = self.constructor.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
        elif tag not in _ALLOWED_TAGS:
            raise self.error(f"tag {tag!r} is not allowed", "forbidden_tag", event.start_mark)
        if tag == f"{_STD}str" or tag == f"{_STD}timestamp":
            return value  # timestamps stay strings: mission data must be JSON-compatible
        if tag == f"{_STD}int" and len(value.lstrip("+-")) > _MAX_NUMBER_DIGITS:
            raise self.error(
                f"number with more than {_MAX_NUMBER_DIGITS} digits",
                "number_too_large",
                event.start_mark,
            )
        if tag not in _ALLOWED_TAGS:
            return value
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        try:
            built = self.constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, KeyError, TypeError, OverflowError):
            # PyYAML's constructors raise what they like (`!!bool maybe` is a KeyError)
            raise self.error(
                f"{value[:40]!r} is not a valid {tag[len(_STD) :]}", "yaml_syntax", event.start_mark
            ) from None
        if isinstance(built, float) and not math.isfinite(built):
            # `.nan`, `.inf`, 1e999: no JSON spelling, so no run could store or answer them
            raise self.error(
                f"{value[:40]!r} is not a finite number (mission data must be JSON)",
                "number_too_large" if not math.isnan(built) else "invalid_number",
                event.start_mark,
            )
        return built
