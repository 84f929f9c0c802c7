"""WADO-RS instances and metadata, the core QIDO search, and DELETE, against a live server."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.conftest import LiveServer
from tests.core.test_stow_errors import entry_of
from tests.core.test_stow_roundtrip import store
from tests.multipart_util import split_multipart

FILES = [
    "pydicom-test-files/CT_small.dcm",
    "pydicom-test-files/MR_small.dcm",
    "pydicom-test-files/JPEG2000.dcm",
    "pydicom-charset-files/chrJapMulti.dcm",
    "pydicom-data/emri_small.dcm",  # multi-frame
]


@pytest.fixture
def loaded(server: LiveServer, shared_data: Path) -> LiveServer:
    response = store(server, [(shared_data / name).read_bytes() for name in FILES])
    assert response.status_code == 200, response.text
    return server


def instance_url(server: LiveServer, entry: dict[str, str]) -> str:
    return (f"{server.url}/studies/{entry['study_uid']}/series/{entry['series_uid']}"
            f"/instances/{entry['sop_instance_uid']}")


def test_study_and_series_retrieval_streams_every_instance(loaded: LiveServer, shared_data: Path) -> None:
    entry = entry_of(shared_data / FILES[4])
    for url in (f"{loaded.url}/studies/{entry['study_uid']}",
                f"{loaded.url}/studies/{entry['study_uid']}/series/{entry['series_uid']}"):
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        assert int(response.headers["content-length"]) == len(response.content)
        ((headers, data),) = split_multipart(response.headers["content-type"], response.content)
        assert data == (shared_data / FILES[4]).read_bytes()
        assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        assert headers["content-location"] == instance_url(loaded, entry)


def test_single_part_and_transfer_syntax_negotiation(loaded: LiveServer, shared_data: Path) -> None:
    entry = entry_of(shared_data / FILES[2])  # JPEG 2000 stored
    url = instance_url(loaded, entry)
    single = httpx.get(url, headers={"Accept": "application/dicom"})
    assert single.status_code == 200 and single.content == (shared_data / FILES[2]).read_bytes()
    syntax = pydicom.dcmread(shared_data / FILES[2], stop_before_pixels=True).file_meta.TransferSyntaxUID
    accept = f'multipart/related; type="application/dicom"; transfer-syntax={syntax}'
    stored = httpx.get(url, headers={"Accept": accept})
    assert stored.status_code == 200
    other = httpx.get(url, headers={
        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.3.4.5'})
    assert other.status_code == 406 and syntax in other.json()["detail"]
    assert httpx.get(url, headers={"Accept": "multipart/related; type=application/dicom; q=x"}).status_code == 400


def test_metadata_is_the_data_set_with_bulk_data_uris(loaded: LiveServer, shared_data: Path) -> None:
    path = shared_data / FILES[0]
    entry = entry_of(path)
    response = httpx.get(instance_url(loaded, entry) + "/metadata")
    assert response.status_code == 200 and response.headers["content-type"] == "application/dicom+json"
    (ours,) = response.json()
    original = pydicom.dcmread(path)
    expected = original.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "x")
    # Data Set Trailing Padding carries no information (PS3.5 7.8) and is not part of the metadata.
    expected.pop("FFFCFFFC", None)
    assert set(ours) == set(expected)
    for tag, value in expected.items():
        if "BulkDataURI" in value:
            assert ours[tag]["BulkDataURI"] == f"{instance_url(loaded, entry)}/bulkdata/{tag}"
        else:
            assert ours[tag] == value, tag
    series = httpx.get(f"{loaded.url}/studies/{entry['study_uid']}/series/{entry['series_uid']}/metadata").json()
    study = httpx.get(f"{loaded.url}/studies/{entry['study_uid']}/metadata").json()
    assert ours in series and ours in study


def test_non_ascii_names_come_back_as_utf8(loaded: LiveServer, shared_data: Path) -> None:
    path = shared_data / FILES[3]
    entry = entry_of(path)
    (ours,) = httpx.get(instance_url(loaded, entry) + "/metadata").json()
    assert ours["00100010"]["Value"][0] == pydicom.dcmread(path).to_json_dict()["00100010"]["Value"][0]
    assert "やまだ" in json.dumps(ours, ensure_ascii=False)


def test_unknown_and_malformed_uids(loaded: LiveServer) -> None:
    for path in ("/studies/1.2.3", "/studies/1.2.3/metadata", "/studies/1.2.3/series/4.5",
                 "/studies/1.2.3/series/4.5/instances/6.7/metadata"):
        response = httpx.get(loaded.url + path)
        assert response.status_code == 404 and "is not in the archive" in response.json()["detail"]
    assert httpx.get(loaded.url + "/studies/abc").status_code == 400
    assert httpx.get(loaded.url + "/studies/1.2/series/x.y").status_code == 400
    assert httpx.put(loaded.url + "/studies/1.2").status_code == 405


def test_search_studies_by_patient_and_uid(loaded: LiveServer, shared_data: Path) -> None:
    ct = pydicom.dcmread(shared_data / FILES[0], stop_before_pixels=True)
    response = httpx.get(f"{loaded.url}/studies", params={"PatientID": ct.PatientID})
    assert response.status_code == 200
    (match,) = response.json()
    assert match["0020000D"]["Value"] == [ct.StudyInstanceUID]
    assert match["00100020"]["Value"] == [ct.PatientID]
    assert match["00201208"]["Value"] == [1] and match["00080061"]["Value"] == ["CT"]
    everything = httpx.get(f"{loaded.url}/studies").json()
    uids = {pydicom.dcmread(shared_data / f, stop_before_pixels=True).StudyInstanceUID for f in FILES}
    assert {s["0020000D"]["Value"][0] for s in everything} == uids
    two = "\\".join(sorted(uids)[:2])
    assert len(httpx.get(f"{loaded.url}/studies", params={"StudyInstanceUID": two}).json()) == 2
    paged = [httpx.get(f"{loaded.url}/studies", params={"limit": 2, "offset": o}) for o in (0, 2, 4)]
    seen = [s["0020000D"]["Value"][0] for page in paged if page.status_code == 200 for s in page.json()]
    assert sorted(seen) == sorted(uids)
    assert httpx.get(f"{loaded.url}/studies", params={"PatientID": "nobody"}).status_code == 204
    bad = httpx.get(f"{loaded.url}/studies", params={"limit": "ten"})
    assert bad.status_code == 400 and "limit" in bad.json()["detail"]


def test_delete_instance_series_study(loaded: LiveServer, shared_data: Path) -> None:
    storage = loaded.data_dir / "storage"
    before = len(list(storage.rglob("*.dcm")))
    mr = entry_of(shared_data / FILES[1])
    assert httpx.delete(instance_url(loaded, mr)).status_code == 204
    assert httpx.get(instance_url(loaded, mr)).status_code == 404
    assert httpx.delete(instance_url(loaded, mr)).status_code == 404
    assert len(list(storage.rglob("*.dcm"))) == before - 1
    # The emptied series and study are gone from search too.
    assert httpx.get(f"{loaded.url}/studies", params={"StudyInstanceUID": mr["study_uid"]}).status_code == 204
    ct = entry_of(shared_data / FILES[0])
    assert httpx.delete(f"{loaded.url}/studies/{ct['study_uid']}/series/{ct['series_uid']}").status_code == 204
    assert httpx.delete(f"{loaded.url}/studies/{ct['study_uid']}").status_code == 404
    jp = entry_of(shared_data / FILES[3])
    assert httpx.delete(f"{loaded.url}/studies/{jp['study_uid']}").status_code == 204
    assert len(list(storage.rglob("*.dcm"))) == before - 3
