"""Bad input gets a named refusal, per instance or per request, and what was stored before stays intact."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.conftest import LiveServer, start_server
from tests.core.test_stow_roundtrip import retrieve_raw, store
from tests.multipart_util import stow_body

CT = "pydicom-test-files/CT_small.dcm"
MR = "pydicom-test-files/MR_small.dcm"
MR_BIG_ENDIAN = "pydicom-test-files/MR_small_bigendian.dcm"  # same SOP Instance UID as MR, other bytes


def entry_of(path: Path) -> dict[str, str]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return {"study_uid": ds.StudyInstanceUID, "series_uid": ds.SeriesInstanceUID, "sop_instance_uid": ds.SOPInstanceUID}


def failures(response: httpx.Response) -> list[tuple[int, str]]:
    items = response.json()["00081198"].get("Value", [])
    return [(i["00081197"]["Value"][0], i["0040A160"]["Value"][0]) for i in items]


def test_broken_parts_fail_alone_and_valid_ones_are_stored(server: LiveServer, shared_data: Path) -> None:
    ct = (shared_data / CT).read_bytes()
    earlier = store(server, [(shared_data / MR).read_bytes()])
    assert earlier.status_code == 200

    no_sop_uid = pydicom.dcmread(shared_data / CT)
    del no_sop_uid.SOPInstanceUID
    buffer = __import__("io").BytesIO()
    no_sop_uid.save_as(buffer, enforce_file_format=False)
    response = store(server, [
        ct,
        ct[: len(ct) - 5000],  # truncated inside the pixel data
        b"this is not DICOM at all",
        (shared_data / "pydicom-test-files/no_meta.dcm").read_bytes(),  # no preamble, no file meta
        buffer.getvalue(),
        ("text/plain", b"hello"),
    ])
    assert response.status_code == 202
    reasons = failures(response)
    assert [code for code, _ in reasons] == [0xC000] * 5
    words = " | ".join(text for _, text in reasons)
    for expected in ("truncated", "not a DICOM Part 10 file", "SOPInstanceUID", "media type 'text/plain'"):
        assert expected in words
    referenced = response.json()["00081199"]["Value"]
    assert len(referenced) == 1
    assert retrieve_raw(server, entry_of(shared_data / CT)) == ct
    assert retrieve_raw(server, entry_of(shared_data / MR)) == (shared_data / MR).read_bytes()


@pytest.mark.parametrize(
    ("headers", "body", "status", "words"),
    [
        ({}, b"x", 415, "no Content-Type"),
        ({"Content-Type": "application/dicom"}, b"x", 415, "multipart/related"),
        ({"Content-Type": 'multipart/related; type="text/plain"; boundary=x'}, b"x", 415, "text/plain"),
        ({"Content-Type": 'multipart/related; type="application/dicom"'}, b"x", 400, "boundary"),
        ({"Content-Type": 'multipart/related; type="application/dicom"; boundary=nothere'},
         b"--other\r\n\r\nxx\r\n--other--", 400, "no part with the boundary"),
        ({"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'}, b"", 400, "no part"),
        ({"Content-Type": 'multipart/related; type="application/dicom"; boundary=b', "Accept": "image/png"},
         b"--b--", 406, "available"),
    ],
)
def test_malformed_requests_get_a_problem_document(
    server: LiveServer, headers: dict[str, str], body: bytes, status: int, words: str
) -> None:
    response = httpx.post(f"{server.url}/studies", content=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status and words in problem["detail"]


def test_a_truncated_body_keeps_completed_parts_and_says_so(server: LiveServer, shared_data: Path) -> None:
    ct = (shared_data / CT).read_bytes()
    mr = (shared_data / MR).read_bytes()
    content_type, body = stow_body([ct, mr])
    cut = body[: body.index(mr[:200]) + 1000]  # ends inside the second part
    response = httpx.post(f"{server.url}/studies", content=cut, headers={"Content-Type": content_type})
    assert response.status_code == 400
    problem = response.json()
    assert "ended inside part 2" in problem["detail"]
    assert problem["storedInstances"] == [entry_of(shared_data / CT)["sop_instance_uid"]]
    assert retrieve_raw(server, entry_of(shared_data / CT)) == ct
    missing = entry_of(shared_data / MR)
    url = (f"{server.url}/studies/{missing['study_uid']}/series/{missing['series_uid']}"
           f"/instances/{missing['sop_instance_uid']}")
    assert httpx.get(url).status_code == 404


def test_study_in_the_url_must_match(server: LiveServer, shared_data: Path) -> None:
    ct = (shared_data / CT).read_bytes()
    response = store(server, [ct], study="1.2.3.4")
    assert response.status_code == 409
    ((code, text),) = failures(response)
    assert code == 0xC409 and "not to 1.2.3.4" in text
    right = entry_of(shared_data / CT)["study_uid"]
    assert store(server, [ct], study=right).status_code == 200
    assert httpx.post(f"{server.url}/studies/not-a-uid", content=b"").status_code == 400


def test_same_bytes_again_is_success_other_bytes_are_refused(server: LiveServer, shared_data: Path) -> None:
    mr = (shared_data / MR).read_bytes()
    assert store(server, [mr]).status_code == 200
    again = store(server, [mr])
    assert again.status_code == 200 and len(again.json()["00081199"]["Value"]) == 1
    other = store(server, [(shared_data / MR_BIG_ENDIAN).read_bytes()])
    assert other.status_code == 409
    ((code, text),) = failures(other)
    assert code == 0x0111 and "on_conflict = reject" in text
    assert retrieve_raw(server, entry_of(shared_data / MR)) == mr


def test_replace_rule_serves_the_new_bytes(tmp_path: Path, shared_data: Path) -> None:
    live = start_server(tmp_path / "data", env={"DICOMWEB_ON_CONFLICT": "replace"})
    try:
        assert store(live, [(shared_data / MR).read_bytes()]).status_code == 200
        big_endian = (shared_data / MR_BIG_ENDIAN).read_bytes()
        assert store(live, [big_endian]).status_code == 200
        assert retrieve_raw(live, entry_of(shared_data / MR)) == big_endian
        stored_files = [p for p in (tmp_path / "data" / "storage").rglob("*.dcm")]
        assert len(stored_files) == 1, "the replaced blob is removed"
    finally:
        live.stop()


def test_xml_response_on_request(server: LiveServer, shared_data: Path) -> None:
    content_type, body = stow_body([(shared_data / CT).read_bytes(), b"junk"])
    response = httpx.post(f"{server.url}/studies", content=body,
                          headers={"Content-Type": content_type, "Accept": "application/dicom+xml"})
    assert response.status_code == 202
    assert response.headers["content-type"].startswith("application/dicom+xml")
    root = ET.fromstring(response.content)
    ns = {"d": "http://dicom.nema.org/PS3.19/models/NativeDICOM"}
    failed = root.find("d:DicomAttribute[@keyword='FailedSOPSequence']", ns)
    referenced = root.find("d:DicomAttribute[@keyword='ReferencedSOPSequence']", ns)
    assert failed is not None and referenced is not None
    assert failed.find("d:Item/d:DicomAttribute[@tag='00081197']/d:Value", ns).text == str(0xC000)  # type: ignore[union-attr]
    assert len(referenced.findall("d:Item", ns)) == 1


def test_store_dicom_json_with_bulk_data(server: LiveServer, shared_data: Path) -> None:
    original = pydicom.dcmread(shared_data / CT)
    bulk: dict[str, bytes] = {}

    def handler(element: pydicom.DataElement) -> str:
        uri = f"bulk/{element.tag:08X}"
        bulk[uri] = bytes(element.value)
        return uri

    metadata = original.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=handler)
    assert "bulk/7FE00010" in bulk and len(bulk) > 1
    boundary = "json-stow-test"
    parts = [f"--{boundary}\r\nContent-Type: application/dicom+json\r\n\r\n".encode() + json.dumps([metadata]).encode()]
    for uri, value in bulk.items():
        parts.append(f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Location: {uri}\r\n\r\n"
                     .encode() + value)
    body = b"".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom+json"; boundary={boundary}'
    response = httpx.post(f"{server.url}/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text
    back = pydicom.dcmread(__import__("io").BytesIO(retrieve_raw(server, entry_of(shared_data / CT))))
    assert back.PixelData == original.PixelData
    assert back.PatientName == original.PatientName and back.SOPInstanceUID == original.SOPInstanceUID
    assert back[0x00431029].value == original[0x00431029].value

    missing = json.dumps([metadata]).encode()
    content_type, body = stow_body([("application/dicom+json", missing)], kind="application/dicom+json")
    refused = httpx.post(f"{server.url}/studies", content=body, headers={"Content-Type": content_type})
    assert refused.status_code == 409
    assert "names no part of the request" in failures(refused)[0][1]
