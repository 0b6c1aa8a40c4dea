"""The HTTP API's response bodies, one model each, so that OpenAPI describes every answer.

Times are RFC 3339 in UTC with a ``Z`` (pydantic's form for aware datetimes), everywhere.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Accepted",
    "CancelAnswer",
    "DryRun",
    "Envelope",
    "ErrorDetail",
    "MissionCheck",
    "PerformActionAnswer",
    "RetryAnswer",
    "RunList",
    "RunSummary",
    "rfc3339",
]


def rfc3339(value: datetime | None = None) -> str:
    """``value`` (default: now) as RFC 3339 in UTC with a ``Z``, as every answer spells time."""
    value = (value or datetime.now(UTC)).astimezone(UTC)
    return value.isoformat().replace("+00:00", "Z")


class ErrorDetail(BaseModel):
    """What went wrong: a stable code (docs/errors.md), a sentence, where, and whether trying
    again may help."""

    model_config = ConfigDict(extra="allow")
    code: str
    retryable: bool = False
    message: str | None = None


class Envelope(BaseModel):
    """The single-action answer (Execution Engine spec), and every failure's envelope."""

    model_config = ConfigDict(extra="allow")
    status: str = Field(description="success or fail (error, for a request in the README's shape)")
    request_id: str | None = None
    run_id: str | None = None
    platform: str | None = None
    action: str | None = None
    timestamp: str | None = Field(default=None, description="RFC 3339, UTC")
    duration_ms: float | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    error: ErrorDetail | None = None


class PerformActionAnswer(BaseModel):
    """The Action Engine's answer shape."""

    model_config = ConfigDict(extra="allow")
    status: str
    action_type: str | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None
    error: ErrorDetail | None = None
    request_id: str | None = None
    run_id: str | None = None


class Accepted(BaseModel):
    """A run was committed and started; follow it at ``location``."""

    status: str = "running"
    run_id: str
    location: str
    request_id: str | None = None


class DryRun(BaseModel):
    """``?dry_run=true``: the plan and the safety report; nothing ran."""

    status: str = "valid"
    levels: list[list[str]]
    critical_path: list[str]
    safety: dict[str, Any]
    warnings: list[dict[str, Any]] = []
    #: each step's verdict from Engine Control now (not audited)
    policy: list[dict[str, Any]] = []


class MissionCheck(BaseModel):
    """What validation (or a dry run) found: errors, warnings, the plan and the safety report."""

    model_config = ConfigDict(extra="allow")
    valid: bool
    errors: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    levels: list[list[str]] | None = None
    critical_path: list[str] | None = None
    safety: dict[str, Any] | None = None
    #: each step's verdict from Engine Control now (not audited)
    policy: list[dict[str, Any]] | None = None


class RunSummary(BaseModel):
    """One row of the run history."""

    run_id: str
    mission_name: str
    status: str
    created_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    error_code: str | None = None
    parent_run_id: str | None = None


class RunList(BaseModel):
    """A page of the run history, newest first."""

    runs: list[RunSummary]
    limit: int
    offset: int


class CancelAnswer(BaseModel):
    """The run's status after the cancel request (``running`` while its engine stops it)."""

    run_id: str
    status: str


class RetryAnswer(BaseModel):
    """The new run that re-runs what failed."""

    run_id: str
    retry_of: str
    location: str
