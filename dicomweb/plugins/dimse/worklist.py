"""Modality Worklist: scheduled procedure steps created over REST, found by MWL C-FIND (PS3.4 K).

Matching keys the index holds (patient, accession, study, requested procedure and, inside the Scheduled
Procedure Step Sequence, modality, station AE title, start date/time, step ID and status) are matched in
SQL with the PS3.4 C.2.2.2 syntax of the shared query model; other keys are returned, not matched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.events import Event
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from ...index.models import ScheduledProcedureStep, utcnow
from ...services.query import Kind, MatchKey, QueryError, parse_key
from .access import NOT_AUTHORIZED, AccessRules
from .identifiers import project, raw_value
from .status import CANCEL, IDENTIFIER_MISMATCH, PENDING, status

SPS_SEQUENCE = 0x00400100
TOP_COLUMNS = {0x00100020: "patient_id", 0x00100010: "patient_name", 0x00080050: "accession_number",
               0x0020000D: "study_instance_uid", 0x00401001: "requested_procedure_id"}
STEP_COLUMNS = {0x00080060: "modality", 0x00400001: "station_ae_title", 0x00400002: "start_date",
                0x00400003: "start_time", 0x00400009: "sps_id", 0x00400020: "status"}
STATUSES = {"SCHEDULED", "ARRIVED", "READY", "STARTED", "DEPARTED", "COMPLETED", "DISCONTINUED", "CANCELED"}


class WorklistError(ValueError):
    """A worklist item or query that cannot be used; the message says why."""


def _table() -> Any:
    return ScheduledProcedureStep.__table__  # type: ignore[attr-defined]


def _text(ds: Dataset, keyword: str) -> str:
    return raw_value(ds[keyword]).strip() if keyword in ds else ""


def create_item(engine: Engine, item: Dataset) -> Dataset:
    """Store a worklist item; StudyInstanceUID, Scheduled Procedure Step ID and status are filled in when
    absent. Raises WorklistError when the item lacks what a modality needs or its step ID is taken."""
    steps = item.get("ScheduledProcedureStepSequence")
    if not steps or len(steps) != 1:
        raise WorklistError("ScheduledProcedureStepSequence must hold exactly one item")
    step = steps[0]
    missing = [k for k in ("Modality", "ScheduledProcedureStepStartDate") if not _text(step, k)]
    if missing or not (_text(item, "PatientID") or _text(item, "PatientName")):
        raise WorklistError(f"the item needs PatientID or PatientName, and in its scheduled step: "
                            f"Modality and ScheduledProcedureStepStartDate (missing: {', '.join(missing) or '-'})")
    item.setdefault("StudyInstanceUID", generate_uid())
    if not _text(step, "ScheduledProcedureStepID"):
        step.ScheduledProcedureStepID = generate_uid(prefix=None)[-16:]
    if not _text(step, "ScheduledProcedureStepStatus"):
        step.ScheduledProcedureStepStatus = "SCHEDULED"
    if _text(step, "ScheduledProcedureStepStatus") not in STATUSES:
        raise WorklistError(f"ScheduledProcedureStepStatus must be one of {', '.join(sorted(STATUSES))}")
    row: dict[str, Any] = {column: _text(item, keyword_of(tag))[:limit] for tag, column, limit in _columns(TOP_COLUMNS)}
    row.update({column: _text(step, keyword_of(tag))[:limit] for tag, column, limit in _columns(STEP_COLUMNS)})
    now = utcnow()
    row.update(dataset_json=json.dumps(item.to_json_dict(), separators=(",", ":")), created_at=now, updated_at=now)
    try:
        with engine.begin() as conn:
            conn.execute(_table().insert().values(**row))
    except IntegrityError:
        raise WorklistError(f"Scheduled Procedure Step ID {row['sps_id']} already exists") from None
    return item


def _columns(mapping: dict[int, str]) -> Iterator[tuple[int, str, int]]:
    for tag, column in mapping.items():
        yield tag, column, _table().c[column].type.length or 64


def keyword_of(tag: int) -> str:
    return keyword_for_tag(tag)


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _condition(column: Any, key: MatchKey) -> ColumnElement[bool]:
    folded = key.vr == "PN"  # person names match case-insensitively, as QIDO-RS does by default
    target = func.lower(column) if folded else column

    def one(value: str) -> ColumnElement[bool]:
        value = value.lower() if folded else value
        if "*" in value or "?" in value:
            return target.like(_like(value), escape="\\")
        return target == value

    if key.kind == Kind.EMPTY:
        return column == ""
    if key.kind == Kind.RANGE:
        parts = [column != ""]
        if key.low:
            parts.append(column >= key.low)
        if key.high:
            parts.append(column <= key.high + ("\uffff" if key.vr == "TM" else ""))
        return and_(*parts)
    return or_(*(one(v) for v in key.values))


def where_clause(identifier: Dataset) -> list[ColumnElement[bool]]:
    """SQL conditions for the identifier's matchable keys; raises WorklistError for bad syntax."""
    conditions: list[ColumnElement[bool]] = []
    steps = identifier.get("ScheduledProcedureStepSequence")
    scopes = [(identifier, TOP_COLUMNS)] + ([(steps[0], STEP_COLUMNS)] if steps else [])
    for scope, columns in scopes:
        for tag, column in columns.items():
            if tag not in scope:
                continue
            try:
                key = parse_key(tag, raw_value(scope[tag]))
            except QueryError as exc:
                raise WorklistError(str(exc)) from None
            if key.kind != Kind.UNIVERSAL:
                conditions.append(_condition(_table().c[column], key))
    return conditions


def search_items(engine: Engine, identifier: Dataset, limit: int = 1000) -> list[Dataset]:
    """Stored items matching ``identifier``, oldest scheduled first, in one query."""
    t = _table()
    stmt = select(t.c.dataset_json).where(*where_clause(identifier)).order_by(
        t.c.start_date, t.c.start_time, t.c.id).limit(limit)
    with engine.connect() as conn:
        texts = conn.execute(stmt).scalars().all()
    return [Dataset.from_json(text) for text in texts]


def handle_worklist_find(event: Event, engine: Engine, rules: AccessRules) -> Iterator[tuple[Any, Any]]:
    caller = event.assoc.requestor.ae_title
    if not rules.allows(caller, "query"):
        yield status(NOT_AUTHORIZED, f"{caller} may not query the worklist"), None
        return
    identifier = event.identifier
    try:
        items = search_items(engine, identifier)
    except WorklistError as exc:
        yield status(IDENTIFIER_MISMATCH, str(exc)), None
        return
    for item in items:
        if event.is_cancelled:
            yield CANCEL, None
            return
        answer = project(item, identifier)
        answer.SpecificCharacterSet = "ISO_IR 192"
        yield PENDING, answer


def set_step_status(engine: Engine, sps_id: str, new_status: str) -> None:
    """Follow the performed step (MPPS) on its scheduled step: the column and the stored item agree."""
    t = _table()
    with engine.begin() as conn:
        row = conn.execute(select(t.c.id, t.c.dataset_json).where(t.c.sps_id == sps_id)).first()
        if row is None:
            return
        item = json.loads(row.dataset_json)
        for step in item.get(f"{SPS_SEQUENCE:08X}", {}).get("Value", []):
            step["00400020"] = {"vr": "CS", "Value": [new_status]}
        conn.execute(t.update().where(t.c.id == row.id).values(
            status=new_status, dataset_json=json.dumps(item, separators=(",", ":")), updated_at=utcnow()))


def step_id_of(engine: Engine, sps_id: str) -> int | None:
    t = _table()
    with engine.connect() as conn:
        found: int | None = conn.execute(select(t.c.id).where(t.c.sps_id == sps_id)).scalar()
    return found
