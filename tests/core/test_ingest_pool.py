"""The ingest worker processes: blocking and event-loop callers side by side, several loops one after the
other, and a worker killed mid-store (its parts fail alone, a new worker takes over)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from dicomweb.archive import Archive
from dicomweb.services.ingest_pool import ProcessIngest
from dicomweb.services.staging import StagedBlob, stage_file
from dicomweb.settings import Settings, load_settings


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[tuple[ProcessIngest, Settings]]:
    settings = load_settings(data_dir=tmp_path / "data", fsync=False)
    Archive.open(settings, ingest_processes=0).close()  # the index, migrated
    ingest = ProcessIngest(settings, processes=2, threads=2)
    ingest.warm_up()
    yield ingest, settings
    ingest.close()


def instances(shared_data: Path, count: int) -> list[bytes]:
    template = pydicom.dcmread(shared_data / "pydicom-test-files/CT_small.dcm")
    study, series = generate_uid(), generate_uid()
    out = []
    for _ in range(count):
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def spooled(settings: Settings, data: bytes, tmp_path: Path) -> StagedBlob:
    source = tmp_path / f"{generate_uid()}.dcm"
    source.write_bytes(data)
    return stage_file(source, settings.staging_dir, 0)  # a spool file the worker renames into the tier


def test_blocking_and_event_loop_callers_at_once(pool: tuple[ProcessIngest, Settings], shared_data: Path,
                                                 tmp_path: Path) -> None:
    ingest, settings = pool
    parts = instances(shared_data, 24)

    async def on_the_loop(chunk: list[bytes]) -> list[str]:
        results = await asyncio.gather(*(ingest.store_async(spooled(settings, p, tmp_path)) for p in chunk))
        return [r.outcome for r in results]

    with ThreadPoolExecutor(4) as threads:
        blocking = list(threads.map(lambda p: ingest.store(spooled(settings, p, tmp_path)).outcome, parts[:12]))
    assert blocking == ["stored"] * 12
    # Two event loops, one after the other (as tests with several clients do): each reads its own answers.
    assert asyncio.run(on_the_loop(parts[12:18])) == ["stored"] * 6
    assert asyncio.run(on_the_loop(parts[18:])) == ["stored"] * 6
    # Again: identical bytes are duplicates, through either path.
    assert ingest.store(spooled(settings, parts[0], tmp_path)).outcome == "duplicate"
    assert asyncio.run(on_the_loop(parts[12:13])) == ["duplicate"]
    assert not list(settings.staging_dir.glob("*.part")), "no spool file is left behind"


def test_a_killed_worker_fails_its_parts_alone_and_is_replaced(pool: tuple[ProcessIngest, Settings],
                                                               shared_data: Path, tmp_path: Path) -> None:
    ingest, settings = pool
    parts = instances(shared_data, 30)
    victim = ingest._workers[0]
    results: list[str] = []

    def store_all() -> None:
        for data in parts[:20]:
            results.append(ingest.store(spooled(settings, data, tmp_path)).message or "stored")

    async def on_the_loop() -> list[str]:
        answers = await asyncio.gather(*(ingest.store_async(spooled(settings, p, tmp_path)) for p in parts[20:]))
        return [a.message or "stored" for a in answers]

    storing = threading.Thread(target=store_all)
    storing.start()
    time.sleep(0.05)
    os.kill(victim.process.pid, signal.SIGKILL)
    storing.join(60)
    assert not storing.is_alive()
    assert all(r in ("stored", "processing failure: the ingest worker stopped") for r in results), results
    deadline = time.monotonic() + 60
    while victim in ingest._workers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert victim not in ingest._workers, "a new worker took its place"
    ingest.warm_up()
    assert asyncio.run(on_the_loop()) == ["stored"] * 10
