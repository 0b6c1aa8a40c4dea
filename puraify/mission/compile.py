"""What validation hands the executor: every step compiled once.

For each step, validation resolves the action (its canonical name), parses the parameters when
none is templated, compiles the templates (through the ``ReferenceReader`` port: nothing here
imports the template engine) with the names they read, and settles the retry policy and the
timeout. The executor then renders only templated fields against a scope of only the names
they read, validates only rendered parameters, and never looks for templates again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..errors import PuraifyError
from .model import (
    DEFAULT_STEP_TIMEOUT_SECONDS,
    Mission,
    MissionConfig,
    MissionStep,
    RetryPolicy,
)

__all__ = [
    "CompiledMission",
    "CompiledStep",
    "Template",
    "TemplateSlot",
    "effective_step_timeout",
    "is_template",
    "retry_policy",
    "roots_of",
    "template_slots",
]


class Template(Protocol):
    """A template compiled by the template engine; only what it reads matters here."""

    @property
    def source(self) -> str: ...

    @property
    def references(self) -> tuple[tuple[str, ...], ...]:
        """Attribute paths of the outside names it reads: ``("steps", "a", "output")``."""

    @property
    def roots(self) -> frozenset[str]:
        """The first name of each reference (``steps``, a step id, a variable, ``run``...)."""


class TemplateSlot(NamedTuple):
    """A template inside a parameter value, with the field path its errors name."""

    template: Template
    field: str


class CompiledStep(NamedTuple):
    """One step as the executor runs it.

    A named tuple: as immutable as a frozen dataclass and about three times cheaper to build,
    and validation builds one per step.
    """

    step: MissionStep
    #: The action's canonical name (aliases and PascalCase resolved).
    action: str
    #: The parsed parameter model when no parameter is templated and they are valid; None
    #: otherwise (the runner validates the rendered parameters, once, at run time).
    params: object | None
    #: Templated top-level parameters: the value with a ``TemplateSlot`` for each template.
    templated: Mapping[str, Any]
    #: The names the parameter templates read (what their scope holds).
    roots: frozenset[str]
    when: Template | None
    retry: RetryPolicy
    #: Seconds each attempt may take (``effective_step_timeout``).
    timeout: float

    @property
    def id(self) -> str:
        return self.step.id


@dataclass(frozen=True, slots=True, eq=False)
class CompiledMission:
    """A validated mission with every step compiled (declaration order)."""

    mission: Mission
    steps: tuple[CompiledStep, ...]


def is_template(text: str) -> bool:
    """Whether ``text`` holds template syntax (``{{`` or ``{%``)."""
    return "{{" in text or "{%" in text


def template_slots(
    value: Any,
    field: str,
    compile: Callable[[str], Template],
    slots: list[TemplateSlot],
    errors: list[tuple[str, PuraifyError]],
) -> tuple[Any, bool]:
    """``value`` with each template string compiled into a ``TemplateSlot`` (also appended to
    ``slots``), and whether it held any. A template that does not compile stays a string; its
    error goes to ``errors``."""
    if isinstance(value, str):
        if not is_template(value):
            return value, False
        try:
            slot = TemplateSlot(compile(value), field)
        except PuraifyError as exc:
            errors.append((field, exc))
            return value, True
        slots.append(slot)
        return slot, True
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        found = False
        for k, v in value.items():
            key = f"{field}.{k}" if field else str(k)
            out[k], has = template_slots(v, key, compile, slots, errors)
            found = found or has
        return (out if found else value), found
    if isinstance(value, list):
        items: list[Any] = []
        found = False
        for i, v in enumerate(value):
            item, has = template_slots(v, f"{field}[{i}]", compile, slots, errors)
            items.append(item)
            found = found or has
        return (items if found else value), found
    return value, False


_NO_ROOTS: frozenset[str] = frozenset()


def roots_of(templates: Sequence[Template]) -> frozenset[str]:
    """The root names the templates read (``steps``, a step id, a variable, ``run``...)."""
    if len(templates) == 1:
        return templates[0].roots  # shared by every template of the same text
    return frozenset().union(*(t.roots for t in templates)) or _NO_ROOTS


def retry_policy(step: MissionStep | None, config: MissionConfig) -> RetryPolicy:
    """The step's own ``retry`` policy, else the mission's ``retry_attempts``/``retry_delay_ms``
    with a fixed delay (RustChain's ``retry_count`` semantics)."""
    if step is not None and step.retry is not None:
        return step.retry
    return RetryPolicy(
        attempts=config.retry_attempts, delay_ms=config.retry_delay_ms, backoff="fixed"
    )


def effective_step_timeout(
    step: MissionStep, config: MissionConfig, default: float | None = None
) -> float:
    """Seconds each attempt of ``step`` may take: the step's own ``timeout_seconds``, else the
    mission's ``config.step_timeout_seconds``, else ``default`` (the engine's, from settings),
    else ``DEFAULT_STEP_TIMEOUT_SECONDS``."""
    for seconds in (step.timeout_seconds, config.step_timeout_seconds, default):
        if seconds is not None:
            return seconds
    return DEFAULT_STEP_TIMEOUT_SECONDS
