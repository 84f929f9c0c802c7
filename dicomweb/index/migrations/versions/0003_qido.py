"""QIDO-RS: folded person-name groups, series performed-procedure-step start, search indexes.

Revision ID: 0003_qido
Revises: 0001
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from dicomweb.services.query import pn_search_columns

revision = "0003_qido"
down_revision = "0001"
branch_labels = None
depends_on = None

_NAME_COLUMNS = {
    "patient": ("patient_name", "patient_name"),
    "study": ("referring_physician_name", "referring_physician"),
}
_SUFFIXES = ("alphabetic", "ideographic", "phonetic")


def _backfill(bind: sa.engine.Connection) -> None:
    """Existing rows get their search columns (a one-time pass; new rows get them at ingest)."""
    for table_name, (source, prefix) in _NAME_COLUMNS.items():
        table = sa.table(table_name, sa.column("id"), sa.column(source),
                         *(sa.column(f"{prefix}_{s}") for s in _SUFFIXES))
        for row_id, value in bind.execute(sa.select(table.c.id, table.c[source])).all():
            if value:
                bind.execute(table.update().where(table.c.id == row_id).values(**pn_search_columns(prefix, value)))
    series = sa.table("series", sa.column("id"), sa.column("performed_procedure_step_start_date"),
                      sa.column("performed_procedure_step_start_time"))
    instance = sa.table("instance", sa.column("id"), sa.column("series_fk"), sa.column("metadata_json"))
    first = sa.select(sa.func.min(instance.c.id)).group_by(instance.c.series_fk).scalar_subquery()
    rows = bind.execute(sa.select(instance.c.series_fk, instance.c.metadata_json).where(instance.c.id.in_(first)))
    for series_fk, text in rows.all():
        metadata = json.loads(text)
        values = {
            column: str((metadata.get(tag, {}).get("Value") or [""])[0])[:size]
            for column, tag, size in (("performed_procedure_step_start_date", "00400244", 8),
                                      ("performed_procedure_step_start_time", "00400245", 16))
        }
        if any(values.values()):
            bind.execute(series.update().where(series.c.id == series_fk).values(**values))


def upgrade() -> None:
    with op.batch_alter_table("patient") as batch:
        for suffix in _SUFFIXES:
            batch.add_column(sa.Column(f"patient_name_{suffix}", sa.String(330), nullable=False, server_default=""))
    with op.batch_alter_table("study") as batch:
        for suffix in _SUFFIXES:
            batch.add_column(
                sa.Column(f"referring_physician_{suffix}", sa.String(330), nullable=False, server_default="")
            )
    with op.batch_alter_table("series") as batch:
        batch.add_column(
            sa.Column("performed_procedure_step_start_date", sa.String(8), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("performed_procedure_step_start_time", sa.String(16), nullable=False, server_default="")
        )
    op.create_index(
        "ix_patient_name_alphabetic", "patient", ["patient_name_alphabetic"],
        postgresql_ops={"patient_name_alphabetic": "varchar_pattern_ops"},
    )
    op.create_index("ix_study_date_id", "study", ["study_date", "id"])
    _backfill(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_study_date_id", "study")
    op.drop_index("ix_patient_name_alphabetic", "patient")
    with op.batch_alter_table("series") as batch:
        batch.drop_column("performed_procedure_step_start_time")
        batch.drop_column("performed_procedure_step_start_date")
    with op.batch_alter_table("study") as batch:
        for suffix in _SUFFIXES:
            batch.drop_column(f"referring_physician_{suffix}")
    with op.batch_alter_table("patient") as batch:
        for suffix in _SUFFIXES:
            batch.drop_column(f"patient_name_{suffix}")
