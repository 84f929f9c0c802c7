"""Retrieve: which stored instances a request names, their metadata, and their bytes from any tier."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..backends.tiers import TierSet
from ..index.models import Instance, Series, Study

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredInstance:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    tier: str
    storage_key: str
    size: int
    sha256: str
    number_of_frames: int
    pixel_tag: int | None
    pixel_vr: str
    pixel_offset: int | None
    pixel_length: int | None
    encapsulated: bool
    frame_ranges_json: str | None
    created_at: datetime

    @property
    def frame_ranges(self) -> list[list[tuple[int, int]]] | None:
        if self.frame_ranges_json is None:
            return None
        return [[(int(o), int(n)) for o, n in frame] for frame in json.loads(self.frame_ranges_json)]


def _tables() -> tuple[Any, Any, Any]:
    return Study.__table__, Series.__table__, Instance.__table__  # type: ignore[attr-defined]


class RetrieveService:
    def __init__(self, engine: Engine, tiers: TierSet) -> None:
        self.engine = engine
        self.tiers = tiers

    def _scope(self, columns: list[Any], study: str, series: str | None, sop: str | None) -> Any:
        studies, series_t, instances = _tables()
        stmt = (
            select(*columns)
            .select_from(instances.join(series_t, instances.c.series_fk == series_t.c.id).join(
                studies, series_t.c.study_fk == studies.c.id))
            .where(studies.c.study_instance_uid == study)
        )
        if series is not None:
            stmt = stmt.where(series_t.c.series_instance_uid == series)
        if sop is not None:
            stmt = stmt.where(instances.c.sop_instance_uid == sop)
        # A stable order viewers expect: series by number, instances by number, then by UID.
        return stmt.order_by(
            series_t.c.series_number, series_t.c.series_instance_uid, instances.c.instance_number,
            instances.c.sop_instance_uid,
        )

    def instances(self, study: str, series: str | None = None, sop: str | None = None) -> list[StoredInstance]:
        """Every stored instance in the named study, series or instance, in one query."""
        studies, series_t, i = _tables()
        columns = [
            studies.c.study_instance_uid, series_t.c.series_instance_uid, i.c.sop_instance_uid, i.c.sop_class_uid,
            i.c.transfer_syntax_uid, i.c.tier, i.c.storage_key, i.c.size, i.c.sha256, i.c.number_of_frames,
            i.c.pixel_tag, i.c.pixel_vr, i.c.pixel_offset, i.c.pixel_length, i.c.encapsulated,
            i.c.frame_ranges.label("frame_ranges_json"), i.c.created_at,
        ]
        with self.engine.connect() as conn:
            rows = conn.execute(self._scope(columns, study, series, sop)).all()
        return [StoredInstance(**row._mapping) for row in rows]

    def metadata(self, study: str, series: str | None = None, sop: str | None = None) -> list[str]:
        """The stored DICOM JSON text of each instance (BulkDataURIs still carry the base marker)."""
        _, _, i = _tables()
        with self.engine.connect() as conn:
            return list(conn.execute(self._scope([i.c.metadata_json], study, series, sop)).scalars())

    def open(self, instance: StoredInstance) -> BinaryIO:
        return self.tiers[instance.tier].open(instance.storage_key)

    def read_range(self, instance: StoredInstance, offset: int, length: int) -> bytes:
        return self.tiers[instance.tier].read_range(instance.storage_key, offset, length)

    def iter_bytes(self, instance: StoredInstance, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.open(instance) as fp:
            while data := fp.read(chunk):
                yield data
