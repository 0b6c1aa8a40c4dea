"""The action registry: a plain dict from names and aliases to action instances.

Third parties add actions through the entry-point group ``puraify.actions`` (each entry point
names an ``Action`` subclass). Step types are matched exactly, then case-insensitively.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import pydantic

from .base import Action

__all__ = ["ActionRegistry"]


@lru_cache(maxsize=512)
def _field_names(model: type[pydantic.BaseModel]) -> dict[str, str]:
    """Every accepted parameter name (field names and their aliases) -> field name."""
    field_of: dict[str, str] = {}
    for fname, info in model.model_fields.items():
        field_of[fname] = fname
        alias = info.validation_alias
        if isinstance(alias, pydantic.AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    field_of[choice] = fname
        elif isinstance(alias, str):
            field_of[alias] = fname
    return field_of


class ActionRegistry:
    """Maps step types (canonical names and aliases) to actions; satisfies ``StepCatalog``."""

    def __init__(self, actions: Iterable[Action] = ()) -> None:
        self._by_name: dict[str, Action] = {}
        self._canonical: dict[str, str] = {}
        for action in actions:
            self.register(action)

    def register(self, action: Action) -> None:
        """Add an action under its name and aliases; a name may be registered only once."""
        for name in (action.name, *action.aliases):
            key = name.lower()
            if key in self._canonical and self._canonical[key] != action.name:
                raise ValueError(f"step type {name!r} is already registered")
            self._canonical[key] = action.name
        self._by_name[action.name] = action

    def load_entry_points(self, group: str = "puraify.actions") -> None:
        """Register every action class published under ``group`` by installed packages."""
        for ep in entry_points(group=group):
            cls = ep.load()
            self.register(cls())

    def canonical(self, step_type: str) -> str | None:
        return self._canonical.get(step_type.lower())

    def get(self, step_type: str) -> Action:
        """The action for a step type or alias; ``KeyError`` if unknown."""
        name = self.canonical(step_type)
        if name is None:
            raise KeyError(step_type)
        return self._by_name[name]

    def names(self) -> list[str]:
        return sorted(self._canonical)

    def actions(self) -> list[Action]:
        return [self._by_name[n] for n in sorted(self._by_name)]

    def output_aliases(self) -> dict[str, Mapping[str, str]]:
        """Per action name, the other names templates may read its output fields by."""
        return {a.name: a.output_aliases for a in self.actions() if a.output_aliases}

    def parameter_names(self, step_type: str) -> dict[str, str]:
        """Every name a parameter of ``step_type`` is accepted under -> the parameter's name."""
        return dict(_field_names(self.get(step_type).Params))

    def catalog(self) -> list[dict[str, Any]]:
        return [a.describe() for a in self.actions()]

    def compile_parameters(
        self, step_type: str, parameters: Mapping[str, Any], templated: frozenset[str]
    ) -> tuple[list[tuple[str, str, str, str]], object | None]:
        """Problems with ``parameters`` as ``(severity, code, field, message)``, and, when no
        field is ``templated`` and they are valid, the parsed ``Params`` (``Action.parse``):
        the executor hands it to the action without validating it again."""
        action = self.get(step_type)
        field_of = _field_names(action.Params)
        problems: list[tuple[str, str, str, str]] = []
        for key in parameters:
            if key not in field_of:
                guess = difflib.get_close_matches(str(key), list(field_of), n=1, cutoff=0.6)
                problems.append(
                    (
                        "warning",
                        "unknown_parameter",
                        str(key),
                        "unknown parameter" + (f"; did you mean {guess[0]!r}?" if guess else ""),
                    )
                )
        skip = {field_of.get(k, k) for k in templated}
        try:
            if not templated:
                return problems, action.parse(parameters)
            action.Params.model_validate(
                {k: v for k, v in parameters.items() if k not in templated}
            )
        except pydantic.ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = err["loc"]
                head = str(loc[0]) if loc else ""
                if field_of.get(head, head) in skip or (not loc and templated):
                    continue  # known only at run time (a cross-field rule needs every value)
                where = ".".join(str(p) for p in loc) or "(parameters)"
                problems.append(("error", "invalid_parameters", where, err["msg"]))
        return problems, None
