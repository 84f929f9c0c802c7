"""Packing a series into a container: retrieval byte for byte as from loose files, unpack, damage, CLI."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.backends.container import SeriesContainer
from dicomweb.services.containers import InstanceIntegrityError
from dicomweb.services.packing import PackingService
from dicomweb.settings import load_settings
from tests.conftest import DATA, data_index, data_path

# A native 16-bit MR series, a multi-encoding OT series (JPEG, JPEG 2000, RLE, big endian, deflated...)
# and a multi-frame ultrasound series: every container mode, in a few seconds.
SERIES = {e["series_uid"] for e in data_index() if e["valid"] and e["modality"] in ("OT", "US", "MR")
          and e["rows"] in (100, 16, 480)}
pytestmark = pytest.mark.skipif(not DATA.exists(), reason="shared test data not present")


def _originals() -> dict[str, dict[str, Any]]:
    """The first valid file of each SOP Instance UID in the chosen series (later ones would conflict)."""
    chosen: dict[str, dict[str, Any]] = {}
    for entry in data_index():
        if entry["valid"] and entry["series_uid"] in SERIES and entry["sop_instance_uid"] not in chosen:
            chosen[entry["sop_instance_uid"]] = entry
    return chosen


ORIGINALS = _originals()


@pytest.fixture
def archive(tmp_path: Path, database_url: str) -> Iterator[Archive]:
    opened = Archive.open(load_settings(data_dir=tmp_path / "data", database_url=database_url), ingest_processes=0)
    for entry in ORIGINALS.values():
        assert opened.ingest.store(opened.stage_file(data_path(entry))).outcome == "stored"
    yield opened
    opened.close()


def _service(archive: Archive) -> PackingService:
    return PackingService(archive.engine, archive.tiers, archive.staging_dir)


def _instance_url(e: dict[str, Any]) -> str:
    return f"/dicom-web/studies/{e['study_uid']}/series/{e['series_uid']}/instances/{e['sop_instance_uid']}"


def _tier_files(archive: Archive) -> list[Path]:
    root = archive.settings.data_dir
    return [p for p in root.rglob("*") if p.is_file() and ".staging" not in p.parts and p.suffix in (".dcm", ".dcms")]


def test_packed_series_are_served_byte_for_byte(archive: Archive) -> None:
    assert len(ORIGINALS) >= 15 and len(SERIES) >= 3
    client = TestClient(create_app(archive.settings, archive))
    metadata_before = {
        uid: client.get(_instance_url(e) + "/metadata").content for uid, e in ORIGINALS.items()}
    frames_before = {
        uid: client.get(_instance_url(e) + "/frames/1", headers={"Accept": "multipart/related; type=\"application/"
                                                                 "octet-stream\"; transfer-syntax=*"}).status_code
        for uid, e in ORIGINALS.items()}

    service = _service(archive)
    for series in SERIES:
        outcome = service.pack(series, codec="auto")
        assert outcome.status == "packed" and outcome.bytes_out < outcome.bytes_in
    # Only the containers are left in the tier; every loose file went after its check.
    files = _tier_files(archive)
    assert {p.suffix for p in files} == {".dcms"} and len(files) == len(SERIES)
    assert service.pack(next(iter(SERIES))).status == "unchanged"

    frames_checked = 0
    for uid, entry in ORIGINALS.items():
        original = data_path(entry).read_bytes()
        (inst,) = archive.retrieve.instances(entry["study_uid"], entry["series_uid"], uid)
        assert inst.container_key is not None
        assert archive.retrieve.read_range(inst, 0, inst.size) == original
        assert b"".join(archive.retrieve.iter_bytes(inst)) == original
        if inst.frame_ranges:  # native or fragment-mapped pixel data: frames as sliced from the original
            for n, pieces in enumerate(inst.frame_ranges, start=1):
                assert archive.retrieve.read_frame(inst, n) == b"".join(original[o:o + k] for o, k in pieces)
        response = client.get(_instance_url(entry), headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert response.status_code == 200 and response.content == original
        assert client.get(_instance_url(entry) + "/metadata").content == metadata_before[uid]
        # WADO frames reads rows through its own query (no container columns): served via the fallback.
        frames = client.get(_instance_url(entry) + "/frames/1", headers={
            "Accept": "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*"})
        assert frames.status_code == frames_before[uid]
        if frames.status_code == 200 and inst.transfer_syntax_uid == "1.2.840.10008.1.2.1" and inst.frame_ranges:
            assert archive.retrieve.read_frame(inst, 1) in frames.content
            frames_checked += 1

    assert frames_checked >= 5
    # A whole-series GET (multipart) carries every original.
    some = next(iter(ORIGINALS.values()))
    body = client.get(f"/dicom-web/studies/{some['study_uid']}/series/{some['series_uid']}").content
    for entry in ORIGINALS.values():
        if entry["series_uid"] == some["series_uid"]:
            assert data_path(entry).read_bytes() in body

    # The sweeper keeps containers (the index names them), even with no grace period.
    archive.sweep(0)
    assert len(_tier_files(archive)) == len(SERIES)
    assert service.verify().ok


def test_unpack_restores_the_loose_files(archive: Archive) -> None:
    service = _service(archive)
    for series in SERIES:
        service.pack(series, codec="jpegls")
    for series in SERIES:
        outcome = service.unpack(series)
        assert outcome.status == "unpacked"
    assert service.packed_series() == []
    files = _tier_files(archive)
    assert {p.suffix for p in files} == {".dcm"}
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    assert digests == {hashlib.sha256(data_path(e).read_bytes()).hexdigest() for e in ORIGINALS.values()}
    for uid, entry in ORIGINALS.items():
        (inst,) = archive.retrieve.instances(entry["study_uid"], entry["series_uid"], uid)
        assert inst.container_key is None
        assert archive.retrieve.read_range(inst, 0, inst.size) == data_path(entry).read_bytes()
    assert service.unpack(next(iter(SERIES))).status == "unchanged"


def _native_single_frame(archive: Archive) -> tuple[dict[str, Any], Any]:
    for uid, entry in ORIGINALS.items():
        (inst,) = archive.retrieve.instances(entry["study_uid"], entry["series_uid"], uid)
        if inst.frame_ranges and not inst.encapsulated and inst.number_of_frames == 1:
            return entry, inst
    raise AssertionError("no native single-frame instance in the test series")


def _flip_in_frame(archive: Archive, inst: Any) -> None:
    """Flip one byte inside the stored block of frame 1 of ``inst``."""
    (container_file,) = [p for p in archive.settings.data_dir.rglob("*.dcms") if inst.series_instance_uid in str(p)]
    with open(container_file, "rb") as fp:
        c = SeriesContainer.open(fp)
        block = c._get(inst.sop_instance_uid).frames[0].block
        where = c._base + block.offset + block.length // 2
    data = bytearray(container_file.read_bytes())
    data[where] ^= 0x40
    container_file.write_bytes(bytes(data))


def test_damaged_container_is_detected_and_named(archive: Archive) -> None:
    entry, inst = _native_single_frame(archive)
    service = _service(archive)
    service.pack(entry["series_uid"], codec="jpegls")
    _flip_in_frame(archive, inst)

    report = service.verify()
    assert not report.ok
    assert {c.sop_instance_uid for c in report.corrupt} == {entry["sop_instance_uid"]}

    (packed,) = archive.retrieve.instances(entry["study_uid"], entry["series_uid"], entry["sop_instance_uid"])
    with pytest.raises(InstanceIntegrityError, match=entry["sop_instance_uid"]):
        archive.retrieve.read_range(packed, 0, packed.size)
    with pytest.raises(InstanceIntegrityError, match=entry["sop_instance_uid"]):
        archive.retrieve.read_frame(packed, 1)
    client = TestClient(create_app(archive.settings, archive))
    response = client.get(_instance_url(entry) + "/frames/1", headers={"Accept": "application/octet-stream"})
    assert response.status_code == 503
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["sop_instance_uid"] == entry["sop_instance_uid"] and entry["sop_instance_uid"] in problem["detail"]
    # The other instances of the series are intact and still served exactly.
    for uid, other in ORIGINALS.items():
        if other["series_uid"] == entry["series_uid"] and uid != entry["sop_instance_uid"]:
            (o,) = archive.retrieve.instances(other["study_uid"], other["series_uid"], uid)
            assert archive.retrieve.read_range(o, 0, o.size) == data_path(other).read_bytes()
    # Unpacking refuses to restore damaged bytes and leaves the series packed.
    with pytest.raises(InstanceIntegrityError):
        service.unpack(entry["series_uid"])
    assert entry["series_uid"] in service.packed_series()


def test_deleting_a_packed_series_removes_its_container(archive: Archive) -> None:
    service = _service(archive)
    series = next(iter(SERIES))
    service.pack(series, codec="jpegls")
    study = next(e["study_uid"] for e in ORIGINALS.values() if e["series_uid"] == series)
    client = TestClient(create_app(archive.settings, archive))
    assert client.delete(f"/dicom-web/studies/{study}/series/{series}").status_code in (200, 204)
    assert service.packed_series() == []
    assert not [p for p in _tier_files(archive) if series in str(p)]


def test_an_instance_replaced_after_packing_is_served_in_its_new_version(tmp_path: Path) -> None:
    # Two encodings of one SOP Instance UID: the second replaces the first (on_conflict = replace).
    by_uid: dict[str, list[dict[str, Any]]] = {}
    for e in data_index():
        if e["valid"] and e["series_uid"] in SERIES:
            by_uid.setdefault(e["sop_instance_uid"], []).append(e)
    first, second = next(v for v in by_uid.values() if len(v) >= 2)[:2]
    settings = load_settings(data_dir=tmp_path / "d", on_conflict="replace")
    archive = Archive.open(settings, ingest_processes=0)
    try:
        assert archive.ingest.store(archive.stage_file(data_path(first))).outcome == "stored"
        _service(archive).pack(first["series_uid"], codec="jpegls")
        assert archive.ingest.store(archive.stage_file(data_path(second))).outcome == "replaced"
        (inst,) = archive.retrieve.instances(first["study_uid"], first["series_uid"], first["sop_instance_uid"])
        assert archive.retrieve.read_range(inst, 0, inst.size) == data_path(second).read_bytes()
        # Packing again takes the new version and drops the old container.
        assert _service(archive).pack(first["series_uid"], codec="jpegls").status == "packed"
        assert len(list((tmp_path / "d").rglob("*.dcms"))) == 1
        (inst,) = archive.retrieve.instances(first["study_uid"], first["series_uid"], first["sop_instance_uid"])
        assert inst.container_key is not None
        assert archive.retrieve.read_range(inst, 0, inst.size) == data_path(second).read_bytes()
    finally:
        archive.close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("dicomweb")
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=300, env=env)


def test_cli_pack_verify_unpack(tmp_path: Path) -> None:
    data = tmp_path / "cli"
    mr = [e for e in ORIGINALS.values() if e["modality"] == "MR"]
    series = mr[0]["series_uid"]
    files = [str(data_path(e)) for e in mr if e["series_uid"] == series]
    assert _cli("import", "--data", str(data), *files).returncode == 0

    packed = _cli("archive", "pack", "--data", str(data), "--older-than", "0", "--codec", "jpegls")
    assert packed.returncode == 0, packed.stderr
    assert "packed 1 series" in packed.stderr and "ratio" in packed.stderr
    checked = _cli("archive", "verify", "--data", str(data))
    assert checked.returncode == 0 and f"{len(files)} instances" in checked.stderr and "all intact" in checked.stderr

    (container,) = data.rglob("*.dcms")
    with open(container, "rb") as fp:
        c = SeriesContainer.open(fp)
        victim = c.instance_uids()[0]
        block = c._get(victim).frames[0].block
        where = c._base + block.offset + block.length // 2
    raw = bytearray(container.read_bytes())
    raw[where] ^= 0x01
    container.write_bytes(bytes(raw))
    damaged = _cli("archive", "verify", "--data", str(data))
    assert damaged.returncode == 1 and victim in damaged.stderr and "corrupt" in damaged.stderr
    assert _cli("archive", "unpack", "--data", str(data), "--series", series).returncode == 1
    raw[where] ^= 0x01
    container.write_bytes(bytes(raw))
    unpacked = _cli("archive", "unpack", "--data", str(data), "--series", series)
    assert unpacked.returncode == 0 and f"unpacked {len(files)} instances" in unpacked.stderr
    assert not list(data.rglob("*.dcms"))
    assert _cli("archive", "pack", "--data", str(data)).returncode == 2
