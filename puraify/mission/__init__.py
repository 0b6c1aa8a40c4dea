"""Missions: the model, loading, validation, planning, safety analysis and graphs.

Pure: imports only ``errors``, pydantic, PyYAML and the standard library; no network, no
subprocess, no database. The action catalogue and template inspector come in through ports.
Invariant: what the executor runs is a ``CompiledMission``, which only ``validate_mission``
makes (each step's action, parsed parameters, templates, retry policy and timeout settled once).
"""

from __future__ import annotations

from .compile import CompiledMission, CompiledStep
from .loader import LoadedMission, load_mission, mission_from_data
from .model import (
    Mission,
    MissionConfig,
    MissionResult,
    MissionStatus,
    MissionStep,
    RetryPolicy,
    StepError,
    StepResult,
    StepStatus,
)
from .plan import Plan, PlanStep
from .safety import Finding, SafetyReport, analyze
from .validate import ValidatedMission, validate_mission

__all__ = [
    "CompiledMission",
    "CompiledStep",
    "Finding",
    "LoadedMission",
    "Mission",
    "MissionConfig",
    "MissionResult",
    "MissionStatus",
    "MissionStep",
    "Plan",
    "PlanStep",
    "RetryPolicy",
    "SafetyReport",
    "StepError",
    "StepResult",
    "StepStatus",
    "ValidatedMission",
    "analyze",
    "load_mission",
    "mission_from_data",
    "validate_mission",
]
