"""puraify: the execution engine of the PURAIFY automation platform.

It runs what it is told (single actions and mission DAGs), reliably and securely, and never
decides what should be done. Layers, each importing only the ones above it::

    codes → errors, settings → mission (pure) → templating (pure) → actions → runtime
    → store → observability → service → api → cli → testing

``lint-imports`` (scripts/lint) checks it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .actions import Action, ActionContext, ActionRegistry, default_registry
    from .errors import (
        ActionError,
        GuardError,
        Issue,
        LoadError,
        MissionError,
        PolicyDenied,
        PuraifyError,
        StepTimeout,
        StoreError,
        TemplateError,
        TemplateSecurityError,
        ValidationError,
        VaultError,
    )
    from .mission import (
        LoadedMission,
        Mission,
        MissionConfig,
        MissionResult,
        MissionStatus,
        MissionStep,
        Plan,
        RetryPolicy,
        SafetyReport,
        StepResult,
        StepStatus,
        load_mission,
        validate_mission,
    )
    from .runtime import Engine, Executor, Hooks, RunHandle
    from .settings import Settings
    from .templating import TemplateEngine

# Imported on first use, so `puraify --help` does not pay for httpx, Jinja2 and friends.
_LAZY: dict[str, str] = {
    "Action": "actions",
    "ActionContext": "actions",
    "ActionError": "errors",
    "ActionRegistry": "actions",
    "Engine": "runtime",
    "Executor": "runtime",
    "GuardError": "errors",
    "Hooks": "runtime",
    "Issue": "errors",
    "LoadError": "errors",
    "LoadedMission": "mission",
    "Mission": "mission",
    "MissionConfig": "mission",
    "MissionError": "errors",
    "MissionResult": "mission",
    "MissionStatus": "mission",
    "MissionStep": "mission",
    "Plan": "mission",
    "PolicyDenied": "errors",
    "PuraifyError": "errors",
    "RetryPolicy": "mission",
    "RunHandle": "runtime",
    "SafetyReport": "mission",
    "Settings": "settings",
    "StepResult": "mission",
    "StepStatus": "mission",
    "StepTimeout": "errors",
    "StoreError": "errors",
    "TemplateEngine": "templating",
    "TemplateError": "errors",
    "TemplateSecurityError": "errors",
    "ValidationError": "errors",
    "VaultError": "errors",
    "default_registry": "actions",
    "load_mission": "mission",
    "validate_mission": "mission",
}

__version__ = "0.1.0"

__all__ = [
    "Action",
    "ActionContext",
    "ActionError",
    "ActionRegistry",
    "Engine",
    "Executor",
    "GuardError",
    "Hooks",
    "Issue",
    "LoadError",
    "LoadedMission",
    "Mission",
    "MissionConfig",
    "MissionError",
    "MissionResult",
    "MissionStatus",
    "MissionStep",
    "Plan",
    "PolicyDenied",
    "PuraifyError",
    "RetryPolicy",
    "RunHandle",
    "SafetyReport",
    "Settings",
    "StepResult",
    "StepStatus",
    "StepTimeout",
    "StoreError",
    "TemplateEngine",
    "TemplateError",
    "TemplateSecurityError",
    "ValidationError",
    "VaultError",
    "__version__",
    "default_registry",
    "load_mission",
    "validate_mission",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'puraify' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
