"""Drop two indexes that cost every insert and served no query.

``ix_attempts_run`` (run_id, step_id) is a prefix of the unique (run_id, step_id, fence)
index, which serves the same lookups. ``ix_runs_mission_name``: the only query on the name is a
substring filter (``LIKE '%...%'``), which no B-tree index can serve.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_attempts_run", table_name="step_attempts")
    op.drop_index("ix_runs_mission_name", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_mission_name", "runs", ["mission_name"])
    op.create_index("ix_attempts_run", "step_attempts", ["run_id", "step_id"])
