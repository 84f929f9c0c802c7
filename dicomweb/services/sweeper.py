"""The orphan sweeper: removes blobs no index row names, and spool debris, once they are old enough.

Old enough matters: an ingest in flight has a durable blob for a moment before its index row commits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..backends.tiers import TEMP_MARK, TierSet
from ..index.models import Instance
from .packing import container_keys

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    orphans_removed: int = 0
    temporaries_removed: int = 0
    spool_files_removed: int = 0


def sweep(engine: Engine, tiers: TierSet, staging_dirs: list[Path], grace_seconds: float) -> SweepReport:
    report = SweepReport()
    cutoff = time.time() - grace_seconds
    for directory in staging_dirs:
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            try:
                if path.is_file() and path.stat().st_mtime <= cutoff:
                    path.unlink()
                    report.spool_files_removed += 1
            except FileNotFoundError:
                continue
    instances = Instance.__table__  # type: ignore[attr-defined]
    for name, tier in tiers.tiers.items():
        candidates = [(key, mtime) for key, mtime in tier.iter_keys() if mtime <= cutoff]
        if not candidates:
            continue
        with engine.connect() as conn:
            known = set(conn.execute(select(instances.c.storage_key).where(instances.c.tier == name)).scalars())
        known |= container_keys(engine, name)  # packed series containers (issue 8)
        for key, _ in candidates:
            if key in known:
                continue
            tier.delete(key)
            if TEMP_MARK in key:
                report.temporaries_removed += 1
            else:
                report.orphans_removed += 1
                log.info("removed orphan blob %s/%s", name, key)
    return report
