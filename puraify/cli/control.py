"""``puraify init``, ``engines``, ``platforms``, ``flags`` and ``policy check``: Engine Control
from the operator's shell, on the store this machine's settings name. Changes apply at once in
this process and within ``control_cache_seconds`` in running servers."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ..errors import PuraifyError
from ._shared import JsonOpt, console, fail, load_settings, with_application
from .errors import write_json

__all__ = ["audit_app", "engines_app", "flags_app", "init", "platforms_app", "policy_app"]

engines_app = typer.Typer(no_args_is_help=True, help="Engines: register, list, revoke, keys.")
platforms_app = typer.Typer(no_args_is_help=True, help="Platform statuses.")
flags_app = typer.Typer(no_args_is_help=True, help="Feature flags.")
policy_app = typer.Typer(no_args_is_help=True, help="Ask Engine Control.")
audit_app = typer.Typer(no_args_is_help=True, help="Engine Control's audit log.")

_BY = "cli"


def _control(fn: Any, as_json: bool) -> Any:
    settings = load_settings()

    async def go(app: Any) -> Any:
        return await fn(app.control)

    try:
        return with_application(settings, go)
    except PuraifyError as exc:
        raise fail(exc, as_json) from None


def _scopes(values: list[str]) -> list[str]:
    return sorted({part.strip() for value in values for part in value.split(",") if part.strip()})


def init(
    admin_id: Annotated[
        str, typer.Option("--admin-id", help="The bootstrap admin engine's id.")
    ] = "admin",
    as_json: JsonOpt = False,
) -> None:
    """Make the home, apply the store's migrations, and register the bootstrap admin engine (its
    key printed once) and the execution service's own engine (`puraify engines rotate-key
    puraify-execution` gives its key, for a separate execution service). Run again, it changes
    nothing and says so."""
    from ..vault.crypto import Keyring

    settings = load_settings()
    done = _control(
        lambda c: c.bootstrap(admin_id=admin_id, execution_id=settings.control_engine_id), as_json
    )
    key_file = settings.vault_key_file
    made_key = settings.master_key is None and not key_file.exists()
    if made_key:
        try:
            Keyring.load(env_value=None, key_file=key_file, create=True)
        except PuraifyError as exc:
            raise fail(exc, as_json) from None
    if as_json:
        write_json(
            {
                "changed": done.changed or made_key,
                "home": str(settings.home),
                "engine_id": done.admin_id,
                "engine_key": done.admin_key,
                "execution_engine_id": done.execution_id,
                "execution_engine_key": done.execution_key,
                "vault_key_file": None if settings.master_key else str(key_file),
                "vault_key_created": made_key,
            }
        )
        return
    console.print(f"home {escape(str(settings.home))}: store ready")
    if made_key:
        console.print(f"vault key made: {escape(str(key_file))} (mode 0600; back it up)")
    if not done.changed and not made_key:
        console.print(
            f"nothing to do: engines {escape(done.admin_id)!s} and "
            f"{escape(done.execution_id)} are registered already"
        )
        return
    for engine_id, key in (
        (done.admin_id, done.admin_key),
        (done.execution_id, done.execution_key),
    ):
        if key is None:
            console.print(f"engine {escape(engine_id)}: registered already (key unchanged)")
        else:
            console.print(f"engine {escape(engine_id)}: its key, shown once, stored as a hash:")
            typer.echo(key)


@engines_app.command("register")
def register(
    engine_id: Annotated[str, typer.Argument()],
    permissions: Annotated[
        str,
        typer.Option(
            "--permissions",
            help='JSON {platform: {action_type: [scopes]}}, e.g. \'{"slack": {"*": ["slack:write"]}}\'.',
        ),
    ] = "{}",
    description: Annotated[str, typer.Option("--description")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Register an engine; its key is printed once."""
    try:
        parsed = json.loads(permissions)
    except ValueError:
        error = PuraifyError("--permissions is not JSON", code="invalid_arguments")
        raise fail(error, as_json) from None
    key = _control(
        lambda c: c.register(engine_id, parsed, description=description, by=_BY), as_json
    )
    if as_json:
        write_json({"engine_id": engine_id, "engine_key": key})
        return
    console.print(f"engine {escape(engine_id)} registered; its key, shown once:")
    typer.echo(key)


@engines_app.command("list")
def list_engines(as_json: JsonOpt = False) -> None:
    """Engines, their key ids and permissions (never their keys)."""
    rows = _control(lambda c: c.engines(), as_json)
    if as_json:
        write_json(rows)
        return
    table = Table(title="engines")
    for col in ("engine", "key id", "permissions", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["engine_id"],
            r["key_id"],
            json.dumps(r["permissions"]),
            str(r["revoked_at"] or "")[:19],
        )
    console.print(table)


@engines_app.command("revoke")
def revoke(engine_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Revoke an engine: its key stops working and every check for it says no."""
    _control(lambda c: c.revoke(engine_id, by=_BY), as_json)
    if as_json:
        write_json({"engine_id": engine_id, "revoked": True})
    else:
        typer.echo("revoked")


@engines_app.command("rotate-key")
def rotate_key(engine_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Give an engine a new key (printed once); the old one stops working at once."""
    key = _control(lambda c: c.rotate_key(engine_id, by=_BY), as_json)
    if as_json:
        write_json({"engine_id": engine_id, "engine_key": key})
        return
    console.print(f"engine {escape(engine_id)}: its new key, shown once:")
    typer.echo(key)


@engines_app.command("grant")
def grant(
    engine_id: Annotated[str, typer.Argument()],
    platform: Annotated[str, typer.Argument(help="A platform, or * for all.")],
    action: Annotated[str, typer.Argument(help="An action type, or * for all.")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="Repeat it or separate with commas.")
    ] = [],  # noqa: B006
    replace: Annotated[
        bool, typer.Option("--replace", help="Make this the engine's only permission.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Let an engine run an action on a platform (with these scopes)."""
    wanted = {platform: {action: _scopes(scope)}}
    result = _control(
        lambda c: c.set_permissions(engine_id, wanted, merge=not replace, by=_BY), as_json
    )
    if as_json:
        write_json({"engine_id": engine_id, "permissions": result})
    else:
        typer.echo(json.dumps(result))


@platforms_app.command("list")
def platforms(as_json: JsonOpt = False) -> None:
    """Platform statuses set so far (any other platform is active)."""
    found = _control(lambda c: c.platforms(detail=True), as_json)
    if as_json:
        write_json({"platforms": found})
        return
    table = Table(title="platforms (any other is active)")
    for col in ("platform", "status", "version", "message"):
        table.add_column(col)
    for name, state in found.items():
        table.add_row(name, state["status"], state["version"] or "", state["message"] or "")
    console.print(table)


@platforms_app.command("set-status")
def set_status(
    platform: Annotated[str, typer.Argument()],
    status: Annotated[str, typer.Argument(help="active, maintenance, disabled or deprecated.")],
    message: Annotated[str | None, typer.Option("--message")] = None,
    version: Annotated[str | None, typer.Option("--version")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set a platform's status: anything but active stops every action on it."""
    _control(
        lambda c: c.set_platform(platform, status, version=version, message=message, by=_BY),
        as_json,
    )
    if as_json:
        write_json({"platform": platform, "status": status})
    else:
        typer.echo(f"{platform}: {status}")


@flags_app.command("list")
def flags(as_json: JsonOpt = False) -> None:
    """Feature flags: those set, and the defaults of this command's profile for the others (a
    server's may differ: dangerous actions are off there until set)."""

    async def read(c: Any) -> tuple[dict[str, bool], dict[str, bool]]:
        return await c.policy.flags(), await c.registry.flags()

    merged, stored = _control(read, as_json)
    if as_json:
        write_json({"feature_flags": merged, "set": stored})
        return
    for name, enabled in sorted(merged.items()):
        how = "" if name in stored else " (not set: this profile's default)"
        typer.echo(f"{name}: {'on' if enabled else 'off'}{how}")


@flags_app.command("set")
def set_flag(
    name: Annotated[str, typer.Argument()],
    state: Annotated[str, typer.Argument(help="on or off.")],
    as_json: JsonOpt = False,
) -> None:
    """Turn a feature flag on or off."""
    if state not in ("on", "off"):
        error = PuraifyError("a flag is set `on` or `off`", code="invalid_arguments")
        raise fail(error, as_json)
    _control(lambda c: c.set_flag(name, state == "on", by=_BY), as_json)
    if as_json:
        write_json({"flag": name, "enabled": state == "on"})
    else:
        typer.echo(f"{name}: {state}")


@policy_app.command("check")
def check(
    engine_id: Annotated[str, typer.Argument()],
    platform: Annotated[str, typer.Argument()],
    action: Annotated[str, typer.Argument()],
    scope: Annotated[list[str], typer.Option("--scope")] = [],  # noqa: B006
    as_json: JsonOpt = False,
) -> None:
    """Ask whether an engine may run an action on a platform now; exits 1 when it may not."""
    scopes = _scopes(scope) or None
    verdict = _control(lambda c: c.check(engine_id, platform, action, scopes=scopes), as_json)
    if as_json:
        write_json(verdict.as_dict())
    else:
        word = "[green]allowed[/]" if verdict.allowed else f"[red]denied[/] ({verdict.reason})"
        console.print(f"{word}: {escape(verdict.message)}")
    raise typer.Exit(0 if verdict.allowed else 1)


@audit_app.command("list")
def audit_list(
    engine: Annotated[str | None, typer.Option("--engine")] = None,
    platform: Annotated[str | None, typer.Option("--platform")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="check, event or admin.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Audit events, newest first."""
    rows = _control(
        lambda c: c.events(engine_id=engine, platform=platform, kind=kind, limit=limit), as_json
    )
    if as_json:
        write_json(rows)
        return
    for r in rows:
        verdict = "" if r["allowed"] is None else ("allowed" if r["allowed"] else "denied")
        typer.echo(
            f"{r['at'][:19]} {r['kind']:<5} {r['engine_id'] or '-'} "
            f"{r['platform'] or '-'}.{r['action'] or '-'} {verdict} {r['reason'] or ''}".rstrip()
        )


@audit_app.command("prune")
def audit_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age like 90d or an ISO time.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete audit events older than the given age."""
    from .runs import parse_age

    cutoff = parse_age(older_than)
    count = _control(lambda c: c.prune(cutoff), as_json)
    if as_json:
        write_json({"pruned": count, "before": cutoff.isoformat()})
    else:
        typer.echo(f"pruned {count} audit event(s)")
