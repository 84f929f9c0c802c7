"""Authorization: the patients' other identities and the series flagged with burned-in annotation.

Revision ID: policy_index
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "policy_index"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "patient_identifier",
        sa.Column("patient_fk", sa.Integer, sa.ForeignKey("patient.id"), primary_key=True),
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("issuer", sa.String(64), primary_key=True),
    )
    op.create_index("ix_patient_identifier_value", "patient_identifier", ["value", "issuer"])
    with op.batch_alter_table("series") as batch:
        batch.add_column(sa.Column("burned_in_annotation", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
    # A national ID is matched on PatientID too: index it with its issuer.
    op.create_index("ix_patient_id_issuer", "patient", ["patient_id", "issuer_of_patient_id"])
    op.create_index("ix_study_institution_name", "study", ["institution_name"])


def downgrade() -> None:
    op.drop_index("ix_study_institution_name", "study")
    op.drop_index("ix_patient_id_issuer", "patient")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("burned_in_annotation")
    op.drop_table("patient_identifier")
