"""Live progress of a run in the terminal: a table of steps (state, attempt, duration) that
updates in place on a TTY, and one line per transition otherwise (CI logs, pipes)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..mission.model import MissionResult, MissionStep, StepResult, StepStatus
from ..runtime.hooks import Hooks, RunInfo

__all__ = ["LiveProgress", "summary_table"]

_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "success": "green",
    "failed": "red",
    "skipped": "dim",
    "cancelled": "magenta",
}
_ICON = {
    "pending": "·",
    "running": "▶",
    "retrying": "↻",
    "success": "✔",
    "failed": "✘",
    "skipped": "↷",
    "cancelled": "■",
}


class LiveProgress(Hooks):
    """A hook that renders step transitions as they happen."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("")
        table.add_column("step")
        table.add_column("type", style="dim")
        table.add_column("state")
        table.add_column("attempt", justify="right")
        table.add_column("time", justify="right")
        now = time.monotonic()
        for sid, row in self.rows.items():
            state = row["state"]
            took = row.get("ms")
            if took is None and row.get("t0") is not None:
                took = (now - row["t0"]) * 1000
            table.add_row(
                _ICON[state],
                sid,
                row["type"],
                f"[{_STYLE[state]}]{state}[/]",
                str(row.get("attempt") or ""),
                f"{took / 1000:.2f}s" if took is not None else "",
            )
        return table

    def _refresh(self, line: str | None = None) -> None:
        if self.live is not None:
            self.live.update(self._table())
        elif line:
            self.console.print(line, highlight=False)

    async def on_run_start(self, run: RunInfo) -> None:
        for step in run.mission.steps:
            self.rows[step.id] = {"state": "pending", "type": step.step_type}
        self.console.print(f"[bold]▶ {run.mission.display_name}[/] [dim]run {run.run_id}[/]")
        if self.console.is_terminal:
            self.live = Live(
                self._table(), console=self.console, refresh_per_second=8, transient=True
            )
            self.live.start()

    async def before_step(self, run: RunInfo, step: MissionStep, attempt: int) -> None:
        row = self.rows[step.id]
        row.update(state="running", attempt=attempt)
        row.setdefault("t0", time.monotonic())
        self._refresh(f"  ▶ {escape(step.id)} [dim]({escape(step.step_type)})[/] attempt {attempt}")

    async def on_retry(
        self, run: RunInfo, step: MissionStep, attempt: int, error: dict[str, Any], delay: float
    ) -> None:
        self.rows[step.id].update(state="retrying")
        self._refresh(
            f"  [yellow]↻ {escape(step.id)}[/] attempt {attempt} failed "
            f"({escape(str(error['code']))}: {escape(str(error['message']))}); "
            f"retrying in {delay:.2f}s"
        )

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        row = self.rows[result.step_id]
        row.update(
            state=result.status.value,
            ms=result.duration_ms,
            attempt=result.attempts or row.get("attempt"),
        )
        detail = ""
        if result.error is not None and result.status is not StepStatus.SKIPPED:
            detail = escape(f" — {result.error.code}: {result.error.message}")
        took = f" {result.duration_ms / 1000:.2f}s" if result.duration_ms is not None else ""
        self._refresh(
            f"  [{_STYLE[result.status.value]}]{_ICON[result.status.value]} {escape(result.step_id)}[/]"
            f" {result.status.value}{took}{detail}"
        )

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def summary_table(result: MissionResult) -> Table:
    """The end-of-run table: every step, its status, attempts, duration and error."""
    table = Table(
        title=escape(f"{result.mission_name}: {result.status.value}"), title_justify="left"
    )
    table.add_column("step")
    table.add_column("type", style="dim")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("detail", overflow="fold")
    for step in result.steps:
        style = _STYLE[step.status.value]
        detail = f"{step.error.code}: {step.error.message}" if step.error else ""
        table.add_row(
            step.step_id,
            step.step_type,
            f"[{style}]{step.status.value}[/]",
            str(step.attempts),
            f"{step.duration_ms / 1000:.3f}s" if step.duration_ms is not None else "",
            escape(detail[:300]),
        )
    return table
