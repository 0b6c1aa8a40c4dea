"""Turn a YAML or JSON document into a ``Mission``, with RustChain compatibility and warnings.

Compatibility (DESIGN.md §3): ``name`` may be omitted; PascalCase step types (``CreateFile``)
become snake_case; ``max_parallel_steps`` / ``parallel_limit`` alias ``max_concurrent_steps``.
Unknown keys are warnings with a "did you mean" (errors when ``strict``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from ..errors import Issue, LoadError, ValidationError
from .model import Mission, MissionConfig, MissionStep, RetryPolicy
from .parse import ParseLimits, SourceMap, parse_document

__all__ = ["LoadedMission", "load_mission", "mission_from_data", "normalize_step_type"]

_PASCAL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _known(model: type[pydantic.BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        alias = info.validation_alias
        if isinstance(alias, pydantic.AliasChoices):
            names.update(a for a in alias.choices if isinstance(a, str))
    return names


_MISSION_KEYS = _known(Mission)
_STEP_KEYS = _known(MissionStep)
_CONFIG_KEYS = _known(MissionConfig)
_RETRY_KEYS = _known(RetryPolicy)


@dataclass(frozen=True)
class LoadedMission:
    """A mission plus what loading learned: warnings, source positions and the file name."""

    mission: Mission
    warnings: tuple[Issue, ...]
    positions: SourceMap
    file: str | None
    source: str

    def position(self, *path: str | int) -> tuple[int | None, int | None]:
        """Line and column of the deepest recorded prefix of ``path``."""
        for end in range(len(path), 0, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos is not None:
                return pos
        return None, None


def normalize_step_type(step_type: str) -> str:
    """``CreateFile`` -> ``create_file``; names already in snake_case are unchanged."""
    if step_type[:1].isupper():
        return _PASCAL.sub("_", step_type).lower()
    return step_type


def load_mission(
    source: str | bytes | Path,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    strict: bool = False,
    limits: ParseLimits = ParseLimits(),
) -> LoadedMission:
    """Load a mission from a path or from text; raise ``LoadError`` / ``ValidationError``."""
    if isinstance(source, Path):
        filename = filename or str(source)
        try:
            size = source.stat().st_size
            if size > limits.max_bytes:
                raise LoadError(
                    f"document is {size} bytes; the limit is {limits.max_bytes}",
                    code="document_too_large",
                    file=filename,
                )
            raw: str | bytes = source.read_bytes()
        except OSError as exc:
            raise LoadError(
                f"cannot read mission file: {exc.strerror}", code="file_not_found", file=filename
            ) from None
    else:
        raw = source
    parsed = parse_document(raw, filename=filename, fmt=fmt, limits=limits)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return mission_from_data(
        parsed.data, positions=parsed.positions, filename=filename, strict=strict, source=text
    )


def mission_from_data(
    data: Any,
    *,
    positions: SourceMap | None = None,
    filename: str | None = None,
    strict: bool = False,
    source: str = "",
) -> LoadedMission:
    """Build a ``Mission`` from parsed data (a dict), collecting unknown-key warnings."""
    positions = positions or {}

    def at(*path: str | int) -> tuple[int | None, int | None]:
        for end in range(len(path), 0, -1):
            pos = positions.get(tuple(path[:end]))
            if pos is not None:
                return pos
        return None, None

    if not isinstance(data, dict):
        raise LoadError(
            "a mission is a mapping with at least `steps`",
            code="invalid_mission",
            file=filename,
            line=1,
            column=1,
        )
    issues: list[Issue] = []
    severity = "error" if strict else "warning"

    def unknown(
        keys: Iterable[Any],
        known: set[str],
        where: str,
        *path: str | int,
        near_misses_only: bool = False,
    ) -> None:
        for key in keys:
            if key in known:
                continue
            guess = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
            if near_misses_only and not guess:
                continue
            hint = f"did you mean {guess[0]!r}?" if guess else None
            line, col = at(*path, str(key))
            issues.append(
                Issue(
                    "unknown_key",
                    f"unknown key {key!r} in {where}" + (f"; {hint}" if hint else ""),
                    severity=severity,
                    line=line,
                    column=col,
                    hint=hint,
                    field=".".join(str(p) for p in (*path, key)),
                    step_id=_step_id(data, path),
                )
            )

    unknown(data.keys(), _MISSION_KEYS, "mission")
    if "steps" not in data:
        raise LoadError(
            "a mission needs `steps`", code="invalid_mission", file=filename, line=1, column=1
        )
    steps = data["steps"]
    if not isinstance(steps, list):
        line, col = at("steps")
        raise LoadError(
            "`steps` must be a list", code="invalid_mission", file=filename, line=line, column=col
        )
    config = data.get("config")
    if isinstance(config, dict):
        # a key of the mission's own (`{{ config.api_base }}`) is kept; one that looks like a
        # misspelt setting is reported
        unknown(config.keys(), _CONFIG_KEYS, "config", "config", near_misses_only=True)

    normalized_steps: list[Any] = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            normalized_steps.append(step)
            continue
        unknown(step.keys(), _STEP_KEYS, f"step {step.get('id', index)!r}", "steps", index)
        retry = step.get("retry")
        if isinstance(retry, dict):
            unknown(retry.keys(), _RETRY_KEYS, "retry", "steps", index, "retry")
        step_type = step.get("step_type")
        if isinstance(step_type, str):
            step = {**step, "step_type": normalize_step_type(step_type)}
        normalized_steps.append(step)
    known_data = {k: v for k, v in data.items() if k in _MISSION_KEYS}
    known_data["steps"] = normalized_steps

    try:
        mission = Mission.model_validate(known_data)
    except pydantic.ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            line, col = at(*loc)
            issues.append(
                Issue(
                    "invalid_field",
                    f"{_loc_text(loc)}: {err['msg']}",
                    line=line,
                    column=col,
                    field=_loc_text(loc),
                    step_id=_step_id(data, loc),
                )
            )
        raise ValidationError(issues, file=filename) from None
    if strict and any(i.severity == "error" for i in issues):
        raise ValidationError(issues, file=filename)
    return LoadedMission(mission, tuple(issues), positions, filename, source)


def _loc_text(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _step_id(data: Mapping[str, Any], loc: tuple[Any, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps")
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            sid = steps[loc[1]].get("id")
            return str(sid) if sid is not None else None
    return None
