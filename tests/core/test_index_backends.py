"""The core services on SQLite and on PostgreSQL: the same answers from both indexes."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.settings import load_settings
from tests.multipart_util import split_multipart

FILES = ["pydicom-test-files/CT_small.dcm", "pydicom-test-files/MR_small.dcm", "pydicom-test-files/MR_small_RLE.dcm",
         "pydicom-data/emri_small.dcm", "pydicom-charset-files/chrX1.dcm"]


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Archive:
    opened = Archive.open(load_settings(data_dir=tmp_path / "data", database_url=database_url))
    yield opened  # type: ignore[misc]
    opened.close()


def test_ingest_retrieve_search_delete(archive: Archive, shared_data: Path) -> None:
    outcomes = [archive.ingest.store(archive.stage_file(shared_data / name)).outcome for name in FILES]
    assert outcomes == ["stored", "stored", "failed", "stored", "stored"]  # RLE copy conflicts with MR_small
    again = archive.ingest.store(archive.stage_file(shared_data / FILES[0]))
    assert again.outcome == "duplicate"

    app = create_app(archive.settings, archive)
    with TestClient(app) as client:
        studies = client.get("/dicom-web/studies").json()
        assert len(studies) == 4
        study = next(s for s in studies if s["00100020"]["Value"] == ["1CT1"])
        uid = study["0020000D"]["Value"][0]
        assert study["00201208"]["Value"] == [1] and study["00201206"]["Value"] == [1]
        response = client.get(f"/dicom-web/studies/{uid}")
        ((_, data),) = split_multipart(response.headers["content-type"], response.content)
        assert data == (shared_data / FILES[0]).read_bytes()
        metadata = client.get(f"/dicom-web/studies/{uid}/metadata").json()
        assert metadata[0]["7FE00010"]["BulkDataURI"].startswith("http://testserver/dicom-web/studies/")
        assert client.delete(f"/dicom-web/studies/{uid}").status_code == 204
        assert client.get(f"/dicom-web/studies/{uid}").status_code == 404
        assert len(client.get("/dicom-web/studies").json()) == 3
