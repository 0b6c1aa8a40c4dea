"""The mission data model, named as RustChain's mission engine spec names it, plus our additions.

Spec names: ``Mission``, ``MissionStep``, ``MissionConfig``, ``MissionResult``, ``StepResult``.
Additions: mission ``variables``; step ``retry``, ``when``, ``trigger_rule``, ``retry_on_unknown``.
All models are frozen. Defaults follow the spec (step timeout 300 s, mission timeout 3600 s).
A step's timeout is its own ``timeout_seconds``, else the mission's ``config.step_timeout_seconds``,
else the engine's default (settings), else 300 s (``compile.effective_step_timeout``).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, field_validator

__all__ = [
    "DEFAULT_MAX_CONCURRENT_STEPS",
    "DEFAULT_STEP_TIMEOUT_SECONDS",
    "Mission",
    "MissionConfig",
    "MissionResult",
    "MissionStatus",
    "MissionStep",
    "RetryPolicy",
    "StepError",
    "StepResult",
    "StepStatus",
    "TriggerRule",
]

DEFAULT_STEP_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_CONCURRENT_STEPS = 4

TriggerRule = Literal["all_success", "all_done", "one_failed"]

_FROZEN = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class StepStatus(StrEnum):
    """A step's state; the last four are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


class MissionStatus(StrEnum):
    """A run's state: ``running`` while live, then one of the three terminal states."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RetryPolicy(BaseModel):
    """How a step retries. ``attempts`` counts retries after the first try. ``retry_on``:
    ``failures`` (the default, the spec's ``retry_attempts``) retries any failure a new try may
    change, not invalid parameters, guard, policy or template refusals, or an HTTP 4xx other
    than 408 and 429; ``transient`` only timeouts, connection errors, 5xx, 408 and 429;
    ``any`` every failure but those refusals, 4xx included."""

    model_config = _FROZEN

    attempts: int = Field(default=0, ge=0, le=100)
    retry_on: Literal["failures", "transient", "any"] = "failures"
    delay_ms: int = Field(default=1000, ge=0, le=3_600_000)
    backoff: Literal["fixed", "exponential"] = "exponential"
    max_delay_ms: int = Field(default=60_000, ge=0, le=86_400_000)
    jitter: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("jitter", mode="before")
    @classmethod
    def _bool_jitter(cls, value: Any) -> Any:
        # ``jitter: true`` means "up to 100% extra", the usual full-jitter reading.
        if value is True:
            return 1.0
        if value is False:
            return 0.0
        return value


class MissionConfig(BaseModel):
    """Mission-wide settings. ``max_parallel_steps`` and ``parallel_limit`` are accepted aliases.
    Keys of the mission's own are kept beside them, for templates (``{{ config.api_base }}``)."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    max_concurrent_steps: int = Field(
        default=DEFAULT_MAX_CONCURRENT_STEPS,
        ge=1,
        le=10_000,
        validation_alias=AliasChoices(
            "max_concurrent_steps", "max_parallel_steps", "parallel_limit", "max_parallel"
        ),
    )
    timeout_seconds: float | None = Field(default=3600.0, gt=0)
    fail_fast: bool = True
    retry_attempts: int = Field(
        default=0, ge=0, le=100, validation_alias=AliasChoices("retry_attempts", "retry_count")
    )
    retry_delay_ms: int = Field(default=1000, ge=0, le=3_600_000)
    #: None: the engine's default applies (``effective_step_timeout``).
    step_timeout_seconds: float | None = Field(default=None, gt=0)


class MissionStep(BaseModel):
    """One step: what to run (``step_type`` + ``parameters``) and when (``depends_on``...)."""

    model_config = _FROZEN

    id: str = Field(min_length=1, max_length=200)
    name: str | None = None
    description: str | None = None
    step_type: str = Field(min_length=1)
    depends_on: tuple[str, ...] = ()
    timeout_seconds: float | None = Field(default=None, gt=0)
    continue_on_error: bool = False
    parameters: dict[str, Any] = Field(default_factory=dict)
    retry: RetryPolicy | None = None
    when: str | None = None
    trigger_rule: TriggerRule = "all_success"
    retry_on_unknown: bool = False

    @field_validator("parameters", mode="before")
    @classmethod
    def _none_parameters(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _none_depends(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.id


class Mission(BaseModel):
    """A mission: a named DAG of steps with optional config and variables."""

    model_config = _FROZEN

    version: str = "1.0"
    name: str | None = None
    description: str | None = None
    config: MissionConfig = Field(default_factory=MissionConfig)
    steps: tuple[MissionStep, ...]
    variables: dict[str, Any] = Field(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> Any:
        # ``version: 1.0`` in YAML is a float; the spec says string.
        return str(value) if isinstance(value, int | float) else value

    @field_validator("config", mode="before")
    @classmethod
    def _none_config(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("variables", mode="before")
    @classmethod
    def _none_variables(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def display_name(self) -> str:
        return self.name or "mission"

    def step(self, step_id: str) -> MissionStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class StepError(BaseModel):
    """Why a step failed: a stable code and a human sentence."""

    model_config = _FROZEN

    code: str
    message: str
    retryable: bool = False
    status: int | None = None


class StepResult(BaseModel):
    """The outcome of one step in one run."""

    model_config = _FROZEN

    step_id: str
    name: str
    step_type: str
    status: StepStatus
    output: dict[str, Any] | None = None
    error: StepError | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None


class MissionResult(BaseModel):
    """The outcome of a run: its status and every step's result, in declaration order.

    Serialized, it carries the RustChain spec's ``MissionResult`` fields, ``step_results``
    (keyed by step id, in declaration order), ``total_duration_ms`` and ``timestamp`` (when the
    run ended), beside puraify's own (``run_id``, ``steps`` as a list, ``started_at``, ...).
    Every edge writes it through this one model."""

    model_config = _FROZEN

    run_id: str
    mission_name: str
    status: MissionStatus
    steps: tuple[StepResult, ...]
    started_at: datetime
    finished_at: datetime
    duration_ms: float
    warnings: tuple[str, ...] = ()
    error: StepError | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def step_results(self) -> dict[str, StepResult]:
        """The spec's map of step id to result (declaration order)."""
        return {result.step_id: result for result in self.steps}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_duration_ms(self) -> float:
        """The spec's name for ``duration_ms``."""
        return self.duration_ms

    @computed_field  # type: ignore[prop-decorator]
    @property
    def timestamp(self) -> datetime:
        """When the run ended (the spec's ``timestamp``)."""
        return self.finished_at

    def step(self, step_id: str) -> StepResult:
        for result in self.steps:
            if result.step_id == step_id:
                return result
        raise KeyError(step_id)

    @property
    def by_status(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for result in self.steps:
            out.setdefault(result.status.value, []).append(result.step_id)
        return out
