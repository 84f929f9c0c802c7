"""Ingest: Part 10 bytes in, a stored and indexed instance (or a DICOM failure reason) out.

Shared by STOW-RS, the importer and the DIMSE gateway. The order of work makes a crash at any point
harmless: the blob is durable in its tier before the index row commits (a crash in between leaves an
orphan blob, which the sweeper removes), and the index never names a blob that is not complete.
Re-storing identical bytes is a success; different bytes under a stored SOP Instance UID follow the
configured rule (reject, or replace), never silently.

Index rows are committed in groups: instances whose blobs became durable while another group was being
committed, or within GROUP_WAIT_SECONDS while other stores of the process were still on their way, go into
one transaction together (one commit, and one upsert of a patient, study or series they share). A group
that meets anything unusual (a conflict, a race with another writer) is rolled back and its instances are
indexed one transaction each, so every instance still gets its own outcome. What the index already holds
under the SOP Instance UID is decided in that transaction, not looked up beforehand.

The header values ingest needs beside the DICOM JSON (UIDs, index columns) are read off the bytes pydicom
read but has not converted (``dicom.raw_json``), exactly as pydicom would convert them; anything unusual
goes through pydicom.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # not on Windows: SQLite's own waiting applies there
    fcntl = None  # type: ignore[assignment]

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from sqlalchemy import bindparam, select, update
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
from ..dicom.raw_json import INTEGER_VRS, STRING_VRS, raw_values
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
    values = raw_values(ds, keyword, STRING_VRS)
    if values is not None:  # the same text as below, without converting the element (most of ingest's index work)
        return "\\".join(values).strip()[:limit]
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
    values = raw_values(ds, keyword, INTEGER_VRS)
    if values is not None:
        return int(values[0]) if len(values) == 1 else None
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


def _patient_key(ds: Dataset) -> str:
    patient_id = _text(ds, "PatientID", 64)
    if patient_id:
        return f"{_text(ds, 'IssuerOfPatientID', 64)}|{patient_id}"[:200]
    return f"~{_text(ds, 'PatientName', 330)}|{_text(ds, 'PatientBirthDate', 8)}"[:200]


def patient_columns(ds: Dataset, now: Any) -> dict[str, Any]:
    """The patient row an instance's header makes (the first instance of a patient writes it)."""
    name = _text(ds, "PatientName", 330)
    return {
        "patient_key": _patient_key(ds),
        "patient_id": _text(ds, "PatientID", 64),
        "issuer_of_patient_id": _text(ds, "IssuerOfPatientID", 64),
        "patient_name": name,
        "patient_birth_date": _text(ds, "PatientBirthDate", 8),
        "patient_sex": _text(ds, "PatientSex", 16),
        **pn_search_columns("patient_name", name),
        "created_at": now,
    }


def study_columns(ds: Dataset, study_uid: str, now: Any) -> dict[str, Any]:
    """The study row, but for its patient's id."""
    referring = _text(ds, "ReferringPhysicianName", 330)
    return {
        "study_instance_uid": study_uid,
        "study_date": _text(ds, "StudyDate", 8),
        "study_time": _text(ds, "StudyTime", 16),
        "accession_number": _text(ds, "AccessionNumber", 64),
        "study_id": _text(ds, "StudyID", 16),
        "study_description": _text(ds, "StudyDescription", 64),
        "referring_physician_name": referring,
        "institution_name": _text(ds, "InstitutionName", 64),
        **pn_search_columns("referring_physician", referring),
        "created_at": now,
        "updated_at": now,
    }


def series_columns(ds: Dataset, series_uid: str, now: Any) -> dict[str, Any]:
    """The series row, but for its study's id."""
    return {
        "series_instance_uid": series_uid,
        "modality": _text(ds, "Modality", 16),
        "series_number": _int(ds, "SeriesNumber"),
        "series_description": _text(ds, "SeriesDescription", 64),
        "body_part_examined": _text(ds, "BodyPartExamined", 16),
        "performed_procedure_step_start_date": _text(ds, "PerformedProcedureStepStartDate", 8),
        "performed_procedure_step_start_time": _text(ds, "PerformedProcedureStepStartTime", 16),
        "created_at": now,
        "updated_at": now,
    }


class _WriterLock:
    """One SQLite index writer at a time among this archive's ingest processes, by a lock file beside it.

    SQLite lets one writer in at a time and makes the others poll, sleeping 1, 2, 5, 10, 15, 20 ms... between
    tries: with two ingest processes committing, a commit waited up to tens of milliseconds for a lock held
    for a fraction of one (measured: about 0.7 ms of such sleep per instance on the synthetic CT). A process
    waiting on this lock instead wakes the moment it is released. Other writers (a DELETE, the audit log) still
    meet SQLite's own waiting. No lock (a no-op) for PostgreSQL, an in-memory database, or where the file
    cannot be made.
    """

    def __init__(self, path: Path | None) -> None:
        self._fd: int | None = None
        if path is not None:
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                log.warning("no ingest writer lock at %s (%s): SQLite's own waiting applies", path, exc)
            else:
                weakref.finalize(self, os.close, self._fd)

    @classmethod
    def for_engine(cls, engine: Engine | None) -> _WriterLock:
        if engine is None or engine.url.get_backend_name() != "sqlite" or fcntl is None:
            return cls(None)
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            return cls(None)
        return cls(Path(database).with_name(Path(database).name + ".ingest-lock"))

    def __enter__(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


# How long a commit waits for stores still on their way to join it.
GROUP_WAIT_SECONDS = 0.002

# The most instances one index transaction takes (the SQL parameters of its IN list stay few).
GROUP_LIMIT = 64


@dataclass
class _Pending:
    """One instance waiting for its index row: durable in its tier, not yet committed."""

    parsed: ParsedInstance
    row: dict[str, Any]
    sha256: str
    done: bool = False
    outcome: Outcome = "failed"
    location: tuple[str, str] | None = None
    error: Exception | None = None


class _Regroup(Exception):
    """The group transaction met something only the one-instance path decides: index one by one."""


@cache
def _existing_statement() -> Any:
    """What the index holds under a SOP Instance UID: built once (building a select per instance cost more
    than running it), its compiled form then reused from the engine's cache."""
    table = Instance.__table__  # type: ignore[attr-defined]
    return select(table.c.sha256, table.c.tier, table.c.storage_key).where(
        table.c.sop_instance_uid == bindparam("sop"))


class IngestService:
    def __init__(self, engine: Engine, tiers: TierSet, settings: Settings) -> None:
        self.engine = engine
        self.tiers = tiers
        self.settings = settings
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._queue_cond = threading.Condition(self._queue_lock)
        self._coming = 0  # stores of this process not yet at the index
        self._local = threading.local()
        self._commit_lock = threading.Lock()
        self._writers = _WriterLock.for_engine(engine)

    # -- the one entry point -------------------------------------------------------------------------
    def store(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        """Store one instance. Blocking (parsing, hashing, file and database I/O): run it in a thread.
        Calls from several threads at once are safe, and cheaper per instance (their rows share commits).

        ``institutions``: the Institution Names the caller may store into (None: any), from the policy engine.
        """
        with self._queue_cond:
            self._coming += 1
        self._local.coming = True
        try:
            return self._store(blob, expected_study, institutions)
        except Exception as exc:  # one odd instance must fail alone, never the whole request
            log.exception("ingest failed unexpectedly")
            return StoreResult(
                "failed", failure_reason=PROCESSING_FAILURE, message=f"processing failure: {exc.__class__.__name__}"
            )
        finally:
            blob.discard()
            if self._local.coming:
                self._arrived(None)

    def _arrived(self, item: _Pending | None) -> None:
        """This thread's store is no longer on its way to the index: queued there (``item``), or done."""
        self._local.coming = False
        with self._queue_cond:
            self._coming -= 1
            if item is not None:
                self._queue.append(item)
            self._queue_cond.notify_all()

    def _await_company(self) -> None:
        """Before a commit: while other stores of this process are still on their way (parsing, fsync), wait
        a moment for them to join the group, which then shares one transaction and one upsert per parent."""
        deadline = time.monotonic() + GROUP_WAIT_SECONDS
        with self._queue_cond:
            while self._coming > 0 and len(self._queue) < GROUP_LIMIT:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._queue_cond.wait(remaining)

    def check(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        """What :meth:`store` would answer for the instance's own content and the caller's rights, storing
        nothing: a failure, a duplicate of identical bytes, or "stored" (it may be accepted, though the index
        may still refuse it, e.g. a series already in another study). ``blob`` is left as it was."""
        admitted = self._admit(blob, expected_study, institutions)
        if isinstance(admitted, StoreResult):
            return admitted
        admitted[1].outcome = "stored"
        return admitted[1]

    def _parse_checked(
        self, blob: StagedBlob, expected_study: str | None, institutions: frozenset[str] | None
    ) -> tuple[ParsedInstance, StoreResult] | StoreResult:
        """Parse, and check what the instance itself and the caller's rights decide: (parsed, the result to
        fill in), or the final failure."""
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
        return parsed, base

    def _admit(
        self, blob: StagedBlob, expected_study: str | None, institutions: frozenset[str] | None
    ) -> tuple[ParsedInstance, StoreResult] | StoreResult:
        """:meth:`_parse_checked`, then what the index already holds: a duplicate of identical bytes is final,
        other bytes under the SOP Instance UID fail when the configuration rejects them."""
        checked = self._parse_checked(blob, expected_study, institutions)
        if isinstance(checked, StoreResult):
            return checked
        parsed, base = checked
        existing = self._existing(parsed.sop_instance_uid)
        if existing is not None and existing["sha256"] == blob.sha256:
            base.outcome = "duplicate"
            return base
        if existing is not None and self.settings.on_conflict == "reject":
            base.failure_reason = DUPLICATE_SOP_INSTANCE
            base.message = _rejected(parsed.sop_instance_uid)
            return base
        return parsed, base

    def _store(
        self, blob: StagedBlob, expected_study: str | None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        # What the index holds already is decided in the index transaction alone (no lookup beforehand): a
        # re-store of identical bytes writes the blob over itself (its storage key is the same) and commits
        # nothing; other bytes are written under their own key and removed again when refused.
        checked = self._parse_checked(blob, expected_study, institutions)
        if isinstance(checked, StoreResult):
            return checked
        parsed, base = checked
        try:
            row = self._row(parsed, blob)
        except NotStorable as exc:
            base.failure_reason, base.message = exc.status, str(exc)
            return base

        tier = self.tiers.write
        key = storage_key(parsed, blob.sha256)
        try:
            if blob.path is not None:
                (tier.store_durable_file if blob.durable else tier.store_file)(blob.path, key)
                blob.path = None  # consumed by the tier
            else:
                assert blob.data is not None
                tier.store_bytes(blob.data, key)
        except (StorageError, OSError) as exc:
            log.error("storing %s failed: %s", parsed.sop_instance_uid, exc)
            base.failure_reason = OUT_OF_RESOURCES
            base.message = f"the storage tier could not take the instance: {exc}"
            return base

        # The blob is durable: only now may its index row commit.
        row.update(tier=tier.name, storage_key=key)
        try:
            outcome, location = self._index_grouped(parsed, row, blob.sha256)
        except _IndexConflict as exc:
            tier.delete(key)
            base.failure_reason, base.message = exc.status, str(exc)
            return base
        except (OperationalError, SQLAlchemyError) as exc:
            log.error("indexing %s failed: %s", parsed.sop_instance_uid, exc)
            tier.delete(key)
            base.failure_reason = PROCESSING_FAILURE
            base.message = f"the index could not record the instance: {exc.__class__.__name__}"
            return base

        if location is not None and location != (tier.name, key):
            # A duplicate stored elsewhere (another tier, say): ours is a second copy, the stored one stays.
            # Replaced: the old version's blob goes. (A duplicate at our very key was written over with its
            # own bytes: nothing to remove.)
            doomed = (tier.name, key) if outcome == "duplicate" else location
            try:
                self.tiers[doomed[0]].delete(doomed[1])
            except (StorageError, OSError, KeyError):
                log.warning("blob %s left for the sweeper", doomed)
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
        with self.engine.connect() as conn:
            row = conn.execute(_existing_statement(), {"sop": sop_instance_uid}).first()
        return dict(row._mapping) if row else None

    # -- the index ---------------------------------------------------------------------------------------
    def _index_grouped(
        self, parsed: ParsedInstance, row: dict[str, Any], sha256: str
    ) -> tuple[Outcome, tuple[str, str] | None]:
        """Commit the instance's row, together with those of instances that arrive while a commit runs.

        Returns the outcome and a location the caller compares with the blob just written: the stored
        version's for a duplicate, the old version's for a replacement (None for a new instance).
        """
        item = _Pending(parsed, row, sha256)
        if getattr(self._local, "coming", False):
            self._arrived(item)
        else:
            with self._queue_cond:
                self._queue.append(item)
                self._queue_cond.notify_all()
        while not item.done:
            with self._commit_lock:  # whoever holds it commits what has queued up meanwhile
                if item.done:
                    break
                self._await_company()
                with self._queue_lock:
                    group, self._queue = self._queue[:GROUP_LIMIT], self._queue[GROUP_LIMIT:]
                with self._writers:
                    self._commit_group(group)
        if item.error is not None:
            raise item.error
        return item.outcome, item.location

    def _commit_group(self, group: list[_Pending]) -> None:
        """Index every pending instance of ``group``, setting each one's outcome or error; never raises."""
        try:
            if len(group) > 1:
                try:
                    with self.engine.begin() as conn:
                        found = self._index_group_in(conn, group)
                    for item, (outcome, location) in zip(group, found, strict=True):
                        item.outcome, item.location, item.done = outcome, location, True
                    return
                except (_Regroup, _IndexConflict, SQLAlchemyError) as exc:
                    log.debug("index group of %d taken apart: %s", len(group), exc.__class__.__name__)
                except Exception:  # every waiting caller must still get an answer: the one-by-one path decides
                    log.exception("index group of %d failed; indexing one by one", len(group))
            for item in group:
                try:
                    item.outcome, item.location = self._index(item.parsed, item.row, item.sha256)
                except Exception as exc:  # handed to the instance's own caller
                    item.error = exc
                item.done = True
        finally:
            for item in group:  # interrupted (KeyboardInterrupt, say): the waiting callers fail, not hang
                if not item.done:
                    item.error, item.done = RuntimeError("indexing was interrupted"), True

    def _index(
        self, parsed: ParsedInstance, row: dict[str, Any], sha256: str
    ) -> tuple[Outcome, tuple[str, str] | None]:
        for attempt in range(3):
            try:
                with self.engine.begin() as conn:
                    return self._index_in(conn, parsed, row, sha256, _Parents())
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

    def _parents(self, conn: Connection, parsed: ParsedInstance, now: Any, seen: _Parents) -> int:
        """Upsert the instance's patient, study and series, each row once per transaction; the series id.

        Within one transaction the later upserts of a row would change nothing (the first instance's values
        stay, ``updated_at`` is the transaction's time), so ``seen`` answers them instead.
        """
        ds = parsed.header
        study_uid, series_uid = parsed.study_instance_uid, parsed.series_instance_uid
        patient_key = _patient_key(ds)
        patient_fk = seen.patients.get(patient_key)
        if patient_fk is None:
            patient_fk = _upsert(conn, Patient.__table__, patient_columns(ds, now), "patient_key").id  # type: ignore[attr-defined]
            seen.patients[patient_key] = patient_fk
        study_fk = seen.studies.get(study_uid)
        if study_fk is None:
            study_fk = _upsert(
                conn, Study.__table__, {**study_columns(ds, study_uid, now), "patient_fk": patient_fk},  # type: ignore[attr-defined]
                "study_instance_uid", touch=("updated_at",),
            ).id
            seen.studies[study_uid] = study_fk
        known = seen.series.get(series_uid)
        if known is None:
            series_row = _upsert(
                conn, Series.__table__, {**series_columns(ds, series_uid, now), "study_fk": study_fk},  # type: ignore[attr-defined]
                "series_instance_uid", touch=("updated_at",),
            )
            known = seen.series[series_uid] = (series_row.id, series_row.study_fk)
        series_fk = known[0]
        self._index_policy_facts(conn, ds, patient_fk, series_fk)
        if known[1] != study_fk:
            raise _IndexConflict(
                DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                f"series {series_uid} is already stored in another study",
            )
        return series_fk

    def _index_in(
        self, conn: Connection, parsed: ParsedInstance, row: dict[str, Any], sha256: str, seen: _Parents
    ) -> tuple[Outcome, tuple[str, str] | None]:
        series_fk = self._parents(conn, parsed, utcnow(), seen)
        values = {**row, "series_fk": series_fk}
        # A new instance (the common case) is inserted at once; only when its UID is taken is the row looked at.
        if conn.execute(_insert_new_statement(conn.dialect.name), values).first() is not None:
            return "stored", None
        current = conn.execute(_current_statement(), {"sops": [parsed.sop_instance_uid]}).one()
        if current.sha256 == sha256:
            return "duplicate", (current.tier, current.storage_key)
        if self.settings.on_conflict == "reject":
            raise _IndexConflict(DUPLICATE_SOP_INSTANCE, _rejected(parsed.sop_instance_uid))
        conn.execute(_replace_statement(), {**values, "row_id": current.id})
        return "replaced", (current.tier, current.storage_key)

    def _index_group_in(
        self, conn: Connection, group: list[_Pending]
    ) -> list[tuple[Outcome, tuple[str, str] | None]]:
        """Index several instances in one transaction; raises (for the one-by-one path) on anything unusual."""
        instances = Instance.__table__  # type: ignore[attr-defined]
        sops = [item.parsed.sop_instance_uid for item in group]
        if len(set(sops)) != len(sops):
            raise _Regroup("an instance twice in one group")
        seen, now = _Parents(), utcnow()
        ordered = sorted(range(len(group)), key=lambda i: (group[i].parsed.study_instance_uid,
                                                           group[i].parsed.series_instance_uid))
        series_of = {i: self._parents(conn, group[i].parsed, now, seen) for i in ordered}
        current = {
            found.sop_instance_uid: found
            for found in conn.execute(_current_statement(), {"sops": sops})
        }
        fresh: list[dict[str, Any]] = []
        out: list[tuple[Outcome, tuple[str, str] | None]] = []
        for i, item in enumerate(group):
            values = {**item.row, "series_fk": series_of[i]}
            stored = current.get(item.parsed.sop_instance_uid)
            if stored is None:
                fresh.append(values)
                out.append(("stored", None))
            elif stored.sha256 == item.sha256:
                out.append(("duplicate", (stored.tier, stored.storage_key)))
            elif self.settings.on_conflict == "reject":
                raise _Regroup("a conflicting instance")
            else:
                conn.execute(_replace_statement(), {**values, "row_id": stored.id})
                out.append(("replaced", (stored.tier, stored.storage_key)))
        if fresh:
            conn.execute(instances.insert(), fresh)
        return out


@dataclass
class _Parents:
    """Rows one index transaction has upserted already: patient key, study UID, series UID to their ids."""

    patients: dict[str, int] = field(default_factory=dict)
    studies: dict[str, int] = field(default_factory=dict)
    series: dict[str, tuple[int, int]] = field(default_factory=dict)  # (series id, its study's id)


@lru_cache(maxsize=1)
def _current_statement() -> Any:
    instances = Instance.__table__  # type: ignore[attr-defined]
    return select(instances.c.sop_instance_uid, instances.c.id, instances.c.sha256, instances.c.tier,
                  instances.c.storage_key).where(instances.c.sop_instance_uid.in_(bindparam("sops", expanding=True)))


@lru_cache(maxsize=2)
def _insert_new_statement(dialect_name: str) -> Any:
    """INSERT of an instance row unless its SOP Instance UID is there already; RETURNING says which."""
    instances = Instance.__table__  # type: ignore[attr-defined]
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return (dialect.insert(instances).on_conflict_do_nothing(index_elements=["sop_instance_uid"])
            .returning(instances.c.id))


@lru_cache(maxsize=1)
def _replace_statement() -> Any:
    """UPDATE of one instance row (``row_id``); the new values come as parameters, the statement is built once."""
    instances = Instance.__table__  # type: ignore[attr-defined]
    return update(instances).where(instances.c.id == bindparam("row_id"))


def _rejected(sop_instance_uid: str) -> str:
    return (
        f"SOP Instance UID {sop_instance_uid} is already stored with different content; "
        "the archive is configured to reject such a store (on_conflict = reject)"
    )


class _IndexConflict(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


__all__ = ["CANNOT_UNDERSTAND", "IngestService", "StoreResult"]
