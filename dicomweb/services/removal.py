"""Deleting studies, series and instances: index rows first (one transaction), then their blobs."""

from __future__ import annotations

import logging

from sqlalchemy import delete, exists, select
from sqlalchemy.engine import Engine

from ..backends.tiers import StorageError, TierSet
from ..index.models import Instance, Patient, PatientIdentifier, Series, Study
from .packing import drop_unreferenced_containers

log = logging.getLogger(__name__)


class RemovalService:
    def __init__(self, engine: Engine, tiers: TierSet) -> None:
        self.engine = engine
        self.tiers = tiers

    def delete(self, study: str, series: str | None = None, sop: str | None = None) -> int:
        """Remove what the UIDs name; returns how many instances went (0: nothing matched)."""
        studies = Study.__table__  # type: ignore[attr-defined]
        series_t = Series.__table__  # type: ignore[attr-defined]
        instances = Instance.__table__  # type: ignore[attr-defined]
        patients = Patient.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            scope = (
                select(instances.c.id, instances.c.tier, instances.c.storage_key, series_t.c.id.label("series_id"),
                       studies.c.id.label("study_id"), studies.c.patient_fk)
                .select_from(instances.join(series_t, instances.c.series_fk == series_t.c.id)
                             .join(studies, series_t.c.study_fk == studies.c.id))
                .where(studies.c.study_instance_uid == study)
            )
            if series is not None:
                scope = scope.where(series_t.c.series_instance_uid == series)
            if sop is not None:
                scope = scope.where(instances.c.sop_instance_uid == sop)
            rows = conn.execute(scope).all()
            if not rows:
                return 0
            conn.execute(delete(instances).where(instances.c.id.in_([r.id for r in rows])))
            series_ids = {r.series_id for r in rows}
            study_ids = {r.study_id for r in rows}
            patient_ids = {r.patient_fk for r in rows}
            # Parents left empty go too, so QIDO never shows a study without instances.
            conn.execute(delete(series_t).where(
                series_t.c.id.in_(series_ids), ~exists().where(instances.c.series_fk == series_t.c.id)))
            conn.execute(delete(studies).where(
                studies.c.id.in_(study_ids), ~exists().where(series_t.c.study_fk == studies.c.id)))
            orphans = select(patients.c.id).where(
                patients.c.id.in_(patient_ids), ~exists().where(studies.c.patient_fk == patients.c.id))
            identifiers = PatientIdentifier.__table__  # type: ignore[attr-defined]
            conn.execute(delete(identifiers).where(identifiers.c.patient_fk.in_(orphans)))
            conn.execute(delete(patients).where(patients.c.id.in_(orphans)))
        for row in rows:
            try:
                self.tiers[row.tier].delete(row.storage_key)
            except (StorageError, OSError) as exc:
                log.warning("blob %s/%s left for the sweeper: %s", row.tier, row.storage_key, exc)
        drop_unreferenced_containers(self.engine, self.tiers)  # a packed series deleted whole (issue 8)
        return len(rows)
