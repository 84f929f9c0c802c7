"""The first index: patient, study, series, instance.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)]


def upgrade() -> None:
    op.create_table(
        "patient",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("patient_key", sa.String(200), nullable=False, unique=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("issuer_of_patient_id", sa.String(64), nullable=False),
        sa.Column("patient_name", sa.String(330), nullable=False),
        sa.Column("patient_birth_date", sa.String(8), nullable=False),
        sa.Column("patient_sex", sa.String(16), nullable=False),
        *_timestamps(),
    )
    op.create_index("ix_patient_patient_id", "patient", ["patient_id"])

    op.create_table(
        "study",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("patient_fk", sa.Integer, sa.ForeignKey("patient.id"), nullable=False),
        sa.Column("study_date", sa.String(8), nullable=False),
        sa.Column("study_time", sa.String(16), nullable=False),
        sa.Column("accession_number", sa.String(64), nullable=False),
        sa.Column("study_id", sa.String(16), nullable=False),
        sa.Column("study_description", sa.String(64), nullable=False),
        sa.Column("referring_physician_name", sa.String(330), nullable=False),
        sa.Column("institution_name", sa.String(64), nullable=False),
        *_timestamps(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_study_patient_fk", "study", ["patient_fk"])
    op.create_index("ix_study_study_date", "study", ["study_date"])
    op.create_index("ix_study_accession_number", "study", ["accession_number"])

    op.create_table(
        "series",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("series_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("study_fk", sa.Integer, sa.ForeignKey("study.id"), nullable=False),
        sa.Column("modality", sa.String(16), nullable=False),
        sa.Column("series_number", sa.Integer, nullable=True),
        sa.Column("series_description", sa.String(64), nullable=False),
        sa.Column("body_part_examined", sa.String(16), nullable=False),
        *_timestamps(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_series_modality", "series", ["modality"])
    op.create_index("ix_series_study_fk", "series", ["study_fk"])

    op.create_table(
        "instance",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
        sa.Column("series_fk", sa.Integer, sa.ForeignKey("series.id"), nullable=False),
        sa.Column("sop_class_uid", sa.String(64), nullable=False),
        sa.Column("instance_number", sa.Integer, nullable=True),
        sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
        sa.Column("number_of_frames", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("columns", sa.Integer, nullable=True),
        sa.Column("bits_allocated", sa.Integer, nullable=True),
        sa.Column("tier", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(400), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("pixel_tag", sa.BigInteger, nullable=True),
        sa.Column("pixel_vr", sa.String(2), nullable=False),
        sa.Column("pixel_offset", sa.BigInteger, nullable=True),
        sa.Column("pixel_length", sa.BigInteger, nullable=True),
        sa.Column("encapsulated", sa.Boolean, nullable=False),
        sa.Column("frame_ranges", sa.Text, nullable=True),
        sa.Column("metadata_json", sa.Text, nullable=False),
        *_timestamps(),
    )
    op.create_index("ix_instance_series_number", "instance", ["series_fk", "instance_number"])


def downgrade() -> None:
    for table in ("instance", "series", "study", "patient"):
        op.drop_table(table)
