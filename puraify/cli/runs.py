"""``puraify runs ...`` (history, export, retry, cancel, prune, resume) and ``puraify db``."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PuraifyError, StoreError
from ._shared import (
    JsonOpt,
    console,
    err_console,
    fail,
    follow,
    load_settings,
    print_result,
    with_application,
    with_store,
)
from .errors import EXIT_OK, report_error, write_json

__all__ = ["db_app", "runs_app"]

runs_app = typer.Typer(
    no_args_is_help=True, help="Run history: list, show, export, retry, cancel, prune, resume."
)
db_app = typer.Typer(no_args_is_help=True, help="The run store's database.")

RunArg = Annotated[str, typer.Argument(help="Run id.", show_default=False)]

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> datetime:
    """``30d``, ``12h``, ``15m`` (ago) or an ISO 8601 time -> an aware UTC datetime."""
    match = _DURATION.match(text.strip())
    if match:
        try:
            return datetime.now(UTC) - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise typer.BadParameter(f"{text!r} reaches back further than a date can") from None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an age like 7d/12h nor an ISO time"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _store_call(fn: Any, as_json: bool = False) -> Any:
    try:
        return with_store(load_settings(), fn)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else ""


@runs_app.command("list")
def list_runs(
    status: Annotated[
        str | None, typer.Option("--status", help="running, completed, failed or cancelled")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Age (7d, 12h) or ISO time.")] = None,
    mission: Annotated[str | None, typer.Option("--mission", help="Mission name contains.")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs, newest first."""
    if status is not None and status not in ("running", "completed", "failed", "cancelled"):
        raise typer.BadParameter("--status is running, completed, failed or cancelled")
    since_at = parse_age(since) if since else None
    rows = _store_call(
        lambda s: s.list_runs(status=status, since=since_at, mission=mission, limit=limit)
    )
    if as_json:
        write_json(rows)
        return
    table = Table(title="runs")
    for col in ("run", "mission", "status", "created", "duration", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["run_id"],
            escape(r["mission_name"]),
            r["status"],
            _iso(r["created_at"]),
            f"{r['duration_ms'] / 1000:.2f}s" if r["duration_ms"] is not None else "",
            r["error_code"] or "",
        )
    console.print(table)


def _gantt(record: Any, width: int = 40) -> list[str]:
    starts = [s.started_at for s in record.steps if s.started_at]
    ends = [s.finished_at for s in record.steps if s.finished_at]
    if not starts:
        return []
    t0 = min(starts)
    t1 = max(ends + starts)
    span = max((t1 - t0).total_seconds(), 1e-6)
    lines = []
    for s in record.steps:
        if not s.started_at:
            lines.append(" " * width)
            continue
        a = int((s.started_at - t0).total_seconds() / span * (width - 1))
        end = s.finished_at or t1
        b = max(a + 1, int((end - t0).total_seconds() / span * (width - 1)) + 1)
        lines.append(" " * a + "█" * (b - a) + " " * (width - b))
    return lines


@runs_app.command("show")
def show(run_id: RunArg, as_json: JsonOpt = False) -> None:
    """A run's steps, attempts, durations and errors, with a timeline."""

    async def load(store: Any) -> tuple[Any, list[dict[str, Any]]]:
        return await store.get(run_id), await store.attempts_of(run_id)

    record, tries = _store_call(load, as_json)
    if as_json:
        write_json(record.result().model_dump_json())
        return
    console.print(
        f"[bold]{escape(record.mission.display_name)}[/] run {record.id}: [bold]{record.status.value}[/]"
        + (f" — {escape(record.error.code + ': ' + record.error.message)}" if record.error else "")
    )
    if record.parent_run_id:
        console.print(f"retry of {record.parent_run_id}")
    table = Table()
    for col in ("step", "status", "attempts", "duration", "timeline", "detail"):
        table.add_column(col)
    for row, bar in zip(record.steps, _gantt(record) or [""] * len(record.steps), strict=True):
        detail = f"{row.error.code}: {row.error.message}" if row.error else ""
        if row.reused_from:
            detail = f"reused from {row.reused_from}"
        table.add_row(
            escape(row.step_id),
            row.status.value,
            str(row.attempts),
            f"{row.duration_ms / 1000:.3f}s" if row.duration_ms is not None else "",
            f"[cyan]{bar}[/]",
            escape(detail[:200]),
        )
    console.print(table)
    if any(t["attempt"] > 1 or t["status"] != "success" for t in tries):
        console.print("[bold]attempts[/]")
        for t in tries:
            console.print(
                f"  {escape(t['step_id'])} #{t['attempt']} (fence {t['fence']}): {t['status']}"
                + (f" — {escape(str(t['error_code']))}" if t["error_code"] else "")
            )


@runs_app.command("export")
def export(run_id: RunArg, as_json: JsonOpt = True) -> None:
    """The whole run as JSON (always): mission, result, attempts and events."""

    async def load(store: Any) -> dict[str, Any]:
        record = await store.get(run_id)
        return {
            "run": json.loads(record.result().model_dump_json()),
            "mission": record.mission.model_dump(mode="json"),
            "mission_hash": record.mission_hash,
            "context": record.context,
            "parent_run_id": record.parent_run_id,
            "attempts": await store.attempts_of(run_id),
            "events": await store.events(run_id),
        }

    write_json(json.dumps(_store_call(load, True), default=str, indent=2))


@runs_app.command("retry")
def retry(run_id: RunArg, as_json: JsonOpt = False) -> None:
    """Re-run only what failed, was skipped or was cancelled, reusing every successful output."""
    from .progress import LiveProgress

    async def go(app: Any) -> Any:
        return await follow(app, await app.runs.retry(run_id))

    hooks = [] if as_json else [LiveProgress(console)]
    try:
        result = with_application(load_settings(), go, hooks=hooks)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None
    raise typer.Exit(print_result(result, as_json))


@runs_app.command("resume")
def resume(
    run_id: Annotated[str | None, typer.Argument(help="Run id (omit with --all).")] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Every run whose engine is gone.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Continue runs left `running` by an engine that stopped (what an engine does at start).

    Each run continues under the safety profile it was created with: a run that came in
    through the API keeps the server profile, whoever resumes it."""
    from .progress import LiveProgress

    if not all_runs and run_id is None:
        raise typer.BadParameter("give a RUN_ID or --all")

    async def go(app: Any) -> tuple[int, int]:
        ids: list[str] = list(await app.store.orphans()) if all_runs else [str(run_id)]
        code: int = EXIT_OK
        for rid in ids:
            try:
                await app.runs.resume(rid)
                result = await follow(app, rid)
            except Exception as exc:
                if not all_runs:
                    raise
                # one run that cannot continue (it ended failed, with the reason) must not
                # keep the others from continuing
                code = max(code, report_error(err_console, exc, as_json=False))
                continue
            code = max(code, print_result(result, as_json))
        return code, len(ids)

    hooks = [] if as_json else [LiveProgress(console)]
    try:
        code, count = with_application(load_settings(), go, hooks=hooks)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None
    if all_runs and not count and not as_json:
        console.print("no run to resume")
    raise typer.Exit(code)


@runs_app.command("cancel")
def cancel(run_id: RunArg, as_json: JsonOpt = False) -> None:
    """Cancel a run: its engine stops it within seconds; a run with no live engine ends now."""
    try:
        status = with_application(load_settings(), lambda app: app.runs.cancel(run_id))
    except PuraifyError as exc:
        raise fail(exc, as_json) from None
    if as_json:
        write_json({"run_id": run_id, "status": status})
        return
    console.print(
        f"run {run_id}: {status}"
        + (
            " (cancellation requested; its engine stops it at the next heartbeat)"
            if status == "running"
            else ""
        )
    )


@runs_app.command("prune")
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age like 30d or an ISO time.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete finished runs older than the given age, with their steps and events."""
    cutoff = parse_age(older_than)
    count = _store_call(lambda s: s.prune(cutoff), as_json)
    if as_json:
        write_json({"pruned": count, "created_before": cutoff.isoformat().replace("+00:00", "Z")})
        return
    console.print(f"pruned {count} run(s) created before {_iso(cutoff)}")


@db_app.command("upgrade")
def upgrade(as_json: JsonOpt = False) -> None:
    """Apply the run store's migrations (PostgreSQL needs this once per release)."""
    from ..store import Database

    settings = load_settings()

    async def go() -> str | None:
        db = Database(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
        try:
            return await db.upgrade()
        finally:
            await db.dispose()

    try:
        revision = asyncio.run(go())
    except (PuraifyError, OSError) as exc:
        error = exc if isinstance(exc, PuraifyError) else StoreError(str(exc))
        raise fail(error, as_json) from None
    if as_json:
        write_json({"revision": revision})
        return
    console.print(f"database at revision {revision}")
