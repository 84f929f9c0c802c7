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
    """Worker processes for ingest: one per core beyond the first (the web process's), at most 4; none on
    one core. (On two cores one worker of several threads beat two: 3% more instances/s at 9% less CPU on the
    synthetic CT, its commits in one queue and no second process contending for the SQLite lock.)"""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cores - 1) if cores > 1 else 0


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
        """How many parts may be ingested at once: at least what the worker processes run at once."""
        in_processes = self.ingest.parallelism if isinstance(self.ingest, ProcessIngest) else 0
        return max(1, self.settings.ingest_concurrency, in_processes)

    def warm_up(self) -> None:
        if isinstance(self.ingest, ProcessIngest):
            self.ingest.warm_up()

    @property
    def staging_dir(self) -> Path:
        """Where incoming parts are spooled: beside the write tier when it is local (a rename stores them)."""
        return self.tiers.write.staging_dir() or self.settings.staging_dir

    @property
    def spool_memory_bytes(self) -> int:
        """How much of a part may be spooled in memory. With ingest processes, none: a part spooled to a file
        crosses to its worker as a path (which the worker renames into the tier) instead of being pickled
        through a pipe and written again there."""
        return 0 if isinstance(self.ingest, ProcessIngest) else self.settings.spool_memory_bytes

    def stage_file(self, path: Path) -> StagedBlob:
        return stage_file(path, self.staging_dir, self.spool_memory_bytes)

    def sweep(self, grace_seconds: float | None = None) -> SweepReport:
        grace = self.settings.orphan_grace_seconds if grace_seconds is None else grace_seconds
        dirs = sorted({self.staging_dir, self.settings.staging_dir})
        return sweep(self.engine, self.tiers, dirs, grace)

    def close(self) -> None:
        if isinstance(self.ingest, ProcessIngest):
            self.ingest.close()
        self.engine.dispose()
