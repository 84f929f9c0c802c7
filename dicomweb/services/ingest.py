"""Ingest: Part 10 bytes in, a stored and indexed instance (or a DICOM failure reason) out.

Shared by STOW-RS, the importer and the DIMSE gateway. The order of work makes a crash at any point
harmless: the blob is durable in its tier before the index row commits (a crash in between leaves an
orphan blob, which the sweeper removes), and the index never names a blob that is not complete.
Re-storing identical bytes is a success; different bytes under a stored SOP Instance UID follow the
configured rule (reject, or replace), never silently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ..backends.tiers import StorageError, TierSet
from ..dicom import json_model
from ..dicom.part10 import (
    CANNOT_UNDERSTAND,
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    DUPLICATE_SOP_INSTANCE,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    STUDY_UID_MISMATCH,
    NotStorable,
    ParsedInstance,
    parse_instance,
)
from ..index.models import Instance, Patient, PatientIdentifier, Series, Study, utcnow
from ..settings import Settings
from .query import pn_search_columns
from .staging import StagedBlob

log = logging.getLogger(__name__)

Outcome = Literal["stored", "duplicate", "replaced", "failed"]


@dataclass
class StoreResult:
    outcome: Outcome
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    failure_reason: int | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


def _text(ds: Dataset, keyword: str, limit: int) -> str:
    try:
        value = ds.get(keyword)
    except (ValueError, TypeError):
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def storage_key(parsed: ParsedInstance, sha256: str) -> str:
    # The content hash in the key makes every version of an instance a distinct blob: a replacement
    # never overwrites bytes the index still points to.
    return (
        f"{parsed.study_instance_uid}/{parsed.series_instance_uid}/"
        f"{parsed.sop_instance_uid}.{sha256[:16]}.dcm"
    )


@lru_cache(maxsize=32)
def _upsert_statement(dialect_name: str, table: Any, key: str, touch: tuple[str, ...]) -> Any:
    """Built once per table: statement construction costs more than its execution."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    stmt: Any = dialect.insert(table)
    refreshed = {column: stmt.excluded[column] for column in (touch or (key,))}
    return stmt.on_conflict_do_update(index_elements=[key], set_=refreshed).returning(table.c.id, *(
        [table.c.study_fk] if "study_fk" in table.c else []))


def _upsert(conn: Connection, table: Any, values: dict[str, Any], key: str, touch: tuple[str, ...] = ()) -> Any:
    """Insert a row unless its unique ``key`` exists (a concurrent ingest may race us), in one statement.

    ``touch`` columns are refreshed on an existing row (``updated_at``); the row's id comes back either way
    through RETURNING, which SQLite 3.35+ and PostgreSQL both have.
    """
    return conn.execute(_upsert_statement(conn.dialect.name, table, key, touch), values).one()


def other_patient_ids(ds: Dataset) -> list[tuple[str, str]]:
    """(value, issuer) of the Other Patient IDs Sequence items and the retired Other Patient IDs (0010,1000)."""
    found: set[tuple[str, str]] = set()
    try:
        for item in ds.get("OtherPatientIDsSequence") or []:
            value = _text(item, "PatientID", 64)
            if value:
                found.add((value, _text(item, "IssuerOfPatientID", 64)))
        plain = ds.get(0x00101000)
        if plain is not None and plain.value:
            values = plain.value if isinstance(plain.value, MultiValue | list) else [plain.value]
            found.update((str(v).strip()[:64], "") for v in values if str(v).strip())
    except (ValueError, TypeError, AttributeError):
        return sorted(found)
    return sorted(found)


class IngestService:
    def __init__(self, engine: Engine, tiers: TierSet, settings: Settings) -> None:
        self.engine = engine
        self.tiers = tiers
        self.settings = settings

    # -- the one entry point -------------------------------------------------------------------------
    def store(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        """Store one instance. Blocking (parsing, hashing, file and database I/O): run it in a thread.

        ``institutions``: the Institution Names the caller may store into (None: any), from the policy engine.
        """
        try:
            return self._store(blob, expected_study, institutions)
        except Exception as exc:  # one odd instance must fail alone, never the whole request
            log.exception("ingest failed unexpectedly")
            return StoreResult(
                "failed", failure_reason=PROCESSING_FAILURE, message=f"processing failure: {exc.__class__.__name__}"
            )
        finally:
            blob.discard()

    def _store(
        self, blob: StagedBlob, expected_study: str | None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        try:
            with blob.open() as fp:
                parsed = parse_instance(fp, blob.size)
        except NotStorable as exc:
            return StoreResult("failed", failure_reason=exc.status, message=str(exc))
        except OSError as exc:
            return StoreResult("failed", failure_reason=PROCESSING_FAILURE, message=f"cannot read the part: {exc}")

        base = StoreResult(
            "failed",
            sop_class_uid=parsed.sop_class_uid,
            sop_instance_uid=parsed.sop_instance_uid,
            study_instance_uid=parsed.study_instance_uid,
            series_instance_uid=parsed.series_instance_uid,
            warnings=list(parsed.warnings),
        )
        if expected_study is not None and parsed.study_instance_uid != expected_study:
            base.failure_reason = STUDY_UID_MISMATCH
            base.message = (
                f"the instance belongs to study {parsed.study_instance_uid}, not to {expected_study} named in the URL"
            )
            return base
        if institutions is not None:
            institution = _text(parsed.header, "InstitutionName", 64)
            if institution not in institutions:
                base.failure_reason = NOT_AUTHORIZED
                base.message = f"this caller may not store instances of institution {institution!r}"
                return base

        try:
            row = self._row(parsed, blob)
        except NotStorable as exc:
            base.failure_reason, base.message = exc.status, str(exc)
            return base

        existing = self._existing(parsed.sop_instance_uid)
        if existing is not None and existing["sha256"] == blob.sha256:
            base.outcome = "duplicate"
            return base
        if existing is not None and self.settings.on_conflict == "reject":
            base.failure_reason = DUPLICATE_SOP_INSTANCE
            base.message = (
                f"SOP Instance UID {parsed.sop_instance_uid} is already stored with different content; "
                "the archive is configured to reject such a store (on_conflict = reject)"
            )
            return base

        tier = self.tiers.write
        key = storage_key(parsed, blob.sha256)
        try:
            if blob.path is not None:
                tier.store_file(blob.path, key)
                blob.path = None  # consumed by the tier
            else:
                assert blob.data is not None
                tier.store_bytes(blob.data, key)
        except (StorageError, OSError) as exc:
            log.error("storing %s failed: %s", parsed.sop_instance_uid, exc)
            base.failure_reason = OUT_OF_RESOURCES
            base.message = f"the storage tier could not take the instance: {exc}"
            return base

        row.update(tier=tier.name, storage_key=key)
        try:
            outcome, old_location = self._index(parsed, row, blob.sha256)
        except _IndexConflict as exc:
            tier.delete(key)
            base.failure_reason, base.message = exc.status, str(exc)
            return base
        except (OperationalError, SQLAlchemyError) as exc:
            log.exception("indexing %s failed", parsed.sop_instance_uid)
            tier.delete(key)
            base.failure_reason = PROCESSING_FAILURE
            base.message = f"the index could not record the instance: {exc.__class__.__name__}"
            return base

        if outcome == "duplicate":
            tier.delete(key)
        if old_location is not None and old_location != (tier.name, key):
            try:
                self.tiers[old_location[0]].delete(old_location[1])
            except (StorageError, OSError):
                log.warning("old blob %s left for the sweeper", old_location)
        base.outcome = outcome
        return base

    # -- steps -----------------------------------------------------------------------------------------
    def _row(self, parsed: ParsedInstance, blob: StagedBlob) -> dict[str, Any]:
        ds = parsed.header
        pixels = parsed.pixels
        pixel_vr = ""
        if pixels is not None:
            pixel_vr = {0x7FE00008: "OF", 0x7FE00009: "OD"}.get(pixels.tag, "OB" if pixels.encapsulated else "OW")
            if not pixels.encapsulated and pixels.tag == 0x7FE00010 and (_int(ds, "BitsAllocated") or 16) <= 8:
                pixel_vr = "OB"
        try:
            metadata = json_model.header_to_json(
                ds,
                parsed.study_instance_uid,
                parsed.series_instance_uid,
                parsed.sop_instance_uid,
                pixel_tag=pixels.tag if pixels else None,
                pixel_vr=pixel_vr,
                threshold=self.settings.bulk_data_threshold,
            )
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            raise NotStorable(DATA_SET_DOES_NOT_MATCH_SOP_CLASS, f"the data set cannot be encoded: {exc}") from None
        return {
            "sop_instance_uid": parsed.sop_instance_uid,
            "sop_class_uid": parsed.sop_class_uid,
            "instance_number": _int(ds, "InstanceNumber"),
            "transfer_syntax_uid": parsed.transfer_syntax,
            "number_of_frames": parsed.number_of_frames,
            "rows": _int(ds, "Rows"),
            "columns": _int(ds, "Columns"),
            "bits_allocated": _int(ds, "BitsAllocated"),
            "size": blob.size,
            "sha256": blob.sha256,
            "pixel_tag": pixels.tag if pixels else None,
            "pixel_vr": pixel_vr,
            "pixel_offset": pixels.value_offset if pixels else None,
            "pixel_length": pixels.value_length if pixels else None,
            "encapsulated": bool(pixels and pixels.encapsulated),
            "frame_ranges": json.dumps(pixels.frames, separators=(",", ":"))
            if pixels and pixels.frames is not None
            else None,
            "metadata_json": json_model.dumps(metadata),
            "created_at": utcnow(),
        }

    def _existing(self, sop_instance_uid: str) -> dict[str, Any] | None:
        table = Instance.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            row = conn.execute(
                select(table.c.sha256, table.c.tier, table.c.storage_key).where(
                    table.c.sop_instance_uid == sop_instance_uid
                )
            ).first()
        return dict(row._mapping) if row else None

    def _index(
        self, parsed: ParsedInstance, row: dict[str, Any], sha256: str
    ) -> tuple[Outcome, tuple[str, str] | None]:
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    return self._index_in(conn, parsed, row, sha256)
            except IntegrityError:
                # A concurrent ingest of the same patient/study/series/instance won the race: look again.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _index_policy_facts(conn: Connection, ds: Dataset, patient_fk: int, series_fk: int) -> None:
        """What authorization matches on beyond the main columns (only written when present: no cost otherwise)."""
        others = other_patient_ids(ds)
        if others:
            table = PatientIdentifier.__table__  # type: ignore[attr-defined]
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            conn.execute(dialect.insert(table).on_conflict_do_nothing(),
                         [{"patient_fk": patient_fk, "value": v, "issuer": i} for v, i in others])
        if _text(ds, "BurnedInAnnotation", 16).upper() == "YES":
            series_t = Series.__table__  # type: ignore[attr-defined]
            conn.execute(update(series_t).where(series_t.c.id == series_fk).values(burned_in_annotation=True))

    def _index_in(
        self, conn: Connection, parsed: ParsedInstance, row: dict[str, Any], sha256: str
    ) -> tuple[Outcome, tuple[str, str] | None]:
        ds = parsed.header
        patients = Patient.__table__  # type: ignore[attr-defined]
        studies = Study.__table__  # type: ignore[attr-defined]
        series_t = Series.__table__  # type: ignore[attr-defined]
        instances = Instance.__table__  # type: ignore[attr-defined]
        now = utcnow()

        patient_id = _text(ds, "PatientID", 64)
        issuer = _text(ds, "IssuerOfPatientID", 64)
        name = _text(ds, "PatientName", 330)
        birth = _text(ds, "PatientBirthDate", 8)
        patient_key = f"{issuer}|{patient_id}" if patient_id else f"~{name}|{birth}"
        patient_fk = _upsert(
            conn,
            patients,
            {
                "patient_key": patient_key[:200],
                "patient_id": patient_id,
                "issuer_of_patient_id": issuer,
                "patient_name": name,
                "patient_birth_date": birth,
                "patient_sex": _text(ds, "PatientSex", 16),
                **pn_search_columns("patient_name", name),
                "created_at": now,
            },
            "patient_key",
        ).id
        study_fk = _upsert(
            conn,
            studies,
            {
                "study_instance_uid": parsed.study_instance_uid,
                "patient_fk": patient_fk,
                "study_date": _text(ds, "StudyDate", 8),
                "study_time": _text(ds, "StudyTime", 16),
                "accession_number": _text(ds, "AccessionNumber", 64),
                "study_id": _text(ds, "StudyID", 16),
                "study_description": _text(ds, "StudyDescription", 64),
                "referring_physician_name": _text(ds, "ReferringPhysicianName", 330),
                "institution_name": _text(ds, "InstitutionName", 64),
                **pn_search_columns("referring_physician", _text(ds, "ReferringPhysicianName", 330)),
                "created_at": now,
                "updated_at": now,
            },
            "study_instance_uid",
            touch=("updated_at",),
        ).id
        series_row = _upsert(
            conn,
            series_t,
            {
                "series_instance_uid": parsed.series_instance_uid,
                "study_fk": study_fk,
                "modality": _text(ds, "Modality", 16),
                "series_number": _int(ds, "SeriesNumber"),
                "series_description": _text(ds, "SeriesDescription", 64),
                "body_part_examined": _text(ds, "BodyPartExamined", 16),
                "performed_procedure_step_start_date": _text(ds, "PerformedProcedureStepStartDate", 8),
                "performed_procedure_step_start_time": _text(ds, "PerformedProcedureStepStartTime", 16),
                "created_at": now,
                "updated_at": now,
            },
            "series_instance_uid",
            touch=("updated_at",),
        )
        series_fk = series_row.id
        self._index_policy_facts(conn, ds, patient_fk, series_fk)
        if series_row.study_fk != study_fk:
            raise _IndexConflict(
                DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                f"series {parsed.series_instance_uid} is already stored in another study",
            )

        current = conn.execute(
            select(instances.c.id, instances.c.sha256, instances.c.tier, instances.c.storage_key, instances.c.series_fk)
            .where(instances.c.sop_instance_uid == parsed.sop_instance_uid)
        ).first()
        values = {**row, "series_fk": series_fk}
        if current is None:
            conn.execute(instances.insert().values(**values))
            outcome: Outcome = "stored"
            old: tuple[str, str] | None = None
        elif current.sha256 == sha256:
            return "duplicate", None
        elif self.settings.on_conflict == "reject":
            raise _IndexConflict(
                DUPLICATE_SOP_INSTANCE,
                f"SOP Instance UID {parsed.sop_instance_uid} is already stored with different content",
            )
        else:
            conn.execute(update(instances).where(instances.c.id == current.id).values(**values))
            outcome, old = "replaced", (current.tier, current.storage_key)
        return outcome, old


class _IndexConflict(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


__all__ = ["CANNOT_UNDERSTAND", "IngestService", "StoreResult"]
