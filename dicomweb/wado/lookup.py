"""The queries WADO needs beyond the core retrieve service: one instance with its image facts, and the
validator (a cheap aggregate) that says whether a study's or series' metadata changed."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ..index.models import Instance, Series, Study
from ..services.retrieve import StoredInstance


def _tables() -> tuple[Any, Any, Any]:
    return Study.__table__, Series.__table__, Instance.__table__  # type: ignore[attr-defined]


def _join() -> Any:
    studies, series_t, instances = _tables()
    return instances.join(series_t, instances.c.series_fk == series_t.c.id).join(
        studies, series_t.c.study_fk == studies.c.id)


@dataclass(frozen=True)
class ImageInstance:
    stored: StoredInstance
    bits_allocated: int | None


def image_instance(engine: Engine, study: str, series: str, sop: str) -> ImageInstance | None:
    """One instance with what frames and bulk data need, in one query."""
    studies, series_t, i = _tables()
    columns = [
        studies.c.study_instance_uid, series_t.c.series_instance_uid, i.c.sop_instance_uid, i.c.sop_class_uid,
        i.c.transfer_syntax_uid, i.c.tier, i.c.storage_key, i.c.size, i.c.sha256, i.c.number_of_frames,
        i.c.pixel_tag, i.c.pixel_vr, i.c.pixel_offset, i.c.pixel_length, i.c.encapsulated,
        i.c.frame_ranges.label("frame_ranges_json"), i.c.created_at, i.c.bits_allocated,
    ]
    stmt = select(*columns).select_from(_join()).where(
        studies.c.study_instance_uid == study, series_t.c.series_instance_uid == series,
        i.c.sop_instance_uid == sop)
    with engine.connect() as conn:
        row = conn.execute(stmt).first()
    if row is None:
        return None
    values = dict(row._mapping)
    bits = values.pop("bits_allocated")
    return ImageInstance(StoredInstance(**values), bits)


@dataclass(frozen=True)
class Validator:
    """What changes whenever the metadata of a scope changes: instances added, removed or replaced."""

    count: int
    last_modified: datetime | None
    token: str


def metadata_validator(engine: Engine, study: str, series: str | None, sop: str | None) -> Validator:
    studies, series_t, i = _tables()
    stmt = select(
        func.count(i.c.id), func.coalesce(func.sum(i.c.id), 0), func.max(i.c.created_at),
        func.max(series_t.c.updated_at), func.max(studies.c.updated_at),
    ).select_from(_join()).where(studies.c.study_instance_uid == study)
    if series is not None:
        stmt = stmt.where(series_t.c.series_instance_uid == series)
    if sop is not None:
        stmt = stmt.where(i.c.sop_instance_uid == sop)
    with engine.connect() as conn:
        count, id_sum, newest, series_touched, study_touched = conn.execute(stmt).one()
    token = hashlib.sha256(
        f"{study}|{series}|{sop}|{count}|{id_sum}|{newest}|{series_touched}|{study_touched}".encode()
    ).hexdigest()[:32]
    return Validator(int(count), newest, token)
