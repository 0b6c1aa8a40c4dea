"""The run store's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them; this
module is what queries use. Times are UTC; JSON columns hold capped, redacted data."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "JSONText",
    "StoredJSON",
    "UTCDateTime",
    "api_tokens",
    "attempts",
    "idempotency_records",
    "metadata",
    "run_events",
    "run_steps",
    "runs",
]


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` whose values always come back aware, in UTC.

    Everything stored is UTC, but SQLite keeps no time zone and hands back naive datetimes.
    Values are written exactly as ``DateTime(timezone=True)`` writes them.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


@dataclass(frozen=True, slots=True)
class JSONText:
    """A value serialized as JSON already; a ``StoredJSON`` column stores ``text`` as it is.

    For writers that serialize a value anyway (to measure or hash it): the column does not
    serialize it a second time. ``text`` must be what ``json.dumps`` makes of the value, so
    that the row is the same either way.
    """

    text: str


class StoredJSON(TypeDecorator[Any]):
    """``JSON`` that also accepts ``JSONText``; values are stored and read back as ``JSON``."""

    impl = JSON
    cache_ok = True
    should_evaluate_none = True  # as JSON's: None is stored as JSON null, not SQL NULL

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any]:
        serialize = self.impl_instance.bind_processor(dialect)
        if serialize is None:  # the driver serializes values itself: hand it the value
            return lambda value: json.loads(value.text) if isinstance(value, JSONText) else value

        def process(value: Any) -> Any:
            return value.text if isinstance(value, JSONText) else serialize(value)

        return process


metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("mission_name", String(500), nullable=False),
    Column("mission_hash", String(64), nullable=False),
    Column("mission_doc", StoredJSON, nullable=False),
    Column("context", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("idempotency_key", String(200), nullable=True, unique=True),
    Column("parent_run_id", String(64), ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    Column("workspace", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("warnings", JSON, nullable=False),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("project_id", String(200), nullable=True),
    Column("lease_epoch", Integer, nullable=False, default=1),
    Column("profile", String(16), nullable=False),
    Index("ix_runs_status_created", "status", "created_at"),
    Index("ix_runs_project_created", "project_id", "created_at"),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step_id", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("step_type", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("fence", BigInteger, nullable=False, default=0),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("output", StoredJSON, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_retryable", Boolean, nullable=True),
    Column("error_status", Integer, nullable=True),
    Column("reused_from", String(64), nullable=True),
)

attempts = Table(
    "step_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("fence", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    UniqueConstraint("run_id", "step_id", "fence", name="uq_attempt_fence"),
)

run_events = Table(
    "run_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(64), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("step_id", String(200), nullable=True),
    Column("data", JSON, nullable=False),
    Index("ix_events_run", "run_id", "id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("scopes", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

idempotency_records = Table(
    "idempotency_records",
    metadata,
    Column("project_id", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", JSON, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # while the first request works: renewed by it, taken over by a retry once past
    Column("lease_until", UTCDateTime(), nullable=True),
)

# Engine Control (migration 0008): engines, platform statuses, feature flags, the audit log.
control_engines = Table(
    "control_engines",
    metadata,
    Column("engine_id", String(128), primary_key=True),
    Column("key_id", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("permissions", JSON, nullable=False),  # {platform: {action: [scopes]}}
    Column("depends_on", JSON, nullable=False),
    Column("description", String(500), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

control_platforms = Table(
    "control_platforms",
    metadata,
    Column("platform", String(128), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("version", String(64), nullable=True),
    Column("message", String(500), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)

control_flags = Table(
    "control_flags",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

control_events = Table(
    "control_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(16), nullable=False),  # check, event, admin
    Column("request_id", String(64), nullable=True),
    Column("engine_id", String(128), nullable=True),
    Column("platform", String(128), nullable=True),
    Column("action", String(200), nullable=True),
    Column("allowed", Boolean, nullable=True),
    Column("reason", String(64), nullable=True),
    Column("data", JSON, nullable=False),
    Index("ix_control_events_at", "at"),
    Index("ix_control_events_engine", "engine_id", "at"),
    Index("ix_control_events_platform", "platform", "at"),
)

# The vault (migration 0009): sealed credentials; values never leave the store unsealed.
vault_credentials = Table(
    "vault_credentials",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("platform", String(128), nullable=False),
    Column("user_id", String(200), nullable=False),  # "" for the project's own
    Column("type", String(32), nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("last_used_at", UTCDateTime(), nullable=True),
    # the process refreshing its OAuth2 token, until when (migration 0010)
    Column("refresh_owner", String(64), nullable=True),
    Column("refresh_until", UTCDateTime(), nullable=True),
    UniqueConstraint("project_id", "platform", "user_id", name="uq_vault_owner"),
)

# OAuth2 authorizations in progress (migration 0010): single use, expiring; the state is kept
# only as its SHA-256, the PKCE verifier sealed by the vault's key.
oauth_states = Table(
    "oauth_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("project_id", String(200), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("platform", String(128), nullable=False),
    Column("redirect_uri", String(2000), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("sealed_verifier", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Index("ix_oauth_states_expires", "expires_at"),
)
