"""Where a run's file steps are confined: one workspace per project in the server profile.

The server profile gives every project its own directory under ``<workspace>`` (default
``<home>/workspaces``), named from the project id so that no id, however spelled, can name
another project's directory or climb out of the root. The local profile has one workspace: the
configured one, else the current directory.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..settings import Profile, Settings

__all__ = ["project_dirname", "workspace_for"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def project_dirname(project_id: str | None) -> str:
    """A directory name for a project: readable, unique per id, never ``..`` or a path."""
    if project_id is None:
        return "no-project"  # real names always end in a 12-digit hash, so never collide
    slug = _UNSAFE.sub("-", project_id).strip(".-")[:48] or "project"
    digest = hashlib.sha256(project_id.encode()).hexdigest()[:12]
    return f"{slug}-{digest}"


def workspace_for(
    settings: Settings, profile: Profile, project_id: str | None, *, cwd: Path
) -> Path:
    """The workspace of a new run of ``project_id`` under ``profile``."""
    if profile.server:
        root = settings.workspace or settings.home / "workspaces"
        return (root / project_dirname(project_id)).resolve()
    return (settings.workspace or cwd).resolve()
