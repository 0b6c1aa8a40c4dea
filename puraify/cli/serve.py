"""``puraify serve`` and ``puraify tokens ...``."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from types import FrameType
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PuraifyError
from ._shared import JsonOpt, console, fail, load_settings
from .errors import write_json

__all__ = ["serve", "tokens_app"]

tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke.")


def serve(
    service: Annotated[
        str,
        typer.Argument(
            help="Which service: all (default), execution, or control (Engine Control)."
        ),
    ] = "all",
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", min=1, max=64, help="API processes (stateless; share the store)."
        ),
    ] = 1,
) -> None:
    """Run the HTTP API: the execution service, in the server safety profile (set
    PURAIFY_MODE=local to serve with the local profile's powers)."""
    import uvicorn

    from ..api.app import create_app

    if service not in ("all", "execution", "control", "vault"):
        raise typer.BadParameter("the services are all, execution, control and vault")
    # the server owns SIGINT and SIGTERM: it shuts down gracefully, leaves long runs resumable,
    # then exits 0 (uvicorn raises the signal it caught again once it has stopped)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stopped)
    settings = load_settings()
    options: dict[str, Any] = {
        "host": host or settings.api_host,
        "port": port or settings.api_port,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    if workers > 1:
        # separate processes, each with its own engine and its own SO_REUSEPORT socket; runs
        # are shared through the store
        from ..api.supervisor import serve_workers

        bind_host, bind_port = options.pop("host"), options.pop("port")
        try:
            code = serve_workers(bind_host, bind_port, workers, options, services=service)
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot serve on {bind_host}:{bind_port}: {exc}", err=True)
            raise typer.Exit(2) from None
        raise typer.Exit(code)
    else:
        app = create_app(
            settings,
            environ=dict(os.environ),
            host=options["host"],
            server_process=True,
            services=service,
        )
        uvicorn.run(app, **options)


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise typer.Exit(0)


def _call(fn: Any, as_json: bool = False) -> Any:
    from ..service import open_database
    from ..store import TokenStore

    settings = load_settings()

    async def go() -> Any:
        db = await open_database(settings)
        try:
            return await fn(TokenStore(db))
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except PuraifyError as exc:
        raise fail(exc, as_json) from None


def _scopes(values: list[str]) -> set[str]:
    """``--scope a --scope b`` and ``--scope a,b`` alike."""
    return {part.strip() for value in values for part in value.split(",") if part.strip()}


@tokens_app.command("create")
def create(
    project: Annotated[str, typer.Option("--project", help="The project the token acts for.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope",
            help="Repeat it or separate with commas: execute, runs:read, runs:write, "
            "actions:read, metrics:read, vault, admin.",
        ),
    ],
    name: Annotated[str, typer.Option("--name")] = "",
    days: Annotated[int | None, typer.Option("--days", help="Expire after this many days.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    scopes = _scopes(scope)
    token_id, token = _call(
        lambda t: t.create(project, scopes, name=name, ttl=timedelta(days=days) if days else None),
        as_json,
    )
    if as_json:
        write_json(
            {"token_id": token_id, "token": token, "project_id": project, "scopes": sorted(scopes)}
        )
        return
    console.print(
        f"token {token_id} for project {escape(project)} ({', '.join(sorted(scopes))}); "
        "shown once, stored only as a hash:"
    )
    typer.echo(token)


@tokens_app.command("list")
def list_tokens(
    project: Annotated[str | None, typer.Option("--project")] = None, as_json: JsonOpt = False
) -> None:
    """Tokens (never their values)."""
    rows = _call(lambda t: t.list(project), as_json)
    if as_json:
        write_json([{"token_id": r.pop("id"), **r} for r in rows])
        return
    table = Table(title="tokens")
    for col in ("id", "project", "name", "scopes", "created", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["id"],
            r["project_id"],
            r["name"],
            ", ".join(r["scopes"]),
            str(r["created_at"])[:19],
            str(r["revoked_at"] or "")[:19],
        )
    console.print(table)


@tokens_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Revoke a token by id; running servers refuse it within `token_cache_seconds` (2 s)."""
    ok = _call(lambda t: t.revoke(token_id), as_json)
    if not ok:
        error = PuraifyError(f"no active token {token_id!r}", code="not_found", field="token_id")
        raise fail(error, as_json)
    if as_json:
        write_json({"token_id": token_id, "revoked": True})
    else:
        typer.echo("revoked")
