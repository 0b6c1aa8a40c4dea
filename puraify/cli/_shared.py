"""What every command group shares: the consoles, settings, the error boundary, result
printing, and the two ways a command reaches the application (the whole of it, composed once
per command, or only the run store for history reads)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .errors import EXIT_FAILED, EXIT_OK, report_error, write_json

__all__ = [
    "JsonOpt",
    "console",
    "err_console",
    "fail",
    "follow",
    "load_settings",
    "print_result",
    "with_application",
    "with_store",
]

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output on stdout.")]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def load_settings(workspace: Path | None = None) -> Any:
    """Settings from the environment and config file (``--workspace`` overrides), logging set."""
    import pydantic

    from ..errors import PuraifyError
    from ..observability.logging import configure_logging
    from ..settings import Settings

    overrides: dict[str, Any] = {}
    if workspace is not None:
        overrides["workspace"] = workspace
    try:
        settings = Settings(**overrides)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"])
        raise PuraifyError(
            f"setting {name!r} (PURAIFY_{name.upper()} or the config file): {first['msg']}",
            code="invalid_settings",
            field=name,
        ) from None
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    return settings


def fail(error: BaseException, as_json: bool) -> typer.Exit:
    """Print ``error`` (as JSON on stdout with ``--json``) and the exit that ends the command."""
    return typer.Exit(report_error(console if as_json else err_console, error, as_json=as_json))


def with_application(
    settings: Any, fn: Callable[[Any], Awaitable[T]], *, hooks: Sequence[Any] = ()
) -> T:
    """Compose the application for this command (the local profile unless ``PURAIFY_MODE``
    says otherwise; runs created elsewhere keep their own), run ``fn`` on it, take it down."""
    from ..service import compose

    async def go() -> T:
        async with compose(
            settings, listen=None, environ=dict(os.environ), cwd=Path.cwd(), hooks=hooks
        ) as app:
            return await fn(app)

    return asyncio.run(go())


def with_store(settings: Any, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn`` on the run store alone (history reads and changes that run nothing)."""
    from ..service import open_database
    from ..store import RunStore

    async def go() -> T:
        db = await open_database(settings)
        try:
            return await fn(RunStore(db, max_output_bytes=settings.store_max_output_bytes))
        finally:
            await db.dispose()

    return asyncio.run(go())


async def follow(app: Any, run_id: str) -> Any:
    """Wait for a run executing in this process; Ctrl-C and SIGTERM cancel it cleanly. Once it
    has ended, they are ignored: its outcome stands and is printed in full."""
    from ..errors import StoreError

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.runs.interrupt, run_id)
    try:
        result = await app.runs.wait(run_id)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
            signal.signal(sig, signal.SIG_IGN)
    if result is None:
        raise StoreError(f"run {run_id} is executing in another process", code="run_busy")
    return result


def print_result(result: Any, as_json: bool) -> int:
    """Print a run's result (JSON or the summary table); return the exit code it means."""
    from ..mission.model import MissionStatus
    from .progress import summary_table

    if as_json:
        write_json(result.model_dump_json())
    else:
        console.print(summary_table(result))
        for w in result.warnings:
            console.print(f"[yellow]warning[/] {escape(w)}")
        console.print(
            f"[bold]{result.status.value}[/] in {result.duration_ms / 1000:.2f}s [dim](run {result.run_id})[/]"
        )
    return EXIT_OK if result.status is MissionStatus.COMPLETED else EXIT_FAILED
