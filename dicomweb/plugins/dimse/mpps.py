"""Modality Performed Procedure Step SCP (PS3.4 F.7): N-CREATE starts a step, N-SET updates it until it is
COMPLETED or DISCONTINUED; the step is linked to its scheduled step and to the series it names."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.events import Event
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ...index.models import Instance, PerformedProcedureStep, Series, utcnow
from .access import NOT_AUTHORIZED, AccessRules
from .identifiers import raw_value
from .status import (
    DUPLICATE_INSTANCE,
    INVALID_ATTRIBUTE_VALUE,
    NO_SUCH_OBJECT,
    PROCESSING_FAILURE,
    SUCCESS,
    status,
)
from .worklist import set_step_status, step_id_of

log = logging.getLogger(__name__)
IN_PROGRESS, FINAL = "IN PROGRESS", {"COMPLETED", "DISCONTINUED"}
Answer = tuple[int | Dataset, Dataset | None]


def _table() -> Any:
    return PerformedProcedureStep.__table__  # type: ignore[attr-defined]


def _status_of(ds: Dataset) -> str:
    return raw_value(ds["PerformedProcedureStepStatus"]).strip() if "PerformedProcedureStepStatus" in ds else ""


def _series_uids(ds: Dataset) -> list[str]:
    return [str(s.SeriesInstanceUID) for s in ds.get("PerformedSeriesSequence") or [] if "SeriesInstanceUID" in s]


def _scheduled(ds: Dataset) -> tuple[str, str]:
    """(Study Instance UID, Scheduled Procedure Step ID) of the first scheduled step attributes item."""
    items = ds.get("ScheduledStepAttributesSequence") or []
    if not items:
        return "", ""
    first = items[0]
    return str(first.get("StudyInstanceUID", "") or ""), str(first.get("ScheduledProcedureStepID", "") or "")


def _json(ds: Dataset) -> str:
    return json.dumps(ds.to_json_dict(), separators=(",", ":"))


class PerformedSteps:
    def __init__(self, engine: Engine, rules: AccessRules) -> None:
        self.engine = engine
        self.rules = rules

    def handle_create(self, event: Event) -> Answer:
        caller = event.assoc.requestor.ae_title
        if not self.rules.allows(caller, "store"):
            return status(NOT_AUTHORIZED, f"{caller} may not report procedure steps"), None
        ds = event.attribute_list
        if _status_of(ds) != IN_PROGRESS:
            return status(INVALID_ATTRIBUTE_VALUE, "a new step's status must be IN PROGRESS"), None
        request: Any = event.request
        uid = str(request.AffectedSOPInstanceUID or generate_uid())
        study, sps_id = _scheduled(ds)
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(_table().insert().values(
                    sop_instance_uid=uid, status=IN_PROGRESS, calling_ae_title=caller[:16],
                    patient_id=str(ds.get("PatientID", "") or "")[:64], study_instance_uid=study[:64],
                    sps_fk=step_id_of(self.engine, sps_id) if sps_id else None,
                    series_uids=json.dumps(_series_uids(ds)), dataset_json=_json(ds), created_at=now, updated_at=now))
        except IntegrityError:
            return status(DUPLICATE_INSTANCE, f"performed procedure step {uid} exists already"), None
        if sps_id:
            set_step_status(self.engine, sps_id, "STARTED")
        answer = Dataset()
        if request.AffectedSOPInstanceUID is None:
            answer.AffectedSOPInstanceUID = uid  # pynetdicom moves it into the response
        return SUCCESS, answer

    def handle_set(self, event: Event) -> Answer:
        caller = event.assoc.requestor.ae_title
        if not self.rules.allows(caller, "store"):
            return status(NOT_AUTHORIZED, f"{caller} may not report procedure steps"), None
        request: Any = event.request
        uid = str(request.RequestedSOPInstanceUID)
        changes = event.modification_list
        t = _table()
        with self.engine.begin() as conn:
            row = conn.execute(select(t.c.id, t.c.status, t.c.dataset_json).where(t.c.sop_instance_uid == uid)
                               .with_for_update()).first()
            if row is None:
                return status(NO_SUCH_OBJECT, f"no performed procedure step {uid}"), None
            if row.status in FINAL:
                return status(PROCESSING_FAILURE, f"the step is {row.status} and can no longer change"), None
            new_status = _status_of(changes) or row.status
            if new_status not in FINAL | {IN_PROGRESS}:
                return status(INVALID_ATTRIBUTE_VALUE, f"PerformedProcedureStepStatus {new_status!r} is unknown"), None
            merged = Dataset.from_json(row.dataset_json)
            for element in changes:
                merged[element.tag] = element
            conn.execute(t.update().where(t.c.id == row.id).values(
                status=new_status, series_uids=json.dumps(_series_uids(merged)), dataset_json=_json(merged),
                updated_at=utcnow()))
        _, sps_id = _scheduled(merged)
        if sps_id and new_status in FINAL:
            set_step_status(self.engine, sps_id, new_status)
        return SUCCESS, None


def performed_step(engine: Engine, uid: str) -> dict[str, Any] | None:
    """A performed step with, per series it names, how many of its instances the archive holds (one query)."""
    t = _table()
    with engine.connect() as conn:
        row = conn.execute(select(t.c.status, t.c.series_uids, t.c.dataset_json)
                           .where(t.c.sop_instance_uid == uid)).first()
        if row is None:
            return None
        uids = json.loads(row.series_uids)
        series_t, instances = Series.__table__, Instance.__table__  # type: ignore[attr-defined]
        counts: dict[str, int] = dict(conn.execute(
            select(series_t.c.series_instance_uid, func.count(instances.c.id))
            .select_from(series_t.outerjoin(instances, instances.c.series_fk == series_t.c.id))
            .where(series_t.c.series_instance_uid.in_(uids)).group_by(series_t.c.series_instance_uid)
        ).all()) if uids else {}
    return {"status": row.status, "dataset": json.loads(row.dataset_json),
            "series": [{"SeriesInstanceUID": s, "storedInstances": int(counts.get(s, 0))} for s in uids]}
