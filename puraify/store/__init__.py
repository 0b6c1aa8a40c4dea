"""The run store: runs, step attempts and run events in SQLite (embedded) or PostgreSQL.

May import: ``errors``, ``mission``, ``runtime`` (the recorder protocol it implements),
SQLAlchemy and Alembic. Nothing above it imports it: the CLI, the app
factory and the worker compose it into the ``Engine``.
Invariants: a run is committed before its id is shown; an attempt before it is dispatched; a
step's terminal state before its dependents start; a result whose fence is stale is dropped.
``RunStore`` (``runs``) composes the rest: ``writes`` builds rows, ``records`` reads runs back,
``leases`` says who executes a run, ``history`` is the read side of past runs.
"""

from __future__ import annotations

from .database import Database, sqlite_url
from .runs import RunRecord, RunStore, StepRow
from .tokens import SCOPES, Principal, TokenStore

__all__ = [
    "SCOPES",
    "Database",
    "Principal",
    "RunRecord",
    "RunStore",
    "StepRow",
    "TokenStore",
    "sqlite_url",
]
