"""Runtime: the async executor and everything it needs at run time.

May import: ``errors``, ``settings`` (only in ``engine.from_settings``), ``mission``,
``templating``, ``actions``, httpx, structlog. Never FastAPI or Typer.
Invariants: the executor always returns a ``MissionResult``; a step dispatch goes through a
``StepRunner``; guards fail closed.
"""

from __future__ import annotations

from .engine import Engine, Prepared
from .executor import Executor, RunHandle
from .guards import CommandPolicy, Jail, SsrfPolicy, SsrfTransport
from .hooks import Hooks, HookSet, RunInfo
from .resume import ResumeState, resume_plan, reusable_results
from .runner import InProcessRunner, StepInvocation, StepRunner

__all__ = [
    "CommandPolicy",
    "Engine",
    "Executor",
    "HookSet",
    "Hooks",
    "InProcessRunner",
    "Jail",
    "Prepared",
    "ResumeState",
    "RunHandle",
    "RunInfo",
    "SsrfPolicy",
    "SsrfTransport",
    "StepInvocation",
    "StepRunner",
    "resume_plan",
    "reusable_results",
]
