"""The index: patients, studies, series and instances, with where each instance's bytes are stored.

Columns hold what queries match on and what retrieval needs without touching storage; the instance's
full DICOM JSON (bulk data as BulkDataURI) is kept as text for /metadata. Every schema change goes through
an Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, Index, Text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Patient(SQLModel, table=True):
    __tablename__ = "patient"

    id: int | None = Field(default=None, primary_key=True)
    # Patient ID and its issuer identify a patient; the key joins them so one unique index covers both.
    patient_key: str = Field(max_length=200, unique=True)
    patient_id: str = Field(default="", max_length=64, index=True)
    issuer_of_patient_id: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=330)
    patient_birth_date: str = Field(default="", max_length=8)
    patient_sex: str = Field(default="", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class Study(SQLModel, table=True):
    __tablename__ = "study"

    id: int | None = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(max_length=64, unique=True)
    patient_fk: int = Field(foreign_key="patient.id", index=True)
    study_date: str = Field(default="", max_length=8, index=True)
    study_time: str = Field(default="", max_length=16)
    accession_number: str = Field(default="", max_length=64, index=True)
    study_id: str = Field(default="", max_length=16)
    study_description: str = Field(default="", max_length=64)
    referring_physician_name: str = Field(default="", max_length=330)
    institution_name: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Series(SQLModel, table=True):
    __tablename__ = "series"

    id: int | None = Field(default=None, primary_key=True)
    series_instance_uid: str = Field(max_length=64, unique=True)
    study_fk: int = Field(foreign_key="study.id", index=True)
    modality: str = Field(default="", max_length=16, index=True)
    series_number: int | None = None
    series_description: str = Field(default="", max_length=64)
    body_part_examined: str = Field(default="", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Instance(SQLModel, table=True):
    __tablename__ = "instance"
    __table_args__ = (Index("ix_instance_series_number", "series_fk", "instance_number"),)

    id: int | None = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(max_length=64, unique=True)
    series_fk: int = Field(foreign_key="series.id")
    sop_class_uid: str = Field(max_length=64)
    instance_number: int | None = None
    transfer_syntax_uid: str = Field(max_length=64)
    number_of_frames: int = 1
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    # Where the bytes are: a tier name and a key inside it; size and sha256 of the stored Part 10 file.
    tier: str = Field(max_length=64)
    storage_key: str = Field(max_length=400)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    # Pixel data position in the file, and per frame a JSON list of [offset, length] ranges.
    pixel_tag: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    pixel_vr: str = Field(default="", max_length=2)
    pixel_offset: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    pixel_length: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    encapsulated: bool = False
    frame_ranges: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    metadata_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
