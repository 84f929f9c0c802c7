"""The audit tables: ``audit_event`` (the hash-chained records) and ``audit_head`` (the chain's last link).

Created by the migration ``audit_log``. ``audit_head`` holds one row; writers lock it, so records of every
process (server workers, the DIMSE gateway, the CLI) join one linear chain.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from ..index.models import utcnow

GENESIS = "0" * 64  # prev_hash of the first record


class AuditRecord(SQLModel, table=True):
    __tablename__ = "audit_event"

    # Writers assign ids themselves, under the head lock, so the chain has no gaps (a sequence may skip).
    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), index=True,
                                                                           nullable=False))
    subject: str = Field(default="", max_length=256, index=True)
    roles: str = Field(default="", max_length=512)
    institution_of_principal: str = Field(default="", max_length=128)
    action: str = Field(default="", max_length=32)
    outcome: str = Field(default="", max_length=16)
    status: int | None = None
    method: str = Field(default="", max_length=16)
    path: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    query: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    study_uid: str = Field(default="", max_length=64, index=True)
    series_uid: str = Field(default="", max_length=64)
    instance_uid: str = Field(default="", max_length=64)
    patient_id: str = Field(default="", max_length=64, index=True)
    institution: str = Field(default="", max_length=128)
    client_ip: str = Field(default="", max_length=64)
    user_agent: str = Field(default="", max_length=512)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    count: int | None = None
    bytes_sent: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class AuditHead(SQLModel, table=True):
    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    last_id: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    last_hash: str = Field(default=GENESIS, max_length=64)


T_AUDIT = AuditRecord.__table__  # type: ignore[attr-defined]
T_HEAD = AuditHead.__table__  # type: ignore[attr-defined]
