"""The retrieval fast paths keep their answers exact: batched series bodies, remembered instance locations
(after deletes and replacements), shared Accept parses, the route order, multipart boundaries."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from starlette.routing import Mount

from dicomweb.app import create_app
from dicomweb.backends import cached_read
from dicomweb.http.media import parse_accept
from dicomweb.http.multipart import new_boundary
from dicomweb.settings import load_settings
from dicomweb.wado import frames as frames_module
from dicomweb.wado import streaming
from tests.conftest import data_path
from tests.multipart_util import split_multipart
from tests.wado.conftest import Loaded, chosen_entries, load

OCTET = {"Accept": "multipart/related; type=application/octet-stream"}
SERIES = "pydicom-test-files/dicomdirtests/77654033/CT2"


@pytest.fixture
def series(tmp_path: Path, shared_data: Path) -> Iterator[Loaded]:
    yield from load(tmp_path, [e for e in chosen_entries() if e["path"].startswith(SERIES)])


@pytest.fixture
def replacing(tmp_path: Path, shared_data: Path) -> Iterator[Loaded]:
    yield from load(tmp_path, [e for e in chosen_entries() if e["path"].startswith(SERIES)][:1],
                    on_conflict="replace")


def _series_parts(loaded: Loaded) -> dict[str, bytes]:
    item = loaded.entries[0]
    url = f"{loaded.base}/studies/{item['study_uid']}/series/{item['series_uid']}"
    response = loaded.client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    return {headers["content-location"].rsplit("/", 1)[1]: data
            for headers, data in split_multipart(response.headers["content-type"], response.content)}


@pytest.mark.parametrize("batch_bytes", [streaming.BATCH_BYTES, 1000, 1])
def test_series_bodies_are_the_stored_files_whatever_the_batch_size(
        series: Loaded, batch_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # 1000 bytes: files split across batches and batches holding several part heads; 1: one byte per batch.
    monkeypatch.setattr(streaming, "BATCH_BYTES", batch_bytes)
    parts = _series_parts(series)
    in_series = [e for e in series.entries if e["series_uid"] == series.entries[0]["series_uid"]]
    assert len(parts) == len(in_series) > 1
    for item in in_series:
        assert parts[item["sop_instance_uid"]] == data_path(item).read_bytes()


def test_single_instance_streams_the_stored_file(series: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "BATCH_BYTES", 4096)
    item = series.entries[0]
    response = series.client.get(series.url(item), headers={"Accept": "application/dicom"})
    assert response.status_code == 200 and response.content == data_path(item).read_bytes()


def test_a_remembered_instance_is_forgotten_when_deleted(series: Loaded) -> None:
    item = series.entries[0]
    first = series.client.get(series.url(item) + "/frames/1", headers=OCTET)
    again = series.client.get(series.url(item) + "/frames/1", headers=OCTET)
    assert first.status_code == again.status_code == 200
    assert split_multipart(first.headers["content-type"], first.content)[0][1] == \
        split_multipart(again.headers["content-type"], again.content)[0][1]
    assert series.client.delete(series.url(item)).status_code == 204
    assert series.client.get(series.url(item) + "/frames/1", headers=OCTET).status_code == 404


def test_a_remembered_instance_replaced_behind_the_servers_back_gives_the_new_pixels(
        replacing: Loaded, tmp_path: Path) -> None:
    item = replacing.entries[0]
    url = replacing.url(item) + "/frames/1"
    before = replacing.client.get(url, headers=OCTET)
    assert before.status_code == 200
    # The same instance with other pixel values, stored without the web app knowing (as another process would).
    ds = pydicom.dcmread(data_path(item))
    pixels = ds.pixel_array
    ds.PixelData = (pixels ^ 0x0F).astype(pixels.dtype).tobytes()
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed, enforce_file_format=True)
    result = replacing.archive.ingest.store(replacing.archive.stage_file(changed))
    assert result.outcome == "replaced"
    after = replacing.client.get(url, headers=OCTET)
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    ((_, frame),) = split_multipart(after.headers["content-type"], after.content)
    assert frame == pydicom.dcmread(io.BytesIO(changed.read_bytes())).PixelData


def test_frames_answered_from_the_page_cache_equal_those_read_in_a_thread(
        series: Loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    inline: list[bool] = []
    real = frames_module.cached_frames

    def spy(*args: Any) -> Any:
        got = real(*args)
        inline.append(got is not None)
        return got

    monkeypatch.setattr(frames_module, "cached_frames", spy)
    for item in series.entries:
        url = series.url(item) + "/frames/1"
        first = series.client.get(url, headers=OCTET)  # looked up in the index, read in a thread
        again = series.client.get(url, headers=OCTET)  # remembered, and its frame now in the page cache
        single = series.client.get(url, headers={"Accept": "application/octet-stream"})
        assert first.status_code == again.status_code == single.status_code == 200
        expected = pydicom.dcmread(data_path(item)).PixelData
        for response in (first, again):
            ((headers, frame),) = split_multipart(response.headers["content-type"], response.content)
            assert frame == expected
            assert headers["content-location"] == url
        assert single.content == expected and single.headers["etag"] != again.headers["etag"]
        assert again.headers["etag"] == first.headers["etag"]
        assert series.client.get(url, headers={**OCTET, "If-None-Match": again.headers["etag"]}).status_code == 304
    assert inline and all(inline)  # every remembered request was answered without the thread hop

    # Refused reads (pages not cached) send every request to the thread path, with the same answers.
    monkeypatch.setattr(cached_read, "read_cached", lambda *args: None)
    item = series.entries[0]
    response = series.client.get(series.url(item) + "/frames/1", headers=OCTET)
    assert response.status_code == 200 and inline[-1] is False
    assert split_multipart(response.headers["content-type"], response.content)[0][1] == \
        pydicom.dcmread(data_path(item)).PixelData


def test_accept_parses_are_shared_but_not_their_lists() -> None:
    header = 'multipart/related; type="application/octet-stream", */*; q=0.1'
    first = parse_accept(header)
    first.clear()
    second = parse_accept(header)
    assert [r.essence for r in second] == ["multipart/related", "*/*"]
    assert parse_accept("") == parse_accept(None) != []


def test_dicomweb_routes_come_first_unless_their_base_path_would_shadow_others(tmp_path: Path) -> None:
    default = create_app(load_settings(data_dir=tmp_path))
    assert isinstance(default.routes[0], Mount) and default.routes[0].path == "/dicom-web"
    shadowing = create_app(load_settings(data_dir=tmp_path, base_path="/admin"))
    assert isinstance(shadowing.routes[-1], Mount) and not isinstance(shadowing.routes[0], Mount)


def test_boundaries_are_distinct_and_token_safe() -> None:
    made = {new_boundary() for _ in range(5000)}
    assert len(made) == 5000
    assert all(len(b) == 32 and all(c in "0123456789abcdef" for c in b) for b in made)
