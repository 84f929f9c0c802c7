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
    # QIDO (migration 0003_qido): the name's component groups, NFKC case-folded, for person-name matching.
    patient_name_alphabetic: str = Field(default="", max_length=330)
    patient_name_ideographic: str = Field(default="", max_length=330)
    patient_name_phonetic: str = Field(default="", max_length=330)


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
    # QIDO (migration 0003_qido): folded component groups of ReferringPhysicianName.
    referring_physician_alphabetic: str = Field(default="", max_length=330)
    referring_physician_ideographic: str = Field(default="", max_length=330)
    referring_physician_phonetic: str = Field(default="", max_length=330)


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
    # QIDO (migration 0003_qido): default return attributes of the series level (PS3.18 table 10.6.3-4).
    performed_procedure_step_start_date: str = Field(default="", max_length=8)
    performed_procedure_step_start_time: str = Field(default="", max_length=16)
    # Authorization (migration policy_index): an instance said BurnedInAnnotation=YES; anonymized views
    # withhold the series, since pixels may carry identity the header profile cannot remove.
    burned_in_annotation: bool = Field(default=False)


class PatientIdentifier(SQLModel, table=True):
    """The patient's other identities (Other Patient IDs Sequence, Other Patient IDs), each with its issuer:
    a patient's national ID may be one of them (the primary PatientID lives on the patient row)."""

    __tablename__ = "patient_identifier"
    __table_args__ = (Index("ix_patient_identifier_value", "value", "issuer"),)

    patient_fk: int = Field(foreign_key="patient.id", primary_key=True)
    value: str = Field(max_length=64, primary_key=True)
    issuer: str = Field(default="", max_length=64, primary_key=True)


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
    # Packing (issue 8, migration 0002_packing): set while the instance's bytes live in a series container;
    # tier/storage_key keep naming the loose blob's place so unpacking can restore it there.
    container_fk: int | None = Field(default=None, foreign_key="packed_series.id", index=True)


# QIDO (migration 0003_qido): prefix searches on folded names (pattern ops make PostgreSQL's LIKE 'abc%' use
# the index), and the default study order (newest StudyDate first, ties by id) read straight off an index.
Index(
    "ix_patient_name_alphabetic",
    Patient.__table__.c.patient_name_alphabetic,  # type: ignore[attr-defined]
    postgresql_ops={"patient_name_alphabetic": "varchar_pattern_ops"},
)
Index("ix_study_date_id", Study.__table__.c.study_date, Study.__table__.c.id)  # type: ignore[attr-defined]


# Tiers and jobs (issue 9, migration tiers_jobs).
class StudyAccess(SQLModel, table=True):
    """When a study was last read, for lifecycle rules counted since the last read (flushed in batches)."""

    __tablename__ = "study_access"

    study_instance_uid: str = Field(max_length=64, primary_key=True)
    last_read_at: datetime = Field(default_factory=utcnow, index=True)


class TierMove(SQLModel, table=True):
    """An instance being moved between tiers: while a row exists, two copies may exist and one is debris.

    ``state`` is "copying" (the index still names the source) or "switched" (it names the target; the
    source copy is left to delete). Recovery after a crash reads these rows, so a double is never silent.
    """

    __tablename__ = "tier_move"

    instance_id: int = Field(primary_key=True)
    study_instance_uid: str = Field(max_length=64, index=True)
    source_tier: str = Field(max_length=64)
    target_tier: str = Field(max_length=64)
    storage_key: str = Field(max_length=400)
    state: str = Field(default="copying", max_length=16)
    owner: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    """A background job (migration now; packing, forwarding, pre-rendering later) and its visible state."""

    __tablename__ = "job"
    __table_args__ = (Index("ix_job_state_created", "state", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64)
    payload: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    # queued, running, retrying (waits for next_attempt_at), succeeded, failed (attempts exhausted).
    state: str = Field(default="queued", max_length=16)
    # Only one queued/running/retrying job per dedup key (a study's move is never run twice at once).
    dedup_key: str | None = Field(default=None, max_length=200, index=True)
    attempts: int = 0
    max_attempts: int = 5
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    result: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    worker: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_attempt_at: datetime | None = None


# Packing (issue 8, migration 0002_packing).
class PackedSeries(SQLModel, table=True):
    """One series container blob in a tier: the instances whose ``container_fk`` names it are read from it.

    No foreign key to ``series``: deleting a series must not be blocked by its container (the container
    row and blob go once no instance names them).
    """

    __tablename__ = "packed_series"

    id: int | None = Field(default=None, primary_key=True)
    study_instance_uid: str = Field(max_length=64)
    series_instance_uid: str = Field(max_length=64, index=True)
    tier: str = Field(max_length=64)
    storage_key: str = Field(max_length=400)
    codec: str = Field(default="", max_length=64)
    instances: int = 0
    bytes_in: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    bytes_out: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    packed_at: datetime = Field(default_factory=utcnow)


# DIMSE gateway (issue 7, migration dimse_gateway): the modality worklist and performed procedure steps.
class ScheduledProcedureStep(SQLModel, table=True):
    """A worklist item (one Scheduled Procedure Step), created through /worklist/items, found by MWL C-FIND.

    The columns hold what worklist queries match on; ``dataset_json`` is the whole item as DICOM JSON.
    """

    __tablename__ = "scheduled_procedure_step"

    id: int | None = Field(default=None, primary_key=True)
    sps_id: str = Field(max_length=16, unique=True)
    requested_procedure_id: str = Field(default="", max_length=16)
    accession_number: str = Field(default="", max_length=16, index=True)
    study_instance_uid: str = Field(max_length=64, index=True)
    patient_id: str = Field(default="", max_length=64, index=True)
    patient_name: str = Field(default="", max_length=330)
    modality: str = Field(default="", max_length=16)
    station_ae_title: str = Field(default="", max_length=16)
    start_date: str = Field(default="", max_length=8, index=True)
    start_time: str = Field(default="", max_length=16)
    status: str = Field(default="SCHEDULED", max_length=16)
    dataset_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PerformedProcedureStep(SQLModel, table=True):
    """An MPPS instance (N-CREATE, then N-SET until COMPLETED or DISCONTINUED) and the series it produced."""

    __tablename__ = "performed_procedure_step"

    id: int | None = Field(default=None, primary_key=True)
    sop_instance_uid: str = Field(max_length=64, unique=True)
    status: str = Field(max_length=16)
    calling_ae_title: str = Field(default="", max_length=16)
    patient_id: str = Field(default="", max_length=64)
    study_instance_uid: str = Field(default="", max_length=64, index=True)
    sps_fk: int | None = Field(default=None, foreign_key="scheduled_procedure_step.id")
    # The Series Instance UIDs in its Performed Series Sequence, as a JSON list (linked to stored series).
    series_uids: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    dataset_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
