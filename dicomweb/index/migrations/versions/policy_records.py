"""Policy records: care relationships, access grants with their approvals, research shares.

Revision ID: policy_records
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "policy_records"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _who(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.String(200), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "care_relationship",
        sa.Column("id", sa.Integer, primary_key=True),
        _who("doctor", False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.Column("institution", sa.String(64), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        _when("valid_from", False),
        _when("valid_until"),
        _who("created_by", False),
        _when("created_at", False),
        _when("ended_at"),
        _who("ended_by"),
    )
    op.create_index("ix_care_relationship_doctor", "care_relationship", ["doctor"])
    op.create_index("ix_care_relationship_patient_id", "care_relationship", ["patient_id"])
    op.create_index("ix_care_relationship_institution", "care_relationship", ["institution", "department"])
    op.create_table(
        "access_grant",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("institution", sa.String(64), nullable=False),
        _who("grantee", False),
        _who("requested_by", False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("anonymized", sa.Boolean, nullable=False, server_default=sa.false()),
        _when("expires_at"),
        _who("patient_approved_by"),
        _when("patient_approved_at"),
        _who("institution_approved_by"),
        _when("institution_approved_at"),
        _who("supervisor_approved_by"),
        _when("supervisor_approved_at"),
        _when("active_from"),
        _when("revoked_at"),
        _who("revoked_by"),
        sa.Column("revoke_reason", sa.Text, nullable=True),
        _when("created_at", False),
    )
    op.create_index("ix_access_grant_study_instance_uid", "access_grant", ["study_instance_uid"])
    op.create_index("ix_access_grant_grantee", "access_grant", ["grantee"])
    op.create_index("ix_access_grant_institution", "access_grant", ["institution"])
    op.create_table(
        "research_share",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("institution", sa.String(64), nullable=False),
        _who("shared_by", False),
        sa.Column("reason", sa.Text, nullable=False),
        _when("created_at", False),
        _when("revoked_at"),
        _who("revoked_by"),
        sa.Column("revoke_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_research_share_study_instance_uid", "research_share", ["study_instance_uid"])
    op.create_index("ix_research_share_institution", "research_share", ["institution"])
    # At most one active share per study and institution (a revoked one stays as history).
    active = sa.text("revoked_at IS NULL")
    op.create_index("ux_research_share_active", "research_share", ["study_instance_uid", "institution"],
                    unique=True, sqlite_where=active, postgresql_where=active)


def downgrade() -> None:
    op.drop_table("research_share")
    op.drop_table("access_grant")
    op.drop_table("care_relationship")
