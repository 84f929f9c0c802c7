"""Metadata against pydicom, bulk data bytes, frames errors, caching (ETag, 304, HEAD), gzip, zip, WADO-URI,
CORS."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.conftest import data_path
from tests.multipart_util import split_multipart
from tests.wado.conftest import Loaded, load

CT = "pydicom-test-files/CT_small.dcm"
MULTIFRAME = "pydicom-data/emri_small.dcm"


def entry(loaded: Loaded, path: str) -> dict[str, Any]:
    return next(e for e in loaded.entries if e["path"] == path)


def test_metadata_equals_pydicom_for_every_stored_instance(loaded: Loaded) -> None:
    checked = 0
    for item in loaded.entries:
        response = loaded.client.get(loaded.url(item) + "/metadata")
        assert response.status_code == 200, item["path"]
        (ours,) = response.json()
        original = pydicom.dcmread(data_path(item))
        try:
            expected = original.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda e: "uri")
        except Exception:
            continue
        expected.pop("FFFCFFFC", None)
        if item["transfer_syntax"] == "1.2.840.10008.1.2.1.99":  # deflated: the core indexes no pixel data offset
            expected.pop("7FE00010", None)
        assert set(ours) == set(expected), item["path"]
        for tag, value in expected.items():
            if tag == "7FE00010":  # always a BulkDataURI here (the core's choice), resolved in the bulk data test
                assert ours[tag]["BulkDataURI"] == loaded.url(item) + "/bulkdata/7FE00010"
                continue
            if "BulkDataURI" in value and "InlineBinary" in ours[tag]:
                # pydicom measures the threshold on the base64 text, the archive on the value (PS3.18 F.2.7)
                assert base64.b64decode(ours[tag]["InlineBinary"]) == bytes(original[int(tag, 16)].value)
            elif "BulkDataURI" in value:
                assert ours[tag]["BulkDataURI"].startswith(loaded.url(item) + "/bulkdata/"), (item["path"], tag)
            elif value.get("vr") != "SQ":
                assert ours[tag] == value, (item["path"], tag)
        checked += 1
    assert checked > 100


def test_every_bulk_data_uri_resolves_to_the_original_value(loaded: Loaded) -> None:
    resolved = 0
    for item in loaded.entries:
        (meta,) = loaded.client.get(loaded.url(item) + "/metadata").json()
        original = pydicom.dcmread(data_path(item))
        big_endian = original.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
        for tag, value in meta.items():
            uri = value.get("BulkDataURI")
            if not uri or (tag == "7FE00010" and (original.file_meta.TransferSyntaxUID.is_compressed or big_endian)):
                continue
            response = loaded.client.get(uri, headers={"Accept": "application/octet-stream"})
            assert response.status_code == 200, (item["path"], tag, response.text)
            if big_endian:
                continue
            raw = original[int(tag, 16)].value
            assert response.content == bytes(raw), (item["path"], tag)
            resolved += 1
    assert resolved > 50


def test_bulk_data_range_requests(loaded: Loaded) -> None:
    url = loaded.url(entry(loaded, CT)) + "/bulkdata/7FE00010"
    whole = pydicom.dcmread(data_path(entry(loaded, CT))).PixelData
    part = loaded.client.get(url, headers={"Accept": "application/octet-stream", "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(whole)}"
    tail = loaded.client.get(url, headers={"Accept": "application/octet-stream", "Range": "bytes=-4"})
    assert tail.status_code == 206 and tail.content == whole[-4:]
    bad = loaded.client.get(url, headers={"Accept": "application/octet-stream", "Range": f"bytes={len(whole)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(whole)}"
    multi = loaded.client.get(url)
    ((headers, data),) = split_multipart(multi.headers["content-type"], multi.content)
    assert data == whole and headers["content-location"] == url


def test_frames_lists_and_errors(loaded: Loaded) -> None:
    item = entry(loaded, MULTIFRAME)
    url = loaded.url(item)
    pixels = pydicom.dcmread(data_path(item)).pixel_array
    octet = {"Accept": "multipart/related; type=application/octet-stream"}
    response = loaded.client.get(url + "/frames/1,3,10", headers=octet)
    parts = split_multipart(response.headers["content-type"], response.content)
    assert [data for _, data in parts] == [pixels[n - 1].astype("<u2").tobytes() for n in (1, 3, 10)]
    single = loaded.client.get(url + "/frames/2", headers={"Accept": "application/octet-stream"})
    assert single.status_code == 200 and single.content == pixels[1].astype("<u2").tobytes()
    assert loaded.client.get(url + "/frames/0").status_code == 400
    assert loaded.client.get(url + "/frames/1,x").status_code == 400
    assert loaded.client.get(url + "/frames/1,%C2%B2").status_code == 400  # "²": a digit to str, not to int()
    assert loaded.client.get(url + "/frames/9999999999").status_code == 400
    out_of_range = loaded.client.get(url + f"/frames/1,{len(pixels) + 1}")
    assert out_of_range.status_code == 404 and f"there is no frame {len(pixels) + 1}" in out_of_range.json()["detail"]
    assert loaded.client.get(url + "/frames/1", headers={"Accept": "text/html"}).status_code == 406
    assert loaded.client.get(url + "/frames/1", headers={"Accept": "multipart/related; q=x"}).status_code == 400
    missing = loaded.url({**item, "sop_instance_uid": "1.2.3.4"})
    assert loaded.client.get(missing + "/frames/1").status_code == 404


def test_etag_304_and_head(loaded: Loaded) -> None:
    item = entry(loaded, CT)
    urls = [loaded.url(item), loaded.url(item) + "/metadata", loaded.url(item) + "/frames/1",
            loaded.url(item) + "/bulkdata/7FE00010",
            f"{loaded.base}/studies/{item['study_uid']}/series/{item['series_uid']}/metadata"]
    for url in urls:
        first = loaded.client.get(url)
        assert first.status_code == 200, url
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        assert first.headers["cache-control"] == "private, max-age=0, must-revalidate"
        again = loaded.client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
        assert loaded.client.get(url, headers={"If-Modified-Since": modified}).status_code == 304
        assert loaded.client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
        head = loaded.client.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["etag"] == etag
        assert head.headers["content-type"].split("boundary=")[0] == first.headers["content-type"].split("boundary=")[0]


def test_metadata_gzip_and_xml(loaded: Loaded) -> None:
    item = entry(loaded, CT)
    url = loaded.url(item) + "/metadata"
    plain = loaded.client.get(url, headers={"Accept-Encoding": "identity"})
    zipped = loaded.client.get(url, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.json() == plain.json()
    assert zipped.headers["etag"] != plain.headers["etag"]
    xml = loaded.client.get(url, headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    ((headers, body),) = split_multipart(xml.headers["content-type"], xml.content)
    assert headers["content-type"].startswith("application/dicom+xml")
    assert b'<DicomAttribute tag="00100010" vr="PN" keyword="PatientName">' in body
    assert loaded.client.get(url, headers={"Accept": "image/png"}).status_code == 406
    assert gzip.decompress(gzip.compress(b"x")) == b"x"


@pytest.fixture
def fresh(tmp_path: Path, shared_data: Path) -> Iterator[Loaded]:
    from tests.wado.conftest import chosen_entries

    entries = [e for e in chosen_entries() if e["path"].startswith("pydicom-test-files/dicomdirtests/77654033/CT2")]
    yield from load(tmp_path, entries)


def test_series_metadata_cache_follows_deletes(fresh: Loaded) -> None:
    item = fresh.entries[0]
    series_url = f"{fresh.base}/studies/{item['study_uid']}/series/{item['series_uid']}"
    before = fresh.client.get(series_url + "/metadata")
    count = len(before.json())
    assert count == len([e for e in fresh.entries if e["series_uid"] == item["series_uid"]]) and count > 1
    assert fresh.client.get(series_url + "/metadata").json() == before.json()  # cached answer, same body
    assert fresh.client.delete(fresh.url(item)).status_code == 204
    after = fresh.client.get(series_url + "/metadata", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and len(after.json()) == count - 1


def test_zip_of_a_series(loaded: Loaded) -> None:
    item = entry(loaded, CT)
    response = loaded.client.get(f"{loaded.base}/studies/{item['study_uid']}", headers={"Accept": "application/zip"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        name = f"{item['study_uid']}/{item['series_uid']}/{item['sop_instance_uid']}.dcm"
        assert zf.read(name) == data_path(item).read_bytes()


def test_transfer_syntax_negotiation_with_q_values(loaded: Loaded) -> None:
    url = loaded.url(entry(loaded, CT))
    accept = ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50; q=0.9, '
              'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90; q=0.5')
    # The preferred range wins; CT_small is 16-bit, so baseline JPEG is refused with the reason.
    response = loaded.client.get(url, headers={"Accept": accept})
    assert response.status_code == 406 and "8-bit" in response.json()["detail"]
    swapped = accept.replace("q=0.9", "q=0.1")
    response = loaded.client.get(url, headers={"Accept": swapped})
    ((headers, data),) = split_multipart(response.headers["content-type"], response.content)
    assert headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"
    original = pydicom.dcmread(data_path(entry(loaded, CT))).pixel_array
    assert (pydicom.dcmread(io.BytesIO(data)).pixel_array == original).all()
    nothing = loaded.client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"; '
                                                        "transfer-syntax=1.2.3.4"})
    assert nothing.status_code == 406 and "1.2.840.10008.1.2.4.90" in nothing.json()["detail"]


def test_wado_uri(loaded: Loaded) -> None:
    item = entry(loaded, CT)
    query = (f"requestType=WADO&studyUID={item['study_uid']}&seriesUID={item['series_uid']}"
             f"&objectUID={item['sop_instance_uid']}")
    odd_accept = {"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"}
    dicom = loaded.client.get(f"http://testserver/wado?{query}&contentType=application/dicom", headers=odd_accept)
    assert dicom.status_code == 200 and dicom.content == data_path(item).read_bytes()
    jpeg = loaded.client.get(f"http://testserver/dicom-web/wado?{query}&contentType=image/jpeg")
    assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
    assert loaded.client.get(f"http://testserver/wado?{query}&contentType=text/plain").status_code == 406
    assert loaded.client.get("http://testserver/wado?requestType=WADO&studyUID=1.2").status_code == 400
    missing = query.replace(item["sop_instance_uid"], "1.2.3")
    assert loaded.client.get(f"http://testserver/wado?{missing}").status_code == 404


def test_cors_for_a_viewer_on_another_origin(tmp_path: Path, shared_data: Path) -> None:
    gen = load(tmp_path, [e for e in __import__("tests.wado.conftest", fromlist=["x"]).chosen_entries()
                          if e["path"] == CT], cors_origins="http://viewer.example")
    loaded = next(gen)
    url = loaded.url(loaded.entries[0]) + "/frames/1"
    preflight = loaded.client.options(url, headers={
        "Origin": "http://viewer.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "accept"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://viewer.example"
    got = loaded.client.get(url, headers={"Origin": "http://viewer.example"})
    assert got.headers["access-control-allow-origin"] == "http://viewer.example"
    assert "ETag" in got.headers["access-control-expose-headers"]
    for _ in gen:
        pass
    assert json.dumps(True) == "true"
