"""The policy records as the engine's SQL sees them (the records package owns the tables and their migration).

Light table clauses keep the predicates free of the records' ORM classes: only the columns matched on.
"""

from __future__ import annotations

from sqlalchemy import Boolean, DateTime, Integer, String, column, table

CARE = table(
    "care_relationship",
    column("id", Integer), column("doctor", String), column("patient_id", String),
    column("issuer_of_patient_id", String), column("institution", String), column("department", String),
    column("valid_from", DateTime(timezone=True)),
    column("valid_until", DateTime(timezone=True)), column("ended_at", DateTime(timezone=True)),
)
# Which patients each care relationship names, with the relationship's keys and times: kept so by triggers
# (migration policy_perf).
CARE_PATIENT = table(
    "care_patient",
    column("care_fk", Integer), column("patient_fk", Integer), column("doctor", String),
    column("institution", String), column("department", String), column("valid_from", DateTime(timezone=True)),
    column("valid_until", DateTime(timezone=True)), column("ended_at", DateTime(timezone=True)),
)
GRANT = table(
    "access_grant",
    column("study_instance_uid", String), column("grantee", String), column("anonymized", Boolean),
    column("active_from", DateTime(timezone=True)), column("revoked_at", DateTime(timezone=True)),
    column("expires_at", DateTime(timezone=True)),
)
SHARE = table(
    "research_share",
    column("study_instance_uid", String), column("institution", String), column("revoked_at", DateTime(timezone=True)),
)
IDENTIFIER = table("patient_identifier", column("patient_fk", Integer), column("value", String),
                   column("issuer", String))
