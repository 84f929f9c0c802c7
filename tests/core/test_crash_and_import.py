"""Crash safety (SIGKILL in the middle of a large STOW-RS), the sweeper, and ``dicomweb import``."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pydicom
from pydicom.uid import generate_uid

from tests.conftest import start_server
from tests.core.test_stow_errors import entry_of
from tests.core.test_stow_roundtrip import retrieve_raw, store
from tests.multipart_util import stow_body


def synthetic_series(shared_data: Path, count: int, size: int = 512) -> list[bytes]:
    """``count`` 512x512 16-bit slices of one new study, made from CT_small with fresh UIDs."""
    template = pydicom.dcmread(shared_data / "pydicom-test-files/CT_small.dcm")
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(7)
    out = []
    for i in range(count):
        ds = template.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.Rows = ds.Columns = size
        ds.PixelData = rng.integers(0, 4000, (size, size), dtype=np.uint16).tobytes()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def test_sigkill_during_a_large_stow_loses_nothing_acknowledged(tmp_path: Path, shared_data: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    acknowledged = [(shared_data / name).read_bytes() for name in
                    ("pydicom-test-files/CT_small.dcm", "pydicom-test-files/MR_small.dcm",
                     "pydicom-data/emri_small.dcm")]
    assert store(server, acknowledged).status_code == 200

    series = synthetic_series(shared_data, 40)
    content_type, body = stow_body(list(series))
    sent_enough = threading.Event()

    def slow_body() -> Iterator[bytes]:
        step = 256 * 1024
        for offset in range(0, len(body), step):
            if offset > len(body) // 2:
                sent_enough.set()
            yield body[offset: offset + step]
            time.sleep(0.01)

    def client() -> None:
        try:
            httpx.post(f"{server.url}/studies", content=slow_body(), headers={"Content-Type": content_type},
                       timeout=60)
        except httpx.HTTPError:
            pass  # the server died under it: expected

    thread = threading.Thread(target=client)
    thread.start()
    assert sent_enough.wait(60)
    server.stop(kill=True)
    thread.join(60)

    restarted = start_server(data_dir, port=server.port)
    try:
        for raw in acknowledged:
            ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
            entry = {"study_uid": ds.StudyInstanceUID, "series_uid": ds.SeriesInstanceUID,
                     "sop_instance_uid": ds.SOPInstanceUID}
            assert retrieve_raw(restarted, entry) == raw
        # Whatever of the killed request is in the index is complete, byte for byte.
        by_uid = {pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID: raw for raw in series}
        study = pydicom.dcmread(io.BytesIO(series[0]), stop_before_pixels=True).StudyInstanceUID
        metadata = httpx.get(f"{restarted.url}/studies/{study}/metadata")
        indexed = [m["00080018"]["Value"][0] for m in metadata.json()] if metadata.status_code == 200 else []
        assert len(indexed) < len(series), "the kill came before the request finished"
        for uid in indexed:
            first = pydicom.dcmread(io.BytesIO(by_uid[uid]), stop_before_pixels=True)
            entry = {"study_uid": study, "series_uid": first.SeriesInstanceUID, "sop_instance_uid": uid}
            assert hashlib.sha256(retrieve_raw(restarted, entry)).digest() == hashlib.sha256(by_uid[uid]).digest()
        # Storing the whole series again completes it.
        again = store(restarted, list(series))
        assert again.status_code == 200
        assert len(httpx.get(f"{restarted.url}/studies/{study}/metadata").json()) == len(series)
    finally:
        restarted.stop()

    # The sweeper leaves exactly one stored file per indexed instance.
    result = subprocess.run([sys.executable, "-m", "dicomweb.cli", "sweep", "--data", str(data_dir), "--grace", "0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    stored_files = [p for p in (data_dir / "storage").rglob("*") if p.is_file()]
    assert len(stored_files) == len(acknowledged) + len(series)
    assert not any(".tmp-" in p.name for p in stored_files)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dicomweb.cli", *args], capture_output=True, text=True, timeout=120)


def test_import_folders_zip_and_dicomdir(tmp_path: Path, shared_data: Path) -> None:
    data_dir = tmp_path / "archive"
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm"):
        (folder / name).write_bytes((shared_data / "pydicom-test-files" / name).read_bytes())
    (folder / "notes.txt").write_text("not an image")
    with zipfile.ZipFile(tmp_path / "bundle.zip", "w") as zf:
        zf.write(shared_data / "pydicom-test-files/JPEG2000.dcm", "a/JPEG2000.dcm")
        zf.write(shared_data / "pydicom-test-files/CT_small.dcm", "b/CT_small.dcm")  # a duplicate

    result = run_cli("import", str(folder), str(tmp_path / "bundle.zip"), "--data", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert "stored 4, duplicates 1, replaced 0, skipped 1 (not DICOM), failed 0" in result.stderr

    dicomdir = shared_data / "pydicom-test-files/dicomdirtests/DICOMDIR"
    listed = [r for r in pydicom.dcmread(dicomdir).DirectoryRecordSequence if "ReferencedFileID" in r]
    result = run_cli("import", str(dicomdir), "--data", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert f"stored {len(listed)}," in result.stderr

    truncated = shared_data / "pydicom-test-files/MR_truncated.dcm"
    result = run_cli("import", str(truncated), str(shared_data / "pydicom-test-files/no_meta.dcm"),
                     "--data", str(data_dir))
    assert result.returncode == 1
    assert "failed 2" in result.stderr and "truncated" in result.stderr and "no_meta.dcm" in result.stderr

    server = start_server(data_dir)
    try:
        assert retrieve_raw(server, entry_of(shared_data / "pydicom-test-files/JPEG2000.dcm")) == (
            shared_data / "pydicom-test-files/JPEG2000.dcm").read_bytes()
    finally:
        server.stop()
