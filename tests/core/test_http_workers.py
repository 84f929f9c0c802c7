"""`dicomweb serve --workers N`: several server processes on one socket answer as one archive."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom

from tests.conftest import start_server
from tests.multipart_util import split_multipart, stow_body

CT = "pydicom-test-files/CT_small.dcm"
REQUESTS = 24  # fresh connections, so the kernel hands them to either process


def _worker_pids(parent: int) -> set[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children
            if "resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")}


def test_two_processes_share_one_archive(tmp_path: Path, shared_data: Path) -> None:
    original = (shared_data / CT).read_bytes()
    ds = pydicom.dcmread(shared_data / CT)
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    server = start_server(tmp_path / "data", {"DICOMWEB_HTTP_WORKERS": "2"})
    try:
        assert len(_worker_pids(server.process.pid)) == 2
        content_type, body = stow_body([original])
        with httpx.Client() as client:
            stored = client.post(f"{server.url}/studies", content=body, headers={"Content-Type": content_type})
        assert stored.status_code == 200

        instance = f"{server.url}/studies/{study}/series/{series}/instances/{sop}"
        pixel = ds.PixelData
        for _ in range(REQUESTS):  # every process remembers where the instance is
            with httpx.Client() as client:
                frame = client.get(f"{instance}/frames/1", headers={"Accept": "application/octet-stream"})
                assert frame.status_code == 200
                assert frame.content == pixel
                whole = client.get(instance, headers={"Accept": 'multipart/related; type="application/dicom"'})
                assert [data for _, data in split_multipart(whole.headers["content-type"], whole.content)] == [
                    original]

        with httpx.Client() as client:
            assert client.delete(f"{server.url}/studies/{study}").status_code in (200, 204)
        for _ in range(REQUESTS):  # deleted through one process: gone in all of them, at once
            with httpx.Client() as client:
                assert client.get(f"{instance}/frames/1",
                                  headers={"Accept": "application/octet-stream"}).status_code == 404
                assert client.get(f"{server.url}/studies", params={"StudyInstanceUID": study}).status_code == 204
    finally:
        server.stop()
    assert server.process.returncode == 0
