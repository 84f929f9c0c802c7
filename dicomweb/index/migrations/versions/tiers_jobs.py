"""Tiers and jobs: last-read times, in-flight tier moves, background jobs.

Revision ID: tiers_jobs
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "tiers_jobs"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "study_access",
        sa.Column("study_instance_uid", sa.String(64), primary_key=True),
        _when("last_read_at"),
    )
    op.create_index("ix_study_access_last_read_at", "study_access", ["last_read_at"])
    op.create_table(
        "tier_move",
        sa.Column("instance_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("source_tier", sa.String(64), nullable=False),
        sa.Column("target_tier", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(400), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        _when("updated_at"),
    )
    op.create_index("ix_tier_move_study_instance_uid", "tier_move", ["study_instance_uid"])
    op.create_table(
        "job",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("dedup_key", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("worker", sa.String(200), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        _when("started_at", True),
        _when("finished_at", True),
        _when("next_attempt_at", True),
    )
    op.create_index("ix_job_state_created", "job", ["state", "created_at"])
    op.create_index("ix_job_dedup_key", "job", ["dedup_key"])


def downgrade() -> None:
    op.drop_table("job")
    op.drop_table("tier_move")
    op.drop_table("study_access")
