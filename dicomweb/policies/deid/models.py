"""The ``uid_pseudonym`` table (migration ``deid_pseudonyms``): pseudonym -> original, for resolving back."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel

from dicomweb.index.models import utcnow


class UidPseudonym(SQLModel, table=True):
    __tablename__ = "uid_pseudonym"

    pseudonym: str = Field(primary_key=True, max_length=64)
    original: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))
