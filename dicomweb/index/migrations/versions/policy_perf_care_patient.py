"""Authorization speed: which patients each care relationship names, kept resolved by the database; on
PostgreSQL, indexes that let a search under a broad scope read indexes only.

A care relationship names a patient by PatientID with its issuer (an empty issuer matches any) or by one of the
patient's Other Patient IDs. Resolving that per search means a text-index probe into ``patient`` for every
relationship in scope (a department's 2,500 at 100,000 studies: most of the search's time). ``care_patient``
holds the resolved pairs with copies of what the predicates test on the relationship (doctor, institution,
department, the times it is in force). Triggers keep it exact in the writing transaction,
whoever writes (ingest, the records API, bulk loads): a new relationship, a new patient or Other Patient ID, a
changed or removed one. On PostgreSQL each trigger first takes a transaction lock on the PatientID value it
matches on (one of 256, so that a bulk load holds a bounded number; shared for patients, exclusive for
relationships), so that a relationship and its patient's first instance written at the same time cannot miss
each other, nor a relationship's end a patient written meanwhile: the second waits, then sees the first.

Revision ID: policy_perf
Revises: policy_records (and needs policy_index's patient_identifier)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "policy_perf"
down_revision = "policy_records"
branch_labels = None
depends_on = "policy_index"

LOCK_CLASS = 0x63617265  # "care": this migration's advisory locks, apart from anyone else's


_COPIED = "doctor, institution, department, valid_from, valid_until, ended_at"
INSERT = "{insert} care_patient (care_fk, patient_fk, " + _COPIED + ")\n"  # {insert}/{conflict}: per dialect


def _of_care(row: str) -> str:
    """The pairs of the relationship ``row`` (NEW): its patients found by their PatientID and Other IDs (index
    lookups by value, whatever the tables' statistics say during a bulk load)."""
    copied = ", ".join(f"{row}.{name}" for name in _COPIED.split(", "))
    issuer = f"{row}.issuer_of_patient_id"
    return (INSERT + f"SELECT {row}.id, p.id, {copied} FROM patient p WHERE p.patient_id = {row}.patient_id "
            f"AND ({issuer} = '' OR {issuer} = p.issuer_of_patient_id) "
            f"UNION SELECT {row}.id, i.patient_fk, {copied} FROM patient_identifier i WHERE i.value = "
            f"{row}.patient_id AND ({issuer} = '' OR {issuer} = i.issuer){{conflict}}")


def _naming(patient_fk: str, value: str, issuer: str) -> str:
    """The pairs of the relationships that name ``value`` with ``issuer`` (a patient's ID or one of its others)."""
    copied = ", ".join(f"c.{name}" for name in _COPIED.split(", "))
    return (INSERT + f"SELECT c.id, {patient_fk}, {copied} FROM care_relationship c WHERE c.patient_id = {value} "
            f"AND (c.issuer_of_patient_id = '' OR c.issuer_of_patient_id = {issuer}){{conflict}}")


def _of_patient(patient_fk: str) -> list[str]:
    """Every pair of the patient, afresh (a changed ID, a removed Other ID: rare)."""
    copied = ", ".join(f"c.{name}" for name in _COPIED.split(", "))
    return [f"DELETE FROM care_patient WHERE patient_fk = {patient_fk}",
            INSERT + f"SELECT c.id, p.id, {copied} FROM patient p JOIN care_relationship c ON c.patient_id = "
            "p.patient_id AND (c.issuer_of_patient_id = '' OR c.issuer_of_patient_id = p.issuer_of_patient_id) "
            f"WHERE p.id = {patient_fk} UNION SELECT c.id, i.patient_fk, {copied} FROM patient_identifier i "
            "JOIN care_relationship c ON c.patient_id = i.value AND (c.issuer_of_patient_id = '' OR "
            f"c.issuer_of_patient_id = i.issuer) WHERE i.patient_fk = {patient_fk}{{conflict}}"]


# (table, event, the PatientID value to lock on, the statements)
TRIGGERS: list[tuple[str, str, str, list[str]]] = [
    ("care_relationship", "INSERT", "NEW.patient_id", [_of_care("NEW")]),
    ("care_relationship", "UPDATE", "NEW.patient_id",
     ["DELETE FROM care_patient WHERE care_fk = OLD.id", _of_care("NEW")]),
    ("care_relationship", "DELETE", "OLD.patient_id", ["DELETE FROM care_patient WHERE care_fk = OLD.id"]),
    ("patient", "INSERT", "NEW.patient_id", [_naming("NEW.id", "NEW.patient_id", "NEW.issuer_of_patient_id")]),
    ("patient", "UPDATE OF patient_id, issuer_of_patient_id", "NEW.patient_id", _of_patient("NEW.id")),
    ("patient", "DELETE", "OLD.patient_id", ["DELETE FROM care_patient WHERE patient_fk = OLD.id"]),
    ("patient_identifier", "INSERT", "NEW.value", [_naming("NEW.patient_fk", "NEW.value", "NEW.issuer")]),
    ("patient_identifier", "UPDATE", "NEW.value", _of_patient("OLD.patient_fk") + _of_patient("NEW.patient_fk")),
    ("patient_identifier", "DELETE", "OLD.value", _of_patient("OLD.patient_fk")),
]


def _dialect(statement: str, postgres: bool) -> str:
    return statement.format(insert="INSERT INTO" if postgres else "INSERT OR IGNORE INTO",
                            conflict=" ON CONFLICT DO NOTHING" if postgres else "")


def _name(table: str, event: str) -> str:
    return f"trg_care_patient_{table}_{event.split()[0].lower()}"


def upgrade() -> None:
    op.create_table(
        "care_patient",
        sa.Column("care_fk", sa.Integer, primary_key=True),
        sa.Column("patient_fk", sa.Integer, primary_key=True),
        sa.Column("doctor", sa.String(200), nullable=False),
        sa.Column("institution", sa.String(64), nullable=False),
        sa.Column("department", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    # A scope's patients in force, read from the index alone on PostgreSQL.
    in_force = ["valid_from", "valid_until", "ended_at"]
    op.create_index("ix_care_patient_department", "care_patient", ["institution", "department", "patient_fk"],
                    postgresql_include=in_force)
    op.create_index("ix_care_patient_doctor", "care_patient", ["doctor", "patient_fk"], postgresql_include=in_force)
    op.create_index("ix_care_patient_patient", "care_patient", ["patient_fk"])
    postgres = op.get_bind().dialect.name == "postgresql"
    copied = ", ".join(f"c.{name}" for name in _COPIED.split(", "))
    op.execute(_dialect(
        INSERT + f"SELECT c.id, p.id, {copied} FROM care_relationship c JOIN patient p ON p.patient_id = c.patient_id "
        "AND (c.issuer_of_patient_id = '' OR c.issuer_of_patient_id = p.issuer_of_patient_id) "
        f"UNION SELECT c.id, i.patient_fk, {copied} FROM care_relationship c JOIN patient_identifier i ON i.value = "
        "c.patient_id AND (c.issuer_of_patient_id = '' OR c.issuer_of_patient_id = i.issuer) WHERE 1 = 1{conflict}",
        postgres))
    if postgres:
        op.execute("ANALYZE care_patient")  # the planner's row counts, not an empty table's, from the start
        # A search under a broad scope (an institution, a department, research shares) walks the newest studies
        # testing each; with the columns the scopes test in the date index, that walk reads the index alone
        # (services/query.py picks the rows first, then reads the few answered ones).
        op.execute("CREATE INDEX ix_study_date_scope ON study (study_date, id) "
                   "INCLUDE (patient_fk, institution_name, study_instance_uid)")
        # An institution's active shares read from the index alone.
        op.execute("CREATE INDEX ix_research_share_open ON research_share (institution) INCLUDE (study_instance_uid) "
                   "WHERE revoked_at IS NULL")
    for table, event, value, statements in TRIGGERS:
        name = _name(table, event)
        if postgres:
            returned = "OLD" if event == "DELETE" else "NEW"
            # Relationships lock exclusively, patients shared: ingests never wait for each other.
            lock = "pg_advisory_xact_lock" if table == "care_relationship" else "pg_advisory_xact_lock_shared"
            body = ";\n".join([f"PERFORM {lock}({LOCK_CLASS}, hashtext({value}) & 255)",
                                *(_dialect(st, postgres) for st in statements)])
            op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                       f"BEGIN\n{body};\nRETURN {returned};\nEND $$")
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
        else:
            body = ";\n".join(_dialect(st, postgres) for st in statements)
            op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW BEGIN\n{body};\nEND")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("DROP INDEX IF EXISTS ix_research_share_open")
        op.execute("DROP INDEX IF EXISTS ix_study_date_scope")
    for table, event, _, _ in TRIGGERS:
        name = _name(table, event)
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    op.drop_table("care_patient")
