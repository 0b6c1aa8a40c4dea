"""Prometheus metrics: one registry per app (so tests and several apps never collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..mission.model import MissionResult, MissionStep, StepResult
from ..runtime.hooks import Hooks, RunInfo

__all__ = ["Metrics", "MetricsHook"]


class Metrics:
    """The service's metrics: requests, steps, action outcomes, runs in flight."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "puraify_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "puraify_http_request_seconds",
            "HTTP request duration by route.",
            ["route"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "puraify_step_seconds",
            "Step duration by action.",
            ["action"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.outcomes = Counter(
            "puraify_action_outcomes_total",
            "Step outcomes by platform, action, status and error code.",
            ["platform", "action", "status", "code"],
            registry=self.registry,
        )
        self.runs_in_flight = Gauge(
            "puraify_runs_in_flight", "Runs executing in this process.", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsHook(Hooks):
    """Feeds step and run metrics from the executor."""

    def __init__(self, metrics: Metrics, platform_of: dict[str, str]) -> None:
        self.metrics = metrics
        self.platform_of = platform_of

    async def on_run_start(self, run: RunInfo) -> None:
        self.metrics.runs_in_flight.inc()

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        return None

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        if result.duration_ms is not None:
            self.metrics.step_seconds.labels(result.step_type).observe(result.duration_ms / 1000)
        self.metrics.outcomes.labels(
            self.platform_of.get(result.step_type, "local"),
            result.step_type,
            result.status.value,
            result.error.code if result.error else "",
        ).inc()

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        self.metrics.runs_in_flight.dec()
