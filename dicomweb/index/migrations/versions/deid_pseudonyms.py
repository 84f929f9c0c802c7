"""De-identification: UID pseudonyms and the originals they resolve to.

Revision ID: deid_pseudonyms
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "deid_pseudonyms"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uid_pseudonym",
        sa.Column("pseudonym", sa.String(64), primary_key=True),
        sa.Column("original", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("uid_pseudonym")
