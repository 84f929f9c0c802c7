"""DIMSE gateway: modality worklist items and performed procedure steps.

Revision ID: dimse_gateway
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "dimse_gateway"
down_revision = "0001"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "scheduled_procedure_step",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sps_id", sa.String(16), nullable=False, unique=True),
        sa.Column("requested_procedure_id", sa.String(16), nullable=False),
        sa.Column("accession_number", sa.String(16), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(330), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("station_ae_title", sa.String(16), nullable=False),
        sa.Column("start_date", sa.String(8), nullable=False),
        sa.Column("start_time", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dataset_json", sa.Text, nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    for column in ("accession_number", "study_instance_uid", "patient_id", "start_date"):
        op.create_index(f"ix_scheduled_procedure_step_{column}", "scheduled_procedure_step", [column])
    op.create_table(
        "performed_procedure_step",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("calling_ae_title", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("study_instance_uid", sa.String(64), nullable=False),
        sa.Column("sps_fk", sa.Integer, sa.ForeignKey("scheduled_procedure_step.id"), nullable=True),
        sa.Column("series_uids", sa.Text, nullable=False),
        sa.Column("dataset_json", sa.Text, nullable=False),
        _when("created_at"),
        _when("updated_at"),
    )
    op.create_index("ix_performed_procedure_step_study_instance_uid", "performed_procedure_step",
                    ["study_instance_uid"])


def downgrade() -> None:
    op.drop_table("performed_procedure_step")
    op.drop_table("scheduled_procedure_step")
