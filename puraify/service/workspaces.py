"""Where a run's file steps are confined: one workspace per project in the server profile.

The server profile gives every project its own directory under ``<workspace>`` (default
``<home>/workspaces``), named from the project id so that no id, however spelled, can name
another project's directory or climb out of the root. The local profile has one workspace: the
configured one, else the current directory.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import Profile, Settings, project_dirname

__all__ = ["project_dirname", "workspace_for"]


def workspace_for(
    settings: Settings, profile: Profile, project_id: str | None, *, cwd: Path
) -> Path:
    """The workspace of a new run of ``project_id`` under ``profile``."""
    if profile.server:
        root = settings.workspace or settings.home / "workspaces"
        return (root / project_dirname(project_id)).resolve()
    return (settings.workspace or cwd).resolve()
