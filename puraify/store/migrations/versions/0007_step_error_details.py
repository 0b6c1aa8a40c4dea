"""A step's error keeps whether a retry may help and the platform's HTTP status, as the live
result says them, so a run read back (or a single action answered from the store) tells the
caller the same.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        batch.add_column(sa.Column("error_retryable", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("error_status", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_column("error_status")
        batch.drop_column("error_retryable")
