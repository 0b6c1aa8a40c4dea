"""Record the safety profile a run was created under (``server`` or ``local``).

Every later resume, retry or cancel of the run, from any edge, uses it. Runs that existed
before get ``server`` when they belong to a project (they came in through the API) and
``local`` otherwise (the command line).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("profile", sa.String(16), nullable=True))
    op.execute(
        "UPDATE runs SET profile = CASE WHEN project_id IS NULL THEN 'local' ELSE 'server' END"
    )
    with op.batch_alter_table("runs") as batch:
        batch.alter_column("profile", existing_type=sa.String(16), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("profile")
