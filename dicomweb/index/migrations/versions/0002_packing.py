"""Packing (issue 8): series containers, and which instances are read from one.

Revision ID: 0002_packing
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_packing"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "packed_series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("series_instance_uid", sa.String(64), nullable=False),
        sa.Column("tier", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(400), nullable=False),
        sa.Column("codec", sa.String(64), nullable=False),
        sa.Column("instances", sa.Integer, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("packed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_packed_series_series_instance_uid", "packed_series", ["series_instance_uid"])
    # Batch mode: SQLite cannot add a foreign key to an existing table in place.
    with op.batch_alter_table("instance") as batch:
        batch.add_column(sa.Column("container_fk", sa.Integer, nullable=True))
        batch.create_foreign_key("fk_instance_container_fk", "packed_series", ["container_fk"], ["id"])
        batch.create_index("ix_instance_container_fk", ["container_fk"])


def downgrade() -> None:
    with op.batch_alter_table("instance") as batch:
        batch.drop_index("ix_instance_container_fk")
        batch.drop_constraint("fk_instance_container_fk", type_="foreignkey")
        batch.drop_column("container_fk")
    op.drop_index("ix_packed_series_series_instance_uid", "packed_series")
    op.drop_table("packed_series")
