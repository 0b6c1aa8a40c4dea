"""Engine Control: engines and their keys and permissions, platform statuses, feature flags,
and the audit log of checks and engine events.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "control_engines",
        sa.Column("engine_id", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_table(
        "control_platforms",
        sa.Column("platform", sa.String(128), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("message", sa.String(500), nullable=True),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "control_flags",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "control_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("at", _TS, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("engine_id", sa.String(128), nullable=True),
        sa.Column("platform", sa.String(128), nullable=True),
        sa.Column("action", sa.String(200), nullable=True),
        sa.Column("allowed", sa.Boolean(), nullable=True),
        sa.Column("reason", sa.String(64), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_control_events_at", "control_events", ["at"])
    op.create_index("ix_control_events_engine", "control_events", ["engine_id", "at"])
    op.create_index("ix_control_events_platform", "control_events", ["platform", "at"])


def downgrade() -> None:
    op.drop_table("control_events")
    op.drop_table("control_flags")
    op.drop_table("control_platforms")
    op.drop_table("control_engines")
