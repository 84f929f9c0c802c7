"""The archive: settings, index, tiers and the shared services, opened once per process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import Engine

from .backends.tiers import TierSet, open_tier
from .index import db
from .services.ingest import IngestService, StoreResult
from .services.ingest_pool import ProcessIngest
from .services.removal import RemovalService
from .services.retrieve import RetrieveService
from .services.staging import StagedBlob, stage_file
from .services.sweeper import SweepReport, sweep
from .settings import Settings


class Ingest(Protocol):
    def store(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult: ...


def default_ingest_processes() -> int:
    """Worker processes for ingest: one per core beyond the first, at most 4; none on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cores) if cores > 1 else 0


@dataclass
class Archive:
    settings: Settings
    engine: Engine
    tiers: TierSet
    ingest: Ingest
    retrieve: RetrieveService
    removal: RemovalService

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True, ingest_processes: int | None = None) -> Archive:
        """Open the index and tiers; ``ingest_processes`` (default: the setting) > 0 ingests in processes."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = db.make_engine(settings.resolved_database_url)
        if migrate:
            db.upgrade(engine)
        tiers = TierSet(
            {t.name: open_tier(t, fsync=settings.fsync) for t in settings.resolved_tiers},
            settings.resolved_write_tier,
        )
        processes = settings.ingest_processes if ingest_processes is None else ingest_processes
        if processes < 0:
            processes = default_ingest_processes()
        ingest: Ingest = (
            ProcessIngest(settings, processes) if processes > 0 else IngestService(engine, tiers, settings)
        )
        return cls(
            settings=settings,
            engine=engine,
            tiers=tiers,
            ingest=ingest,
            retrieve=RetrieveService(engine, tiers),
            removal=RemovalService(engine, tiers),
        )

    @property
    def ingest_parallelism(self) -> int:
        """How many parts may be ingested at once: at least one per worker process."""
        processes = self.ingest.processes if isinstance(self.ingest, ProcessIngest) else 0
        return max(1, self.settings.ingest_concurrency, processes)

    def warm_up(self) -> None:
        if isinstance(self.ingest, ProcessIngest):
            self.ingest.warm_up()

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
        if isinstance(self.ingest, ProcessIngest):
            self.ingest.close()
        self.engine.dispose()
