"""The vault: credentials per project, platform and (optionally) user, sealed with a key id.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "vault_credentials",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("project_id", sa.String(200), nullable=False),
        sa.Column("platform", sa.String(128), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),  # "" for the project's own
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.UniqueConstraint("project_id", "platform", "user_id", name="uq_vault_owner"),
    )


def downgrade() -> None:
    op.drop_table("vault_credentials")
