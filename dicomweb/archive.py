"""The archive: settings, index, tiers and the shared services, opened once per process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from .backends.tiers import TierSet, open_tier
from .index import db
from .services.ingest import IngestService
from .services.removal import RemovalService
from .services.retrieve import RetrieveService
from .services.staging import StagedBlob, stage_file
from .services.sweeper import SweepReport, sweep
from .settings import Settings


@dataclass
class Archive:
    settings: Settings
    engine: Engine
    tiers: TierSet
    ingest: IngestService
    retrieve: RetrieveService
    removal: RemovalService

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Archive:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = db.make_engine(settings.resolved_database_url)
        if migrate:
            db.upgrade(engine)
        tiers = TierSet(
            {t.name: open_tier(t, fsync=settings.fsync) for t in settings.resolved_tiers},
            settings.resolved_write_tier,
        )
        return cls(
            settings=settings,
            engine=engine,
            tiers=tiers,
            ingest=IngestService(engine, tiers, settings),
            retrieve=RetrieveService(engine, tiers),
            removal=RemovalService(engine, tiers),
        )

    @property
    def staging_dir(self) -> Path:
        """Where incoming parts are spooled: beside the write tier when it is local (a rename stores them)."""
        return self.tiers.write.staging_dir() or self.settings.staging_dir

    def stage_file(self, path: Path) -> StagedBlob:
        return stage_file(path, self.staging_dir, self.settings.spool_memory_bytes)

    def sweep(self, grace_seconds: float | None = None) -> SweepReport:
        grace = self.settings.orphan_grace_seconds if grace_seconds is None else grace_seconds
        dirs = sorted({self.staging_dir, self.settings.staging_dir})
        return sweep(self.engine, self.tiers, dirs, grace)

    def close(self) -> None:
        self.engine.dispose()
