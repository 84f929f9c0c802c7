"""QIDO-RS search for studies: the subset the core needs (PatientID, StudyInstanceUID, limit, offset).

The full matching model of PS3.18 10.6 and PS3.4 C.2.2.2 builds on this module's shape: one SQL query per
request, filters inside the WHERE clause, computed attributes from correlated subqueries.
"""

from __future__ import annotations

from typing import Any

import anyio
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..dicom.json_model import dumps
from ..http.media import negotiate
from ..http.problems import HTTPProblem
from ..index.models import Instance, Patient, Series, Study
from ..stow.routes import base_url

SUPPORTED = {"PatientID", "00100020", "StudyInstanceUID", "0020000D"}
MAX_INT = 2**31 - 1  # what every index can bind as an integer
CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


def _person_name(value: str) -> dict[str, Any]:
    if not value:
        return {"vr": "PN"}
    groups = dict(zip(("Alphabetic", "Ideographic", "Phonetic"), value.split("="), strict=False))
    return {"vr": "PN", "Value": [{k: v for k, v in groups.items() if v}]}


def _text(vr: str, value: Any) -> dict[str, Any]:
    if value in (None, ""):
        return {"vr": vr}
    return {"vr": vr, "Value": [value]}


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, f"query parameter {name}={raw!r} is not a whole number") from None
    if not 0 <= value <= MAX_INT:
        raise HTTPProblem(400, f"query parameter {name} must be between 0 and {MAX_INT}")
    return value


def _search(engine: Engine, filters: dict[str, list[str]], limit: int, offset: int) -> list[Any]:
    patient, study, series, instance = (
        Patient.__table__, Study.__table__, Series.__table__, Instance.__table__  # type: ignore[attr-defined]
    )
    series_count = select(func.count()).where(series.c.study_fk == study.c.id).scalar_subquery()
    instance_count = (
        select(func.count()).select_from(instance.join(series, instance.c.series_fk == series.c.id))
        .where(series.c.study_fk == study.c.id).scalar_subquery()
    )
    distinct_modality = series.c.modality.distinct()
    # Modality is CS (no commas); SQLite's DISTINCT aggregate takes no separator, so ',' serves both.
    aggregate = (
        func.string_agg(distinct_modality, ",") if engine.dialect.name == "postgresql"
        else func.group_concat(distinct_modality)
    )
    modalities = select(aggregate).where(series.c.study_fk == study.c.id).scalar_subquery()
    stmt = select(
        study, patient.c.patient_id, patient.c.patient_name, patient.c.patient_birth_date, patient.c.patient_sex,
        series_count.label("series_count"), instance_count.label("instance_count"), modalities.label("modalities"),
    ).join(patient, study.c.patient_fk == patient.c.id)
    if "PatientID" in filters:
        stmt = stmt.where(patient.c.patient_id.in_(filters["PatientID"]))
    if "StudyInstanceUID" in filters:
        stmt = stmt.where(study.c.study_instance_uid.in_(filters["StudyInstanceUID"]))
    stmt = stmt.order_by(study.c.study_date.desc(), study.c.study_instance_uid).limit(limit).offset(offset)
    with engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [(row, sorted(m for m in (row.modalities or "").split(",") if m)) for row in rows]


async def search_studies(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    negotiate(request.headers.get("accept"), ["application/dicom+json", "application/json"])
    filters: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key in CONTROL:
            continue
        if key not in SUPPORTED:
            raise HTTPProblem(400, f"query parameter {key!r} is not supported for matching")
        name = "PatientID" if key in ("PatientID", "00100020") else "StudyInstanceUID"
        filters.setdefault(name, []).extend(v for v in value.split("\\") if v)
    limit = min(_int_param(request, "limit", 1000), 10000)
    offset = _int_param(request, "offset", 0)
    rows = await anyio.to_thread.run_sync(_search, archive.engine, filters, limit, offset)
    base = base_url(request)
    answer = []
    for row, modalities in rows:
        answer.append(dict(sorted({
            "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
            "00080020": _text("DA", row.study_date),
            "00080030": _text("TM", row.study_time),
            "00080050": _text("SH", row.accession_number),
            "00080061": {"vr": "CS", "Value": modalities} if modalities else {"vr": "CS"},
            "00080090": _person_name(row.referring_physician_name),
            "00081030": _text("LO", row.study_description),
            "00081190": {"vr": "UR", "Value": [f"{base}/studies/{row.study_instance_uid}"]},
            "00100010": _person_name(row.patient_name),
            "00100020": _text("LO", row.patient_id),
            "00100030": _text("DA", row.patient_birth_date),
            "00100040": _text("CS", row.patient_sex),
            "0020000D": _text("UI", row.study_instance_uid),
            "00200010": _text("SH", row.study_id),
            "00201206": {"vr": "IS", "Value": [row.series_count]},
            "00201208": {"vr": "IS", "Value": [row.instance_count]},
        }.items())))
    if not answer:
        return Response(status_code=204)
    return Response(dumps(answer), media_type="application/dicom+json")
