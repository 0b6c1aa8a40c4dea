"""OAuth2 authorizations in progress: the state (hashed) with its sealed PKCE verifier; and a
credential's refresh claim (one process refreshes a token at a time).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "oauth_states",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(200), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=False),  # "" for the project's own
        sa.Column("platform", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("sealed_verifier", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )
    op.create_index("ix_oauth_states_expires", "oauth_states", ["expires_at"])
    with op.batch_alter_table("vault_credentials") as batch:
        batch.add_column(sa.Column("refresh_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("refresh_until", _TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("vault_credentials") as batch:
        batch.drop_column("refresh_until")
        batch.drop_column("refresh_owner")
    op.drop_index("ix_oauth_states_expires", table_name="oauth_states")
    op.drop_table("oauth_states")
