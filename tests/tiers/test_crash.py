"""SIGKILL the migrating process at random points; after a restart every instance has exactly one copy."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from dicomweb.archive import Archive
from dicomweb.index.models import Instance, TierMove

from .conftest import S3Server, ingest, make_settings, sample_entries, tier_config, toml_config

ROUTE = [("local", "national"), ("national", "lab"), ("lab", "local"), ("local", "lab")]


def _config(tmp_path: Path, tiers: list[dict[str, object]], source: str, target: str) -> Path:
    path = toml_config(tmp_path / f"{source}-{target}.toml", tiers, data_dir=str(tmp_path / "data"), fsync=False,
                       migration_drain_seconds=0.05, ingest_processes=0)
    with path.open("a") as fp:
        fp.write(f'[[lifecycle]]\nsource = "{source}"\ntarget = "{target}"\nafter_days = 0\nsince = "stored"\n')
    return path


def _migrate(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "dicomweb.cli", "migrate", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _check(archive: Archive, *, exactly_one: bool) -> dict[str, str]:
    table = Instance.__table__  # type: ignore[attr-defined]
    with archive.engine.connect() as conn:
        rows = conn.execute(select(table.c.tier, table.c.storage_key, table.c.sha256)).all()
    for row in rows:
        # The index always names a complete copy with the stored sha256 ...
        assert archive.tiers.raw(row.tier).sha256(row.storage_key) == row.sha256, row
        if exactly_one:  # ... and once recovered, it is the only one.
            copies = [n for n, t in archive.tiers.tiers.items() if t.exists(row.storage_key)]
            assert copies == [row.tier], (row.storage_key, copies)
    return {r.storage_key: r.tier for r in rows}


def test_sigkill_at_random_points_then_restart(s3: S3Server, tmp_path: Path) -> None:
    seed = int(os.environ.get("DICOMWEB_CRASH_SEED", time.time()))
    rng = random.Random(seed)
    bucket = s3.bucket()
    tiers = tier_config(tmp_path, s3, bucket)
    settings = make_settings(tmp_path, s3, bucket)
    archive = Archive.open(settings)
    entries = sample_entries(16)
    ingest(archive, entries)
    killed_mid_move = 0
    for source, target in ROUTE:
        config = _config(tmp_path, tiers, source, target)
        process = _migrate(config)
        # Wait until moves are under way (a tier_move row exists), then kill at a random moment after that.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            with archive.engine.connect() as conn:
                if conn.execute(select(TierMove.__table__)).first():  # type: ignore[attr-defined]
                    break
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.6))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        _check(archive, exactly_one=False)
        with archive.engine.connect() as conn:
            killed_mid_move += bool(conn.execute(select(TierMove.__table__)).first())  # type: ignore[attr-defined]
        finished = _migrate(config)
        _, err = finished.communicate(timeout=120)
        assert finished.returncode == 0, (seed, err.decode()[-2000:])
        locations = _check(archive, exactly_one=True)
        assert set(locations.values()) == {target}, seed
        with archive.engine.connect() as conn:
            assert conn.execute(select(TierMove.__table__)).first() is None  # type: ignore[attr-defined]
    archive.close()
    print(f"seed {seed}: {killed_mid_move} of {len(ROUTE)} kills landed with a move in flight")
