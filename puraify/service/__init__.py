"""The application service: one home for the run lifecycle, below the CLI and the HTTP API.

May import: every layer above it (``errors``, ``settings``, ``mission``, ``templating``,
``actions``, ``runtime``, ``store``, ``observability``). Never FastAPI, Starlette, Typer or rich:
``api/`` and ``cli/`` translate HTTP and argv into calls on it.
Invariants: one composition function (``compose``) decides the safety profile and builds
everything else; a run keeps the profile, project and workspace it was created under for every
later resume, retry or cancel; Engine Control, the vault and worker backends plug in at
``RunService.engine``.
"""

from __future__ import annotations

from .compose import Application, choose_profile, compose, open_database
from .runs import ActionOutcome, Origin, RunService
from .workspaces import project_dirname, workspace_for

__all__ = [
    "ActionOutcome",
    "Application",
    "Origin",
    "RunService",
    "choose_profile",
    "compose",
    "open_database",
    "project_dirname",
    "workspace_for",
]
