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


_TABLE_ROWS = 30  # rows of the live table: what runs now, then what finished last
_LINES = 200  # transition lines on a pipe before only failures and milestones are printed
_SUMMARY_ROWS = 50  # a bigger mission's summary: counts, failures, the slowest, "N more"


class LiveProgress(Hooks):
    """A hook that renders step transitions as they happen, in bounded space: a live table
    of at most ``_TABLE_ROWS`` rows on a terminal; on a pipe one line per transition for the
    first ``_LINES``, then only failures, retries and every tenth of the mission."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None
        self.lines = 0
        self.finished = 0
        self.counts: dict[str, int] = {}
        self.recent: list[str] = []
        self.milestone = 0

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("")
        table.add_column("step")
        table.add_column("type", style="dim")
        table.add_column("state")
        table.add_column("attempt", justify="right")
        table.add_column("time", justify="right")
        now = time.monotonic()
        if len(self.rows) <= _TABLE_ROWS:
            shown = list(self.rows)
        else:
            active = [sid for sid, r in self.rows.items() if r["state"] in ("running", "retrying")]
            shown = active[:_TABLE_ROWS]
            shown += self.recent[-(_TABLE_ROWS - len(shown)) :] if len(shown) < _TABLE_ROWS else []
            table.caption = f"{self.finished} of {len(self.rows)} steps finished: " + ", ".join(
                f"{n} {state}" for state, n in sorted(self.counts.items())
            )
        for sid in shown:
            row = self.rows[sid]
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

    def _refresh(self, line: str | None = None, *, always: bool = False) -> None:
        if self.live is not None:
            self.live.update(self._table())
            return
        if not line:
            return
        if self.lines < _LINES or always:
            self.console.print(line, highlight=False)
            self.lines += 1
            if self.lines == _LINES and not always:
                self.console.print(
                    f"  [dim]… more than {_LINES} transitions: from now on failures, retries and "
                    "every tenth of the mission only[/]"
                )
            return
        tenth = self.finished * 10 // max(len(self.rows), 1)
        if tenth > self.milestone:
            self.milestone = tenth
            self.console.print(
                f"  [dim]{self.finished} of {len(self.rows)} steps finished[/]", highlight=False
            )

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
            f"retrying in {delay:.2f}s",
            always=True,
        )

    async def after_step(self, run: RunInfo, result: StepResult) -> None:
        row = self.rows[result.step_id]
        row.update(
            state=result.status.value,
            ms=result.duration_ms,
            attempt=result.attempts or row.get("attempt"),
        )
        self.finished += 1
        self.counts[result.status.value] = self.counts.get(result.status.value, 0) + 1
        self.recent.append(result.step_id)
        del self.recent[:-_TABLE_ROWS]
        detail = ""
        if result.error is not None and result.status is not StepStatus.SKIPPED:
            detail = escape(f" — {result.error.code}: {result.error.message}")
        took = f" {result.duration_ms / 1000:.2f}s" if result.duration_ms is not None else ""
        self._refresh(
            f"  [{_STYLE[result.status.value]}]{_ICON[result.status.value]} {escape(result.step_id)}[/]"
            f" {result.status.value}{took}{detail}",
            always=result.status is StepStatus.FAILED,
        )

    async def on_run_end(self, run: RunInfo, result: MissionResult) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def summary_table(result: MissionResult) -> Table:
    """The end-of-run table: every step (status, attempts, duration, error); for a mission of
    more than ``_SUMMARY_ROWS`` steps, every failed step and the slowest few, with the counts
    by status and how many more there are."""
    table = Table(
        title=escape(f"{result.mission_name}: {result.status.value}"), title_justify="left"
    )
    table.add_column("step")
    table.add_column("type", style="dim")
    table.add_column("status")
    table.add_column("attempts", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("detail", overflow="fold")
    steps = list(result.steps)
    if len(steps) > _SUMMARY_ROWS:
        failed = [s for s in steps if s.status is StepStatus.FAILED]
        slowest = sorted(
            (s for s in steps if s.duration_ms is not None and s not in failed),
            key=lambda s: s.duration_ms or 0.0,
            reverse=True,
        )[:5]
        counts: dict[str, int] = {}
        for s in steps:
            counts[s.status.value] = counts.get(s.status.value, 0) + 1
        table.caption = (
            f"{len(steps)} steps: "
            + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
            + f"; shown: every failed step and the {len(slowest)} slowest, "
            f"{len(steps) - len(failed) - len(slowest)} more"
        )
        steps = failed + slowest
    for step in steps:
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
