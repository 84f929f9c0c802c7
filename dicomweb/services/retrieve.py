"""Retrieve: which stored instances a request names, their metadata, and their bytes from any tier."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, BinaryIO

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..backends.tiers import ObjectMissing, TierSet
from ..index.models import Instance, PackedSeries, Series, Study
from .containers import ContainerReader, FrameNotFound, frame_from_part10

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
    # Packing: where the series container holding this instance is (None: the loose blob is the copy).
    container_tier: str | None = None
    container_key: str | None = None

    @cached_property
    def frame_ranges(self) -> list[list[tuple[int, int]]] | None:
        """Per frame, its (offset, length) pieces; parsed once per row (a remembered row serves many reads)."""
        if self.frame_ranges_json is None:
            return None
        return [[(int(o), int(n)) for o, n in frame] for frame in json.loads(self.frame_ranges_json)]


def _tables() -> tuple[Any, Any, Any]:
    return Study.__table__, Series.__table__, Instance.__table__  # type: ignore[attr-defined]


class RetrieveService:
    def __init__(self, engine: Engine, tiers: TierSet) -> None:
        self.engine = engine
        self.tiers = tiers
        self.containers = ContainerReader(tiers)

    def _scope(
        self, columns: list[Any], study: str, series: str | None, sop: str | None, packed: bool = False
    ) -> Any:
        studies, series_t, instances = _tables()
        joined = instances.join(series_t, instances.c.series_fk == series_t.c.id).join(
            studies, series_t.c.study_fk == studies.c.id)
        if packed:
            containers = PackedSeries.__table__  # type: ignore[attr-defined]
            joined = joined.outerjoin(containers, instances.c.container_fk == containers.c.id)
        stmt = select(*columns).select_from(joined).where(studies.c.study_instance_uid == study)
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
        containers = PackedSeries.__table__  # type: ignore[attr-defined]
        columns = [
            studies.c.study_instance_uid, series_t.c.series_instance_uid, i.c.sop_instance_uid, i.c.sop_class_uid,
            i.c.transfer_syntax_uid, i.c.tier, i.c.storage_key, i.c.size, i.c.sha256, i.c.number_of_frames,
            i.c.pixel_tag, i.c.pixel_vr, i.c.pixel_offset, i.c.pixel_length, i.c.encapsulated,
            i.c.frame_ranges.label("frame_ranges_json"), i.c.created_at,
            containers.c.tier.label("container_tier"), containers.c.storage_key.label("container_key"),
        ]
        with self.engine.connect() as conn:
            rows = conn.execute(self._scope(columns, study, series, sop, packed=True)).all()
        return [StoredInstance(**row._mapping) for row in rows]

    def metadata(self, study: str, series: str | None = None, sop: str | None = None,
                 without_burned_in: bool = False) -> list[str]:
        """The stored DICOM JSON text of each instance (BulkDataURIs still carry the base marker);
        ``without_burned_in``: leaving out series flagged with burned-in annotation (anonymized views)."""
        _, series_t, i = _tables()
        stmt = self._scope([i.c.metadata_json], study, series, sop)
        if without_burned_in:
            stmt = stmt.where(series_t.c.burned_in_annotation.is_(False))
        with self.engine.connect() as conn:
            return list(conn.execute(stmt).scalars())

    def _container(self, instance: StoredInstance, look_up: bool = False) -> tuple[str, str] | None:
        """The container to read ``instance`` from, or None for its loose blob.

        ``look_up``: the loose blob is missing and the caller's row may predate a pack (or come from a query
        that did not join containers): ask the index. A container holding an older version of an instance
        replaced since packing is ignored; the replacement is loose.
        """
        where: tuple[str, str] | None = None
        if instance.container_tier is not None and instance.container_key is not None:
            where = (instance.container_tier, instance.container_key)
        elif look_up:
            containers, i = PackedSeries.__table__, Instance.__table__  # type: ignore[attr-defined]
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(containers.c.tier, containers.c.storage_key)
                    .select_from(i.join(containers, i.c.container_fk == containers.c.id))
                    .where(i.c.sop_instance_uid == instance.sop_instance_uid)
                ).first()
            where = (row.tier, row.storage_key) if row is not None else None
        if where is None or not self.containers.holds(*where, instance.sop_instance_uid, instance.sha256):
            return None
        return where

    def _packed_bytes(self, instance: StoredInstance, look_up: bool = False) -> bytes | None:
        where = self._container(instance, look_up)
        return None if where is None else self.containers.read_instance(*where, instance.sop_instance_uid)

    def open(self, instance: StoredInstance) -> BinaryIO:
        data = self._packed_bytes(instance)
        if data is None:
            try:
                return self.tiers[instance.tier].open(instance.storage_key)
            except ObjectMissing:
                if (data := self._packed_bytes(instance, look_up=True)) is None:
                    raise
        return io.BytesIO(data)

    def read_range(self, instance: StoredInstance, offset: int, length: int) -> bytes:
        data = self._packed_bytes(instance)
        if data is None:
            try:
                return self.tiers[instance.tier].read_range(instance.storage_key, offset, length)
            except ObjectMissing:
                if (data := self._packed_bytes(instance, look_up=True)) is None:
                    raise
        return data[offset : offset + length]

    def read_range_cached(self, instance: StoredInstance, offset: int, length: int) -> bytearray | None:
        """The range of a loose blob when it can be had without waiting (safe on the event loop), else None."""
        if instance.container_tier is not None:
            return None  # packed: decoding the container is work for a thread
        return self.tiers[instance.tier].read_range_cached(instance.storage_key, offset, length)

    def read_frame(self, instance: StoredInstance, frame_number: int) -> bytes:
        """Frame ``frame_number`` (1-based) as stored: native pixels in the file's byte order, or the
        concatenated fragments of an encapsulated frame. Raises FrameNotFound for a frame not there."""
        if not 1 <= frame_number <= max(instance.number_of_frames, 1):
            raise FrameNotFound(f"instance {instance.sop_instance_uid} has no frame {frame_number} "
                                f"(it has {instance.number_of_frames})")
        where = self._container(instance)
        if where is not None:
            return self.containers.read_frame(*where, instance.sop_instance_uid, frame_number)
        ranges = instance.frame_ranges
        if ranges is None or len(ranges) < frame_number:
            with self.open(instance) as fp:
                return frame_from_part10(fp.read(), frame_number, instance.sop_instance_uid)
        pieces = ranges[frame_number - 1]
        if not pieces:
            return b""
        start, end = pieces[0][0], pieces[-1][0] + pieces[-1][1]
        blob = self.read_range(instance, start, end - start)  # one read; fragments are sliced out of it
        return blob if len(pieces) == 1 else b"".join(blob[o - start : o - start + n] for o, n in pieces)

    def iter_bytes(self, instance: StoredInstance, chunk: int = CHUNK) -> Iterator[bytes]:
        with self.open(instance) as fp:
            while data := fp.read(chunk):
                yield data
