"""``puraify serve`` and ``puraify tokens ...``."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import PuraifyError
from ._shared import console, fail, load_settings

__all__ = ["serve", "tokens_app"]

tokens_app = typer.Typer(no_args_is_help=True, help="API tokens: create, list, revoke.")


def serve(
    service: Annotated[
        str, typer.Argument(help="Which service: all (default) or execution.")
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

    if service not in ("all", "execution"):
        raise typer.BadParameter("this release serves `execution` (and `all`, which is the same)")
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
            code = serve_workers(bind_host, bind_port, workers, options)
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot serve on {bind_host}:{bind_port}: {exc}", err=True)
            raise typer.Exit(2) from None
        raise typer.Exit(code)
    else:
        app = create_app(
            settings, environ=dict(os.environ), host=options["host"], server_process=True
        )
        uvicorn.run(app, **options)


def _call(fn: Any) -> Any:
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
        raise fail(exc, False) from None


@tokens_app.command("create")
def create(
    project: Annotated[str, typer.Option("--project", help="The project the token acts for.")],
    scope: Annotated[
        list[str],
        typer.Option(
            "--scope", help="execute, runs:read, runs:write, actions:read, metrics:read, admin"
        ),
    ],
    name: Annotated[str, typer.Option("--name")] = "",
    days: Annotated[int | None, typer.Option("--days", help="Expire after this many days.")] = None,
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    token_id, token = _call(
        lambda t: t.create(
            project, set(scope), name=name, ttl=timedelta(days=days) if days else None
        )
    )
    typer.echo(
        json.dumps(
            {"token_id": token_id, "token": token, "project_id": project, "scopes": sorted(scope)}
        )
    )


@tokens_app.command("list")
def list_tokens(project: Annotated[str | None, typer.Option("--project")] = None) -> None:
    """Tokens (never their values)."""
    rows = _call(lambda t: t.list(project))
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
def revoke(token_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a token by id; running servers refuse it within `token_cache_seconds` (2 s)."""
    ok = _call(lambda t: t.revoke(token_id))
    typer.echo("revoked" if ok else "no such active token")
    raise typer.Exit(0 if ok else 2)
