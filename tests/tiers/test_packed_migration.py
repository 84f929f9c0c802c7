"""A packed series moves with its study between tiers: its container goes whole, verified, and stays readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.index.models import Instance, PackedSeries
from dicomweb.services.migration import MigrationError, MigrationService
from dicomweb.services.packing import PackingService
from tests.conftest import data_index

from .conftest import S3Server, ingest, make_settings

# A small native MR series of several instances (a few kB each): packs and moves in well under a second.
SERIES = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.118"
FRAMES = {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'}
INSTANCE = {"Accept": "application/dicom"}


def _series_entries() -> list[dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for entry in data_index():
        if entry["valid"] and entry["series_uid"] == SERIES:
            chosen.setdefault(entry["sop_instance_uid"], entry)
    return list(chosen.values())


def _state(archive: Archive) -> tuple[set[str], list[tuple[str, str]], list[str]]:
    """Instance tiers, (tier, key) of each container, and the instances' loose keys."""
    instances, packed = Instance.__table__, PackedSeries.__table__  # type: ignore[attr-defined]
    with archive.engine.connect() as conn:
        tiers = set(conn.execute(select(instances.c.tier)).scalars())
        containers = [(r.tier, r.storage_key) for r in conn.execute(select(packed.c.tier, packed.c.storage_key))]
        keys = list(conn.execute(select(instances.c.storage_key)).scalars())
    return tiers, containers, keys


def _copies(archive: Archive, key: str) -> list[str]:
    return [name for name, tier in archive.tiers.tiers.items() if tier.exists(key)]


@pytest.mark.parametrize("keep_loose", [False, True], ids=["container-only", "with-spare-loose-blobs"])
def test_a_packed_series_migrates_between_tiers_and_stays_readable(s3: S3Server, tmp_path: Path,
                                                                    keep_loose: bool) -> None:
    entries = _series_entries()
    assert len(entries) >= 3
    settings = make_settings(tmp_path, s3, s3.bucket())
    archive = Archive.open(settings)
    ingest(archive, entries)
    study = entries[0]["study_uid"]
    urls = [f"/dicom-web/studies/{study}/series/{SERIES}/instances/{e['sop_instance_uid']}" for e in entries]
    mover = MigrationService(archive.engine, archive.tiers, drain_seconds=0)
    packing = PackingService(archive.engine, archive.tiers, archive.staging_dir)
    try:
        with TestClient(create_app(settings, archive)) as client:
            def answers() -> list[tuple[int, bytes, int, bytes]]:
                found = []
                for url in urls:
                    whole = client.get(url, headers=INSTANCE)
                    frame = client.get(url + "/frames/1", headers=FRAMES)
                    boundary = frame.headers["content-type"].split("boundary=")[1].strip('"').encode()
                    found.append((whole.status_code, whole.content, frame.status_code,
                                  frame.content.replace(boundary, b"BOUNDARY")))
                return found

            before = answers()
            assert all(status == 200 and frame == 200 for status, _, frame, _ in before)
            assert packing.pack(SERIES, keep_loose=keep_loose).status == "packed"
            (_, container_key), = _state(archive)[1]
            loose_keys = _state(archive)[2]
            for target in ("national", "lab", "local", "national"):
                report = mover.move_study(study, target)
                assert (report.instances, report.containers, report.skipped) == (len(entries), 1, 0)
                tiers, containers, _ = _state(archive)
                assert tiers == {target} and containers == [(target, container_key)]
                assert _copies(archive, container_key) == [target]  # exactly one copy, where the index says
                for key in loose_keys:
                    assert _copies(archive, key) == ([target] if keep_loose else [])
                # Same bytes as before packing, read now from the container on the target tier.
                assert answers() == before
                assert mover.pending() == 0
            assert mover.move_study(study, "national").instances == 0  # already there: nothing to do
            assert packing.verify().ok
            # Unpacking restores the loose blobs on the tier the series now lives on.
            assert packing.unpack(SERIES).status == "unpacked"
            for key in loose_keys:
                assert _copies(archive, key) == ["national"]
            assert _state(archive)[1] == []
            assert answers() == before
    finally:
        archive.close()


def test_a_damaged_container_copy_is_not_switched(s3: S3Server, tmp_path: Path) -> None:
    entries = _series_entries()
    settings = make_settings(tmp_path, s3, s3.bucket())
    archive = Archive.open(settings)
    ingest(archive, entries)
    study = entries[0]["study_uid"]
    PackingService(archive.engine, archive.tiers, archive.staging_dir).pack(SERIES)
    (_, key), = _state(archive)[1]
    national = archive.tiers.raw("national")
    real_store = national.store_stream

    def damaging_store(source: Any, target_key: str) -> None:
        data = bytearray(source.read())
        data[len(data) // 2] ^= 0xFF
        national.store_bytes(bytes(data), target_key)

    national.store_stream = damaging_store  # type: ignore[method-assign]
    mover = MigrationService(archive.engine, archive.tiers, drain_seconds=0)
    try:
        with pytest.raises(MigrationError, match="sha256"):
            mover.move_study(study, "national")
        tiers, containers, _ = _state(archive)
        assert tiers == {"local"} and containers == [("local", key)]
        assert _copies(archive, key) == ["local"]  # the bad copy went, the good one stayed
        assert mover.pending() == 0
        national.store_stream = real_store  # type: ignore[method-assign]
        assert mover.move_study(study, "national").containers == 1
        assert _state(archive)[1] == [("national", key)]
    finally:
        archive.close()
