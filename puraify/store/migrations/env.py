"""Alembic environment: runs migrations over the engine's own async connection."""

from __future__ import annotations

from typing import Any

from alembic import context

from puraify.store.tables import metadata


def _run(connection: Any) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through puraify.store.database
    raise RuntimeError("run migrations with `puraify db upgrade`")
_run(connection)
