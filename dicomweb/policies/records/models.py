"""The policy records as rows: care relationships, access grants with their approvals, research shares.

The policy engine's SQL (``policies/tables.py``) reads these tables by name inside its predicates, so the
table and column names are a contract; migration ``policy_records`` creates them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, DateTime, Dialect, Index, Text, false, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from dicomweb.index.models import utcnow

from .common import opt_utc


class UtcDateTime(TypeDecorator[datetime]):
    """Times in UTC both ways: stored converted to UTC (SQLite keeps no offset), read back aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return opt_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return opt_utc(value)


def _when(nullable: bool = True) -> Column:  # type: ignore[type-arg]
    return Column(UtcDateTime(), nullable=nullable)


class CareRelationship(SQLModel, table=True):
    """A doctor treats a patient (PatientID with its issuer; "" issuer: any) in a department of an institution."""

    __tablename__ = "care_relationship"
    __table_args__ = (
        Index("ix_care_relationship_doctor", "doctor"),
        Index("ix_care_relationship_patient_id", "patient_id"),
        Index("ix_care_relationship_institution", "institution", "department"),
    )

    id: int | None = Field(default=None, primary_key=True)
    doctor: str = Field(max_length=200)
    patient_id: str = Field(max_length=64)
    issuer_of_patient_id: str = Field(default="", max_length=64)
    institution: str = Field(max_length=64)
    department: str = Field(default="", max_length=64)
    valid_from: datetime = Field(default_factory=utcnow, sa_column=_when(False))
    valid_until: datetime | None = Field(default=None, sa_column=_when())
    created_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))
    ended_at: datetime | None = Field(default=None, sa_column=_when())
    ended_by: str | None = Field(default=None, max_length=200)


class AccessGrant(SQLModel, table=True):
    """Access to one study for one subject: given by its patient, or requested (legal, supervised) and approved.

    ``active_from`` stays null until every approval the kind needs is in; revocation is permanent.
    """

    __tablename__ = "access_grant"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)  # patient | legal | supervised
    study_instance_uid: str = Field(max_length=64, index=True)
    institution: str = Field(default="", max_length=64, index=True)  # the study's, when the grant was made
    grantee: str = Field(max_length=200, index=True)
    requested_by: str = Field(max_length=200)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    anonymized: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    expires_at: datetime | None = Field(default=None, sa_column=_when())
    patient_approved_by: str | None = Field(default=None, max_length=200)
    patient_approved_at: datetime | None = Field(default=None, sa_column=_when())
    institution_approved_by: str | None = Field(default=None, max_length=200)
    institution_approved_at: datetime | None = Field(default=None, sa_column=_when())
    supervisor_approved_by: str | None = Field(default=None, max_length=200)
    supervisor_approved_at: datetime | None = Field(default=None, sa_column=_when())
    active_from: datetime | None = Field(default=None, sa_column=_when())
    revoked_at: datetime | None = Field(default=None, sa_column=_when())
    revoked_by: str | None = Field(default=None, max_length=200)
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))


class ResearchShare(SQLModel, table=True):
    """A study its institution shares for research: that institution's researchers see it, de-identified."""

    __tablename__ = "research_share"
    __table_args__ = (
        # One active share per study and institution; revoked shares stay as history.
        Index("ux_research_share_active", "study_instance_uid", "institution", unique=True,
              sqlite_where=text("revoked_at IS NULL"), postgresql_where=text("revoked_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(max_length=64, index=True)
    institution: str = Field(max_length=64, index=True)
    shared_by: str = Field(max_length=200)
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_when(False))
    revoked_at: datetime | None = Field(default=None, sa_column=_when())
    revoked_by: str | None = Field(default=None, max_length=200)
    revoke_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
