"""Missions made ready to run, with no runtime: load, validate, plan and analyse.

What ``validate``, ``graph``, ``safety validate``, ``--dry-run`` and ``/missions/validate`` need is
the action catalogue, the template inspector and the document limits, never an HTTP client, a
workspace or a store; ``Preparer`` holds exactly those.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..actions import ActionRegistry, default_registry
from ..errors import Issue
from ..mission.compile import CompiledMission
from ..mission.loader import LoadedMission, load_mission, mission_from_data
from ..mission.model import Mission
from ..mission.parse import Parsed, ParseLimits, parse_document
from ..mission.plan import Plan
from ..mission.safety import SafetyReport, analyze
from ..mission.validate import ValidatedMission, validate_mission
from ..settings import Settings
from ..templating.render import TemplateEngine

__all__ = ["Prepared", "Preparer"]


@dataclass(frozen=True)
class Prepared:
    """A mission that loaded, validated and compiled, with its plan levels and safety report."""

    mission: Mission
    warnings: tuple[Issue, ...]
    levels: list[list[str]]
    critical_path: list[str]
    safety: SafetyReport
    compiled: CompiledMission


class Preparer:
    """Loads and validates missions against one action catalogue and one template engine."""

    def __init__(
        self,
        *,
        registry: ActionRegistry,
        templates: TemplateEngine,
        parse_limits: ParseLimits = ParseLimits(),
        max_steps: int | None = None,
        step_timeout: float | None = None,
        allow_shell: bool = False,
    ) -> None:
        self.registry = registry
        self.allow_shell = allow_shell  # the operator lets commands run shells
        self.templates = templates
        self.parse_limits = parse_limits
        self.max_steps = max_steps
        self.step_timeout = step_timeout  # for steps whose mission sets none

    @classmethod
    def from_settings(
        cls, settings: Settings, *, registry: ActionRegistry | None = None
    ) -> Preparer:
        """The preparer an operator configured (document limits and template caps)."""
        return cls(
            registry=registry or default_registry(),
            templates=TemplateEngine(
                max_output_bytes=settings.template_max_output_bytes,
                max_render_seconds=settings.template_max_render_seconds,
            ),
            parse_limits=ParseLimits(
                max_bytes=settings.max_document_bytes,
                max_depth=settings.max_document_depth,
                max_aliases=settings.max_yaml_aliases,
            ),
            max_steps=settings.max_steps,
            step_timeout=settings.step_timeout_seconds,
            allow_shell=settings.command_allow_shell,
        )

    def load(
        self,
        source: str | bytes | Path,
        *,
        strict: bool = False,
        filename: str | None = None,
        fmt: str | None = None,
    ) -> LoadedMission:
        """Parse and model a mission document (``LoadError`` / ``ValidationError`` on failure)."""
        return load_mission(
            source, strict=strict, limits=self.parse_limits, filename=filename, fmt=fmt
        )

    def parse(self, source: str | bytes, *, fmt: str | None = None) -> Parsed:
        """Parse a document under the document limits, without modelling it as a mission (a
        request that wraps its mission)."""
        return parse_document(source, fmt=fmt, limits=self.parse_limits)

    def load_data(self, data: Any, *, strict: bool = False) -> LoadedMission:
        """Model a mission from data parsed by ``parse``."""
        return mission_from_data(data, strict=strict)

    def validate(
        self, loaded: LoadedMission, *, strict: bool = False, context_names: Iterable[str] = ()
    ) -> ValidatedMission:
        """Check the mission against the registry and template rules; a valid one comes back
        compiled (``ValidatedMission.compiled``, what the executor runs)."""
        with _collector_paused():
            return validate_mission(
                loaded,
                self.registry,
                self.templates,
                context_names=context_names,
                strict=strict,
                max_steps=self.max_steps,
                default_step_timeout=self.step_timeout,
            )

    def compile(self, mission: Mission, *, context_names: Iterable[str] = ()) -> CompiledMission:
        """Validate and compile a mission loaded earlier (a stored run's, on resume or retry);
        ``ValidationError`` if it is not valid here."""
        loaded = LoadedMission(mission, (), {}, None, "")
        return self.validate(loaded, context_names=context_names).compiled

    def prepare(
        self,
        source: str | bytes | Path,
        *,
        strict: bool = False,
        context_names: Iterable[str] = (),
        filename: str | None = None,
        fmt: str | None = None,
    ) -> Prepared:
        """Load, validate, plan and analyse: everything ``--dry-run`` shows, nothing executed."""
        loaded = self.load(source, strict=strict, filename=filename, fmt=fmt)
        return self.prepare_loaded(loaded, strict=strict, context_names=context_names)

    def prepare_loaded(
        self, loaded: LoadedMission, *, strict: bool = False, context_names: Iterable[str] = ()
    ) -> Prepared:
        """``prepare`` for a mission already loaded."""
        validated = self.validate(loaded, strict=strict, context_names=context_names)
        plan = Plan.from_mission(validated.mission)
        return Prepared(
            validated.mission,
            validated.warnings,
            plan.levels(),
            plan.critical_path(),
            self.analyze(validated.mission),
            validated.compiled,
        )

    def analyze(self, mission: Mission) -> SafetyReport:
        """The static safety analysis of a mission, as the operator's settings judge it."""
        return analyze(mission, self.registry, allow_shell=self.allow_shell)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Validation builds many objects that live as long as the run (a compiled step each), all
    at once; the cyclic collector would walk them again and again while they are built (~30 %
    of validating 10,000 steps, measured). They are looked at, if ever, in one later pass."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
