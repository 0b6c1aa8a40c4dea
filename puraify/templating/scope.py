"""What templates can read: the names of DESIGN.md §3, assembled per run.

``steps.<id>.output...`` and the short form ``<id>.output...``; ``context.<name>`` (mission
``variables`` overlaid by ``--var`` / request context) and each variable by its bare name (the
RustChain ``{{ name }}`` form); ``env.<NAME>`` (only names the settings allow); ``config``;
``secrets`` (from the vault, redacted everywhere); ``run.id``; ``timestamp`` (UTC, ISO 8601,
at render time). Built-in names win over step ids and variables of the same name.

A render sees only the names its template reads (``Scope.names``), so its cost does not grow
with the number of steps that finished before it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..mission.model import Mission

__all__ = ["BUILTIN_NAMES", "Scope"]

#: Names every template may read without declaring them (DESIGN.md §3).
BUILTIN_NAMES = frozenset(
    {"steps", "env", "context", "config", "secrets", "run", "timestamp", "mission", "user"}
)


class _Aliased(dict[str, Any]):
    """An output whose fields can also be read by their aliases; it holds, shows and serializes
    each field once."""

    __slots__ = ("_aliases",)

    def __init__(self, output: Mapping[str, Any], aliases: Mapping[str, str]) -> None:
        super().__init__(output)
        self._aliases = aliases

    def __missing__(self, key: str) -> Any:
        target = self._aliases.get(key)
        if target is None or target not in self:
            raise KeyError(key)
        return self[target]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (
            isinstance(key, str) and self._aliases.get(key) in self.keys()
        )


class Scope:
    """The mutable per-run scope; step outputs are added as steps succeed."""

    def __init__(
        self,
        *,
        run_id: str,
        mission: Mission,
        context: Mapping[str, Any],
        env: Mapping[str, str],
        secrets: Mapping[str, Any] | None = None,
    ) -> None:
        merged = {**mission.variables, **context}
        self._mission = mission
        self._steps: dict[str, dict[str, Any]] = {}
        self._short: dict[str, dict[str, Any]] = {}
        self._variables = {k: v for k, v in merged.items() if k not in BUILTIN_NAMES}
        # Templates cannot mutate what they read (immutable sandbox): no copies here.
        self._base: dict[str, Any] = {
            "steps": self._steps,
            "context": merged,
            "user": merged.get("user", {}),
            "env": env,
            "run": {"id": run_id},
            "mission": {"name": mission.display_name, "version": mission.version},
            "secrets": secrets or {},
        }

    def add_output(
        self, step_id: str, output: Mapping[str, Any], aliases: Mapping[str, str] | None = None
    ) -> None:
        """Make a finished step's output readable by later steps; ``aliases`` are other names
        of its fields (``response`` for an ``http`` step's ``body``)."""
        entry = {"output": _Aliased(output, aliases) if aliases else output}
        self._steps[step_id] = entry
        if step_id not in BUILTIN_NAMES:
            self._short[step_id] = entry

    def names(self, roots: Iterable[str]) -> dict[str, Any]:
        """The names ``roots`` (what a template reads) as a template sees them right now; a
        name that is not known yet is left out, so the template reports it as undefined."""
        out: dict[str, Any] = {}
        for name in roots:
            if name in BUILTIN_NAMES:
                out[name] = self._builtin(name)
            elif name in self._short:
                out[name] = self._short[name]
            elif name in self._variables:
                out[name] = self._variables[name]
        return out

    def _builtin(self, name: str) -> Any:
        if name == "timestamp":
            return datetime.now(UTC).isoformat(timespec="seconds")
        if name == "config":
            if "config" not in self._base:
                self._base["config"] = self._mission.config.model_dump()
            return self._base["config"]
        return self._base[name]
