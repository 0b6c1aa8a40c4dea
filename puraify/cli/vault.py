"""``puraify vault``: credentials from the operator's shell. Values are read from standard
input or a prompt, never from the command line (which other users can see, and shells keep)."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from ..errors import PuraifyError
from ._shared import JsonOpt, console, fail, load_settings
from .errors import write_json

__all__ = ["vault_app"]

vault_app = typer.Typer(no_args_is_help=True, help="Credentials, encrypted at rest.")


def _vault(fn: Any, as_json: bool, *, create_key: bool = False) -> Any:
    from ..service import open_database
    from ..vault.crypto import Keyring
    from ..vault.store import VaultStore

    settings = load_settings()

    async def go() -> Any:
        secret = settings.master_key.get_secret_value() if settings.master_key else None
        keyring = Keyring.load(
            env_value=secret, key_file=settings.vault_key_file, create=create_key
        )
        db = await open_database(settings)
        try:
            return await fn(VaultStore(db, keyring), keyring, settings)
        finally:
            await db.dispose()

    try:
        return asyncio.run(go())
    except PuraifyError as exc:
        raise fail(exc, as_json) from None


def _read_value() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("value (not shown): ")
    return sys.stdin.read().rstrip("\n")


@vault_app.command("set")
def set_credential(
    project: Annotated[str, typer.Argument()],
    platform: Annotated[str, typer.Argument()],
    kind: Annotated[
        str,
        typer.Option(
            "--type",
            help="token, api_key, basic, oauth2, smtp, database_url, ssh_key, webhook_secret.",
        ),
    ],
    user: Annotated[str | None, typer.Option("--user", help="A user's own credential.")] = None,
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated.")] = "",
    expires: Annotated[str | None, typer.Option("--expires", help="ISO time.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Store a credential; its value comes from standard input or a prompt (a JSON object for
    types with several fields)."""
    raw = _read_value()
    value: Any = raw
    if raw.lstrip().startswith("{"):
        try:
            value = json.loads(raw)
        except ValueError:
            raise fail(
                PuraifyError("the value is not JSON", code="invalid_credential"), as_json
            ) from None
    when = None
    if expires:
        try:
            when = datetime.fromisoformat(expires)
        except ValueError:
            raise fail(
                PuraifyError("--expires is not an ISO time", code="invalid_arguments"), as_json
            ) from None
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]

    async def put(store: Any, keyring: Any, settings: Any) -> Any:
        return await store.put(
            project, platform, kind, value, user_id=user, scopes=wanted, expires_at=when
        )

    found = _vault(put, as_json, create_key=True)
    if as_json:
        write_json(found.describe())
    else:
        console.print(f"stored {kind} for {project}/{platform} (version {found.version})")


@vault_app.command("list")
def list_credentials(
    project: Annotated[str | None, typer.Option("--project")] = None, as_json: JsonOpt = False
) -> None:
    """Credentials' metadata (never their values)."""

    async def read(store: Any, keyring: Any, settings: Any) -> Any:
        return await store.list(project)

    rows = [c.describe() for c in _vault(read, as_json)]
    if as_json:
        write_json(rows)
        return
    for r in rows:
        who = f" user {r['user_id']}" if r["user_id"] else ""
        typer.echo(
            f"{r['project_id']}/{r['platform']}{who}: {r['type']} v{r['version']} "
            f"{','.join(r['scopes'])} {r['status']}".rstrip()
        )


@vault_app.command("show")
def show(
    project: Annotated[str, typer.Argument()],
    platform: Annotated[str, typer.Argument()],
    user: Annotated[str | None, typer.Option("--user")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One credential's metadata: what a step of this project (or user) would get."""

    async def read(store: Any, keyring: Any, settings: Any) -> Any:
        return await store.describe(project, platform, user_id=user)

    found = _vault(read, as_json)
    if found is None:
        error = PuraifyError(f"no credential for {project}/{platform}", code="not_found")
        raise fail(error, as_json)
    if as_json:
        write_json(found.describe())
    else:
        for name, value in found.describe().items():
            typer.echo(f"{name}: {value}")


@vault_app.command("delete")
def delete(
    project: Annotated[str, typer.Argument()],
    platform: Annotated[str, typer.Argument()],
    user: Annotated[str | None, typer.Option("--user")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a credential."""

    async def drop(store: Any, keyring: Any, settings: Any) -> Any:
        return await store.delete(project, platform, user_id=user)

    if not _vault(drop, as_json):
        raise fail(
            PuraifyError(f"no credential for {project}/{platform}", code="not_found"), as_json
        )
    if as_json:
        write_json({"deleted": True})
    else:
        typer.echo("deleted")


@vault_app.command("rotate")
def rotate(
    drop_old: Annotated[
        bool, typer.Option("--drop-old", help="Remove the old keys once nothing uses them.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Seal every credential again under a new key (added to the key file). With a key in
    PURAIFY_MASTER_KEY, add the new one there instead."""
    from ..vault.crypto import Keyring

    async def go(store: Any, keyring: Any, settings: Any) -> Any:
        if settings.master_key is not None:
            raise PuraifyError(
                "the keys come from PURAIFY_MASTER_KEY: add a new `id:key` at its end, then "
                "run `puraify vault rotate` to seal every credential under it",
                code="invalid_arguments",
            )
        key_id, key = Keyring.new_key()
        wider = Keyring([*keyring.keys.items(), (key_id, key)])
        wider.save(settings.vault_key_file)  # the new key is kept before anything uses it
        count = await store.reseal(wider)
        dropped: list[str] = []
        if drop_old:
            dropped = [k for k in wider.keys if k != key_id]
            Keyring([(key_id, key)]).save(settings.vault_key_file)
        return key_id, count, dropped

    key_id, count, dropped = _vault(go, as_json)
    if as_json:
        write_json({"key_id": key_id, "resealed": count, "dropped_keys": dropped})
    else:
        typer.echo(f"{count} credential(s) sealed under key {key_id}")
