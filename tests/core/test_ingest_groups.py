"""Concurrent stores: rows committed in groups, yet every instance gets its own outcome, and the index never
names a blob that is not there (SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from dicomweb.archive import Archive
from dicomweb.index.models import Instance, Study
from dicomweb.services.ingest import IngestService, StoreResult
from dicomweb.services.staging import StagedBlob
from dicomweb.settings import load_settings


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Archive]:
    opened = Archive.open(load_settings(data_dir=tmp_path / "data", database_url=database_url), ingest_processes=0)
    yield opened
    opened.close()


def instance(shared_data: Path, study: str, series: str, sop: str | None = None, note: str = "") -> bytes:
    ds = pydicom.dcmread(shared_data / "pydicom-test-files/CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop or generate_uid()
    ds.ImageComments = note
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store_together(archive: Archive, parts: list[bytes]) -> tuple[list[StoreResult], list[int]]:
    """Store every part from its own thread, all of their index rows held back until every one is durable,
    so they meet in one group; the results in order and the sizes of the groups committed."""
    service = archive.ingest
    assert isinstance(service, IngestService)
    sizes: list[int] = []
    commit = service._commit_group

    def recording(group: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(group))
        commit(group)

    service._commit_group = recording  # type: ignore[method-assign]
    results: list[StoreResult | None] = [None] * len(parts)

    def one(i: int) -> None:
        results[i] = service.store(StagedBlob.from_bytes(parts[i]))

    with service._commit_lock:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(parts))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(service._queue) < len(parts) and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join(60)
    service._commit_group = commit  # type: ignore[method-assign]
    return [r for r in results if r is not None], sizes


def stored_bytes(archive: Archive, sop: str) -> bytes:
    table = Instance.__table__  # type: ignore[attr-defined]
    with archive.engine.connect() as conn:
        row = conn.execute(select(table.c.tier, table.c.storage_key).where(table.c.sop_instance_uid == sop)).one()
    with archive.tiers[row.tier].open(row.storage_key) as fp:
        return fp.read()


def test_one_group_of_new_instances(archive: Archive, shared_data: Path) -> None:
    study, series = generate_uid(), generate_uid()
    parts = [instance(shared_data, study, series) for _ in range(8)]
    results, sizes = store_together(archive, parts)
    assert [r.outcome for r in results] == ["stored"] * 8
    assert max(sizes) > 1, sizes  # they did share a transaction
    for data, result in zip(parts, results, strict=True):
        assert stored_bytes(archive, result.sop_instance_uid) == data
    with archive.engine.connect() as conn:
        assert len(conn.execute(select(Study.__table__.c.id)).all()) == 1  # type: ignore[attr-defined]


def test_a_group_with_every_kind_of_outcome(archive: Archive, shared_data: Path) -> None:
    study, series = generate_uid(), generate_uid()
    earlier = instance(shared_data, study, series)
    sop = pydicom.dcmread(io.BytesIO(earlier)).SOPInstanceUID
    assert archive.ingest.store(StagedBlob.from_bytes(earlier)).outcome == "stored"
    other_study = generate_uid()
    twice = instance(shared_data, study, series)
    parts = [
        instance(shared_data, study, series),  # new
        earlier,  # the same bytes again: a duplicate
        instance(shared_data, study, series, sop=sop, note="other bytes"),  # refused (on_conflict = reject)
        instance(shared_data, other_study, series),  # its series is already in another study: refused
        twice, twice,  # the same new instance twice at once: one stored, one duplicate, its blob kept
        instance(shared_data, study, series),  # new
    ]
    results, _ = store_together(archive, parts)
    outcomes = [r.outcome for r in results]
    assert outcomes[0] == "stored" and outcomes[1] == "duplicate" and outcomes[6] == "stored"
    assert outcomes[2] == "failed" and results[2].failure_reason == 0x0111
    assert "on_conflict = reject" in results[2].message
    assert outcomes[3] == "failed" and "already stored in another study" in results[3].message
    assert sorted(outcomes[4:6]) == ["duplicate", "stored"]
    assert stored_bytes(archive, sop) == earlier
    assert stored_bytes(archive, results[4].sop_instance_uid) == twice
    assert stored_bytes(archive, results[0].sop_instance_uid) == parts[0]
    with archive.engine.connect() as conn:
        studies = conn.execute(select(Study.__table__.c.study_instance_uid)).scalars().all()  # type: ignore[attr-defined]
    assert other_study not in studies, "a refused instance leaves no study behind"
    # Nothing but the index's blobs is left in the tier.
    table = Instance.__table__  # type: ignore[attr-defined]
    with archive.engine.connect() as conn:
        keys = set(conn.execute(select(table.c.storage_key)).scalars())
    assert {key for key, _ in archive.tiers.write.iter_keys()} == keys


def test_replace_in_a_group(tmp_path: Path, shared_data: Path) -> None:
    opened = Archive.open(load_settings(data_dir=tmp_path / "data", on_conflict="replace"), ingest_processes=0)
    try:
        study, series = generate_uid(), generate_uid()
        first = instance(shared_data, study, series)
        sop = pydicom.dcmread(io.BytesIO(first)).SOPInstanceUID
        assert opened.ingest.store(StagedBlob.from_bytes(first)).outcome == "stored"
        newer = instance(shared_data, study, series, sop=sop, note="newer")
        results, _ = store_together(opened, [newer, instance(shared_data, study, series)])
        assert [r.outcome for r in results] == ["replaced", "stored"]
        assert stored_bytes(opened, sop) == newer
        assert len(list(opened.tiers.write.iter_keys())) == 2, "the replaced blob is removed"
    finally:
        opened.close()


def test_a_duplicate_in_a_group_keeps_the_stored_blob(archive: Archive, shared_data: Path) -> None:
    study, series = generate_uid(), generate_uid()
    earlier = instance(shared_data, study, series)
    first = archive.ingest.store(StagedBlob.from_bytes(earlier))
    later = instance(shared_data, study, series)
    results, sizes = store_together(archive, [earlier, later])
    assert [r.outcome for r in results] == ["duplicate", "stored"] and sizes == [2]
    # The duplicate's blob was written under the stored one's key (same bytes, same key): it must stay.
    assert stored_bytes(archive, first.sop_instance_uid) == earlier
    assert stored_bytes(archive, results[1].sop_instance_uid) == later


def test_a_duplicate_of_an_instance_stored_elsewhere_removes_only_the_new_copy(
    archive: Archive, shared_data: Path
) -> None:
    """The stored row names another place (a tier move, say): the re-store's own blob goes, the stored stays."""
    study, series = generate_uid(), generate_uid()
    data = instance(shared_data, study, series)
    first = archive.ingest.store(StagedBlob.from_bytes(data))
    table = Instance.__table__  # type: ignore[attr-defined]
    tier = archive.tiers.write
    with archive.engine.begin() as conn:
        key = conn.execute(
            select(table.c.storage_key).where(table.c.sop_instance_uid == first.sop_instance_uid)).scalar_one()
        tier.store_bytes(data, "elsewhere/moved.dcm")
        tier.delete(key)
        conn.execute(table.update().where(table.c.sop_instance_uid == first.sop_instance_uid)
                     .values(storage_key="elsewhere/moved.dcm"))
    for results in ([archive.ingest.store(StagedBlob.from_bytes(data))],
                    store_together(archive, [data, instance(shared_data, study, series)])[0][:1]):
        assert results[0].outcome == "duplicate"
        assert stored_bytes(archive, first.sop_instance_uid) == data
        assert not tier.exists(key), "the second copy is removed"
