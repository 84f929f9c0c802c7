"""QIDO-RS over HTTP in-process: exact DICOM JSON, XML, 204, Warning headers, and 400s that name the parameter."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.services.staging import StagedBlob
from dicomweb.settings import load_settings

STUDY, SERIES = "1.2.826.0.1.3680043.9.7433.10.1", "1.2.826.0.1.3680043.9.7433.10.2"
BASE = "http://testserver/dicom-web"


def _instance(number: int, modality: str = "MR") -> bytes:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.4", f"1.2.826.0.1.3680043.9.7433.10.3.{number}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY, SERIES if number < 3 else SERIES + ".9"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Müller^Jürgen", "PID-7", "19700101", "M"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240229", "101500", "ACC7", "S7"
    ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "Who^Dr", modality, 1, number
    ds.Rows, ds.Columns, ds.BitsAllocated = 2, 2, 16
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url, fsync=False, qido_max_results=2)
    archive = Archive.open(settings, ingest_processes=0)
    for number, modality in ((1, "MR"), (2, "MR"), (3, "SR")):
        assert archive.ingest.store(StagedBlob.from_bytes(_instance(number, modality))).outcome == "stored"
    with TestClient(create_app(settings, archive)) as test_client:
        yield test_client
    archive.close()


def test_study_answer_is_exact(client: TestClient) -> None:
    response = client.get("/dicom-web/studies", params={"PatientName": "müller*", "StudyDate": "20240101-20240301"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom+json"
    assert response.json() == [{
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
        "00080020": {"vr": "DA", "Value": ["20240229"]},
        "00080030": {"vr": "TM", "Value": ["101500"]},
        "00080050": {"vr": "SH", "Value": ["ACC7"]},
        "00080061": {"vr": "CS", "Value": ["MR", "SR"]},
        "00080090": {"vr": "PN", "Value": [{"Alphabetic": "Who^Dr"}]},
        "00081190": {"vr": "UR", "Value": [f"{BASE}/studies/{STUDY}"]},
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]},
        "00100020": {"vr": "LO", "Value": ["PID-7"]},
        "00100030": {"vr": "DA", "Value": ["19700101"]},
        "00100040": {"vr": "CS", "Value": ["M"]},
        "0020000D": {"vr": "UI", "Value": [STUDY]},
        "00200010": {"vr": "SH", "Value": ["S7"]},
        "00201206": {"vr": "IS", "Value": [2]},
        "00201208": {"vr": "IS", "Value": [3]},
    }]


@pytest.mark.parametrize("query", [
    {"StudyDate": "20250101-"}, {"StudyTime": "25-"}, {"PatientName": "NOBODY"}, {"ModalitiesInStudy": "CT"},
    {"StudyInstanceUID": "1.2.3\\4.5"},
])
def test_no_match_is_204(client: TestClient, query: dict[str, str]) -> None:
    response = client.get("/dicom-web/studies", params=query)
    assert (response.status_code, response.content) == (204, b"")


def test_instances_limit_offset_and_server_maximum(client: TestClient) -> None:
    first = client.get(f"/dicom-web/studies/{STUDY}/instances")
    assert first.status_code == 200
    assert [i["00200013"]["Value"][0] for i in first.json()] == [1, 2]  # cut at qido_max_results=2
    assert "exceeded the maximum supported by the server" in first.headers["warning"]
    rest = client.get(f"/dicom-web/studies/{STUDY}/instances", params={"offset": "2", "limit": "2"})
    assert [i["00200013"]["Value"][0] for i in rest.json()] == [3]
    assert "warning" not in rest.headers
    one = client.get(f"/dicom-web/studies/{STUDY}/series/{SERIES}/instances", params={"InstanceNumber": "2"})
    assert [i["00080018"]["Value"][0] for i in one.json()] == ["1.2.826.0.1.3680043.9.7433.10.3.2"]
    assert one.json()[0]["00081190"]["Value"] == [
        f"{BASE}/studies/{STUDY}/series/{SERIES}/instances/1.2.826.0.1.3680043.9.7433.10.3.2"]


def test_relational_series_search_and_ignored_key_warning(client: TestClient) -> None:
    response = client.get("/dicom-web/series", params={"PatientName": "MULLER*", "Modality": "SR"})
    assert response.status_code == 204  # Müller is not Muller
    response = client.get("/dicom-web/series", params={"PatientID": "PID-7", "Modality": "SR",
                                                       "includefield": "StudyDescription,00080080"})
    assert [s["0020000E"]["Value"][0] for s in response.json()] == [SERIES + ".9"]
    assert response.json()[0]["00100020"] == {"vr": "LO", "Value": ["PID-7"]}  # /series carries study attributes
    ignored = client.get("/dicom-web/studies", params={"SOPInstanceUID": "1.2.3"})
    assert ignored.status_code == 200
    assert "not supported for matching at the study level and were ignored: SOPInstanceUID" in ignored.headers[
        "warning"]


def test_multipart_xml(client: TestClient) -> None:
    response = client.get("/dicom-web/studies/" + STUDY + "/series",
                          headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith('multipart/related; type="application/dicom+xml"; boundary=')
    boundary = content_type.rsplit("=", 1)[1]
    parts = response.content.split(f"--{boundary}".encode())
    assert len(parts) == 4 and parts[-1] == b"--\r\n"  # two series, then the closing delimiter
    assert b'<DicomAttribute tag="0020000E" vr="UI" keyword="SeriesInstanceUID"><Value number="1">' + \
        SERIES.encode() + b"</Value>" in parts[1]
    assert client.get("/dicom-web/studies", headers={"Accept": "image/png"}).status_code == 406


@pytest.mark.parametrize(("query", "words"), [
    ({"Foo": "1"}, "'Foo' is neither a DICOM keyword nor a tag"),
    ({"StudyDate": "20240101-2024"}, "StudyDate: '2024' is not a valid DA value"),
    ({"StudyDate": "20240301-20240101"}, "ends before it starts"),
    ({"limit": "ten"}, "limit='ten' is not a whole number"),
    ({"offset": "-1"}, "offset='-1' is not a whole number"),
    ({"PixelData": "x"}, "PixelData (VR OB) cannot be used for matching"),
    ({"StudyInstanceUID": "1.2.*"}, "wildcards (* and ?) cannot be used with VR UI"),
    ({"SeriesNumber": "one"}, "'one' is not a number"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching='maybe' must be true or false"),
    ({"includefield": "NoSuchKeyword"}, "'NoSuchKeyword' is neither a DICOM keyword nor a tag"),
    ({"RequestAttributesSequence": "x"}, "is a sequence"),
])
def test_bad_queries_are_400(client: TestClient, query: dict[str, str], words: str) -> None:
    response = client.get("/dicom-web/series", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_repeated_attribute_is_400(client: TestClient) -> None:
    response = client.get("/dicom-web/studies?PatientID=a&00100020=b")
    assert response.status_code == 400
    assert "given more than once" in response.json()["detail"]
