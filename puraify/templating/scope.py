"""What templates can read: the names of DESIGN.md §3, assembled per run.

``steps.<id>.output...`` and the short form ``<id>.output...``; ``context.<name>`` (mission
``variables`` overlaid by ``--var`` / request context) and each variable by its bare name (the
RustChain ``{{ name }}`` form); ``env.<NAME>`` (only names the settings allow); ``config``;
``secrets`` (from the vault, redacted everywhere); ``run.id``; ``timestamp`` (UTC, ISO 8601,
at render time). Built-in names win over step ids and variables of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..mission.model import Mission
from ..mission.validate import BUILTIN_NAMES

__all__ = ["Scope"]


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
        self._steps: dict[str, dict[str, Any]] = {}
        self._short: dict[str, dict[str, Any]] = {}
        self._variables = {k: v for k, v in merged.items() if k not in BUILTIN_NAMES}
        self._base: dict[str, Any] = {
            "steps": self._steps,
            "context": merged,
            "user": merged.get("user", {}),
            "config": mission.config.model_dump(),
            "env": dict(env),
            "run": {"id": run_id},
            "mission": {"name": mission.display_name, "version": mission.version},
            "secrets": dict(secrets or {}),
        }

    def add_output(self, step_id: str, output: Mapping[str, Any]) -> None:
        """Make a successful step's output readable by later steps."""
        entry = {"output": output}
        self._steps[step_id] = entry
        if step_id not in BUILTIN_NAMES:
            self._short[step_id] = entry

    def for_render(self) -> dict[str, Any]:
        """The names a template sees right now."""
        return {
            **self._variables,
            **self._short,
            **self._base,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        }
