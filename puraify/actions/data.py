"""Data steps: ``parse_json``, ``parse_yaml``, ``parse_xml`` (defusedxml), ``validate_schema``
(real JSON Schema via ``jsonschema``) and ``csv_process``.

Each takes its input inline (``content`` / ``data``) or from a workspace file (``path``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import statistics
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from ..errors import ActionError, LoadError
from ..mission.parse import ParseLimits, parse_document
from .base import Action, ActionContext
from .base import Output as OutputModel
from .base import Params as ParamsModel
from .regex import user_regex

if TYPE_CHECKING:  # the XML modules load with the first parse_xml step (~35 ms otherwise)
    from xml.etree.ElementTree import Element

__all__ = ["CsvProcess", "ParseJson", "ParseXml", "ParseYaml", "ValidateSchema"]

_FILE = AliasChoices("path", "file", "file_path", "input_file")


class _Source(ParamsModel):
    content: str | None = Field(
        default=None, validation_alias=AliasChoices("content", "input", "text", "data")
    )
    path: str | None = Field(default=None, validation_alias=_FILE)

    @model_validator(mode="after")
    def _one_source(self) -> _Source:
        if (self.content is None) == (self.path is None):
            raise ValueError("give exactly one of `content` or `path`")
        return self


def _text(params: Any, ctx: ActionContext) -> str:
    if params.content is not None:
        return str(params.content)
    cap = ctx.limit("file_max_read_bytes", 10 * 1024 * 1024)
    try:
        with ctx.workspace.open(params.path, "r") as fh:
            data = fh.read(cap + 1)
    except FileNotFoundError:
        raise ActionError(
            f"{params.path!r} does not exist in the workspace", code="file_not_found"
        ) from None
    if len(data) > cap:
        raise ActionError(f"{params.path!r} is larger than {cap} bytes", code="file_too_large")
    return data.decode("utf-8", "replace")


class _Parsed(OutputModel):
    data: Any


class ParseJson(Action):
    """Parse JSON text into data other steps can read (``{{ step.output.data.key }}``)."""

    Params = _Source
    Output = _Parsed
    name = "parse_json"
    sandboxed: ClassVar = True
    description = "Parse JSON from `content` or a workspace file."
    example: ClassVar = {"content": '{"items": [1, 2, 3]}'}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        return {"data": _load(_text(params, ctx), "json", ctx)}


class ParseYaml(Action):
    """Parse YAML (safe: no tags, alias and depth limits) into data."""

    Params = _Source
    Output = _Parsed
    name = "parse_yaml"
    sandboxed: ClassVar = True
    description = "Parse YAML safely from `content` or a workspace file."
    example: ClassVar = {"content": "name: demo\nitems: [1, 2]\n"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        return {"data": _load(_text(params, ctx), "yaml", ctx)}


def _load(text: str, fmt: str, ctx: ActionContext) -> Any:
    limits = ParseLimits(max_bytes=ctx.limit("file_max_read_bytes", 10 * 1024 * 1024))
    try:
        return parse_document(text, fmt=fmt, limits=limits).data
    except LoadError as exc:
        where = f" (line {exc.line}, column {exc.column})" if exc.line else ""
        raise ActionError(
            f"invalid {fmt.upper()}: {exc.message}{where}", code="parse_error"
        ) from None


def _element(el: Element, depth: int = 0) -> dict[str, Any]:
    if depth > 64:
        raise ActionError("XML nests deeper than 64 levels", code="parse_error")
    node: dict[str, Any] = {"tag": el.tag}
    if el.attrib:
        node["attributes"] = dict(el.attrib)
    text = (el.text or "").strip()
    if text:
        node["text"] = text
    children = [_element(c, depth + 1) for c in el]
    if children:
        node["children"] = children
    return node


class ParseXml(Action):
    """Parse XML with defusedxml (no entity expansion, no external DTDs)."""

    Params = _Source
    Output = _Parsed
    name = "parse_xml"
    sandboxed: ClassVar = True
    description = "Parse XML safely into {tag, attributes, text, children}."
    example: ClassVar = {"content": "<root><item id='1'>a</item></root>"}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        from xml.etree.ElementTree import ParseError

        import defusedxml.ElementTree as SafeET
        from defusedxml import DefusedXmlException

        try:
            root = SafeET.fromstring(_text(params, ctx), forbid_dtd=True)
        except (ParseError, DefusedXmlException) as exc:
            raise ActionError(f"invalid or unsafe XML: {exc}", code="parse_error") from None
        return {"data": _element(root)}


class ValidateSchema(Action):
    """Validate data against a JSON Schema (inline or from workspace files)."""

    class Params(ParamsModel):
        data: Any = None
        data_file: str | None = Field(
            default=None, validation_alias=AliasChoices("data_file", "input_file")
        )
        json_schema: Any = Field(
            default=None, validation_alias=AliasChoices("schema", "json_schema")
        )
        schema_file: str | None = None
        fail_on_invalid: bool = True

        @model_validator(mode="after")
        def _sources(self) -> ValidateSchema.Params:
            if (self.json_schema is None) == (self.schema_file is None):
                raise ValueError("give exactly one of `schema` or `schema_file`")
            if self.data is not None and self.data_file is not None:
                raise ValueError("give `data` or `data_file`, not both")
            return self

    class Output(OutputModel):
        valid: bool
        errors: list[dict[str, Any]]

    name = "validate_schema"
    sandboxed: ClassVar = True
    description = "Validate data against a JSON Schema; fails the step when invalid."
    example: ClassVar = {"data": {"id": 1}, "schema": {"type": "object", "required": ["id"]}}

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        schema = params.json_schema
        if params.schema_file:
            schema = _load(_text(_FileRef(path=params.schema_file), ctx), "json", ctx)
        data = params.data
        if params.data_file:
            fmt = "yaml" if params.data_file.endswith((".yaml", ".yml")) else "json"
            data = _load(_text(_FileRef(path=params.data_file), ctx), fmt, ctx)
        if isinstance(data, str) and params.data_file is None:
            with contextlib.suppress(ValueError):
                data = json.loads(data)
        import jsonschema  # imported on first use: ~70 ms that a CLI run should not pay
        import referencing
        import referencing.exceptions

        try:
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ActionError(
                f"the schema itself is invalid: {exc.message}", code="invalid_schema"
            ) from None
        cls = _linear_patterns(cls)
        # Only references inside the schema resolve: jsonschema would otherwise fetch an
        # http(s):// or file:// `$ref` itself, outside the SSRF guard and the workspace jail.
        registry: Any = referencing.Registry(retrieve=_no_remote)  # type: ignore[call-arg]
        validator = cls(schema, format_checker=cls.FORMAT_CHECKER, registry=registry)
        try:
            found = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
        except referencing.exceptions.Unresolvable as exc:
            raise ActionError(
                f"the schema refers to {getattr(exc, 'ref', '?')!r}, which it does not contain; "
                "references to other documents are not fetched",
                code="invalid_schema",
            ) from None
        errors = [
            {"path": "/".join(str(p) for p in e.absolute_path), "message": e.message}
            for e in found[:100]
        ]
        if errors and params.fail_on_invalid:
            raise ActionError(
                f"data does not match the schema: {errors[0]['path'] or '(root)'}: {errors[0]['message']}",
                code="schema_mismatch",
                details={"errors": errors},
            )
        return {"valid": not errors, "errors": errors}


def _linear_patterns(cls: Any) -> Any:
    """``cls`` with the keywords that match patterns (``pattern``, ``patternProperties``,
    ``additionalProperties`` next to them) matching in linear time (RE2), as jsonschema's own
    do with ``re``."""
    import jsonschema

    def search(pattern: str, text: str) -> bool:
        return user_regex(pattern, field="schema").search(text) is not None

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not search(patrn, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        for patrn, subschema in patterns.items():
            for key, value in instance.items():
                if search(patrn, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=patrn)

    def additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Any:
        if not validator.is_type(instance, "object"):
            return
        properties = schema.get("properties", {})
        patterns = list(schema.get("patternProperties", {}))
        extras = [
            key
            for key in instance
            if key not in properties and not any(search(p, key) for p in patterns)
        ]
        if validator.is_type(extra, "object"):
            for key in extras:
                yield from validator.descend(instance[key], extra, path=key)
        elif not extra and extras:
            names = ", ".join(repr(k) for k in sorted(extras, key=str))
            yield jsonschema.ValidationError(f"additional properties are not allowed ({names})")

    extend: Any = jsonschema.validators.extend  # untyped in jsonschema's stubs
    return extend(
        cls,
        {
            "pattern": pattern,
            "patternProperties": pattern_properties,
            "additionalProperties": additional_properties,
        },
    )


def _no_remote(uri: str) -> Any:
    import referencing.exceptions

    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


class _FileRef(BaseModel):
    model_config = ConfigDict(frozen=True)
    content: str | None = None
    path: str


class _Filter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    column: str
    op: Literal["eq", "ne", "gt", "ge", "lt", "le", "contains", "startswith", "in"] = "eq"
    value: Any


class CsvProcess(Action):
    """Parse CSV, then filter, select, sort, limit, compute statistics and optionally write."""

    class Params(_Source):
        delimiter: str = Field(default=",", min_length=1, max_length=1)
        has_header: bool = True
        columns: list[str] | None = Field(
            default=None, validation_alias=AliasChoices("columns", "select")
        )
        filter: list[_Filter] = Field(
            default_factory=list, validation_alias=AliasChoices("filter", "filters", "where")
        )
        sort_by: str | None = None
        descending: bool = False
        limit: int | None = Field(default=None, ge=0)
        statistics: bool = True
        output_path: str | None = Field(
            default=None, validation_alias=AliasChoices("output_path", "output_file", "output")
        )

    class Output(OutputModel):
        columns: list[str]
        rows: list[dict[str, Any]]
        row_count: int
        statistics: dict[str, dict[str, float]]
        output_path: str | None

    name = "csv_process"
    sandboxed: ClassVar = True
    aliases = ("process_csv",)
    description = "Parse and transform CSV (filter, select, sort, limit, statistics, write)."
    example: ClassVar = {
        "content": "name,age\nAda,36\nLinus,28\n",
        "filter": [{"column": "age", "op": "gt", "value": 30}],
        "sort_by": "age",
    }

    async def run(self, params: Any, ctx: ActionContext) -> dict[str, Any]:
        text = _text(params, ctx)
        reader = csv.reader(io.StringIO(text), delimiter=params.delimiter)
        try:
            table = [row for row in reader if row]
        except csv.Error as exc:
            raise ActionError(f"invalid CSV: {exc}", code="parse_error") from None
        if not table:
            header: list[str] = []
            body: list[list[str]] = []
        elif params.has_header:
            header, body = table[0], table[1:]
        else:
            header = [f"column{i + 1}" for i in range(max(len(r) for r in table))]
            body = table
        rows = [{h: (r[i] if i < len(r) else "") for i, h in enumerate(header)} for r in body]
        for f in params.filter:
            if f.column not in header:
                raise ActionError(
                    f"filter column {f.column!r} is not in the CSV", code="invalid_parameters"
                )
            rows = [r for r in rows if _match(r[f.column], f.op, f.value)]
        if params.sort_by is not None:
            if params.sort_by not in header:
                raise ActionError(
                    f"sort column {params.sort_by!r} is not in the CSV", code="invalid_parameters"
                )
            rows.sort(key=lambda r: _sort_key(r[params.sort_by]), reverse=params.descending)
        if params.limit is not None:
            rows = rows[: params.limit]
        columns = header
        if params.columns:
            missing = [c for c in params.columns if c not in header]
            if missing:
                raise ActionError(
                    f"columns {missing} are not in the CSV", code="invalid_parameters"
                )
            columns = list(params.columns)
            rows = [{c: r[c] for c in columns} for r in rows]
        stats = _statistics(rows, columns) if params.statistics else {}
        out_path = None
        if params.output_path:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=columns, delimiter=params.delimiter)
            writer.writeheader()
            writer.writerows(rows)
            with ctx.workspace.open(params.output_path, "w", create_dirs=True) as fh:
                fh.write(buf.getvalue().encode())
            out_path = ctx.workspace.display(params.output_path)
        return {
            "columns": columns,
            "rows": rows,
            "row_count": len(rows),
            "statistics": stats,
            "output_path": out_path,
        }


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _sort_key(value: str) -> tuple[int, float, str]:
    num = _number(value)
    return (0, num, "") if num is not None else (1, 0.0, value)


def _match(cell: str, op: str, value: Any) -> bool:
    if op == "contains":
        return str(value) in cell
    if op == "startswith":
        return cell.startswith(str(value))
    if op == "in":
        return cell in [str(v) for v in (value if isinstance(value, list) else [value])]
    left: Any = cell
    right: Any = value
    a, b = _number(cell), _number(value)
    if a is not None and b is not None:
        left, right = a, b
    else:
        right = str(value)
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if op == "gt":
        return bool(left > right)
    if op == "ge":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    return bool(left <= right)


def _statistics(rows: list[dict[str, Any]], columns: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for c in columns:
        nums = [n for n in (_number(r[c]) for r in rows) if n is not None]
        if nums and len(nums) == len(rows):
            out[c] = {
                "count": len(nums),
                "sum": sum(nums),
                "min": min(nums),
                "max": max(nums),
                "mean": statistics.fmean(nums),
                "median": statistics.median(nums),
            }
    return out
