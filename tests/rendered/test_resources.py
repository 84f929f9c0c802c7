"""Rendered and thumbnail resources: media types, cine, multipart, thumbnails, caching, errors."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydicom import dcmread

from tests.conftest import DATA

from .conftest import Library, instance_url

EMRI = "pydicom-data/emri_small.dcm"  # 10 frames, 64 x 64
CT = "pydicom-data/693_UNCR.dcm"
MR700 = [f"pydicom-test-files/dicomdirtests/98892003/MR700/{n}" for n in
         ("4467", "4528", "4558", "4588", "4618", "4648", "4678")]


def _series_url(entry: dict[str, str]) -> str:
    return f"/dicom-web/studies/{entry['study_uid']}/series/{entry['series_uid']}"


def _multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, data = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        parts.append(({k.lower(): v for k, v in headers.items()}, data))
    return parts


def test_gif_of_multiframe_instance_has_every_frame(library: Library) -> None:
    client, entry = library.store(EMRI)
    response = client.get(f"{instance_url(entry)}/rendered", headers={"Accept": "image/gif"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/gif"
    image = Image.open(io.BytesIO(response.content))
    assert image.n_frames == 10 and image.size == (64, 64)


def test_mp4_of_multiframe_instance(library: Library) -> None:
    client, entry = library.store(EMRI)
    response = client.get(f"{instance_url(entry)}/rendered", params={"viewport": "128,128"},
                          headers={"Accept": "video/mp4"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        frames = [f for f in container.decode(video=0)]
    assert len(frames) == 10
    assert (frames[0].width, frames[0].height) == (128, 128)


def test_mp4_pads_odd_sizes(library: Library) -> None:
    client, entry = library.store("pydicom-data/OBXXXX1A_2frame.dcm")  # 800 x 600 palette, 2 frames
    response = client.get(f"{instance_url(entry)}/rendered", params={"viewport": "201,201"},
                          headers={"Accept": "video/mp4"})
    with av.open(io.BytesIO(response.content)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 2 and (frames[0].width, frames[0].height) == (202, 152)  # 201 x 151, padded to even


def test_series_cine_and_series_multipart(library: Library) -> None:
    entries = [library.store(p) for p in MR700]
    client, entry = entries[0]
    assert all(c is client for c, _ in entries)
    gif = client.get(f"{_series_url(entry)}/rendered", headers={"Accept": "image/gif"})
    assert gif.status_code == 200
    assert Image.open(io.BytesIO(gif.content)).n_frames == len(MR700)
    multi = client.get(f"{_series_url(entry)}/rendered", headers={"Accept": 'multipart/related; type="image/png"'})
    assert multi.status_code == 200
    assert multi.headers["content-type"].startswith('multipart/related; type="image/png"; boundary=')
    parts = _multipart(multi.headers["content-type"], multi.content)
    assert len(parts) == len(MR700)
    assert all(h["content-type"] == "image/png" for h, _ in parts)
    assert all(h["content-location"].endswith("/frames/1/rendered") for h, _ in parts)
    assert all(Image.open(io.BytesIO(d)).size == (16, 16) for _, d in parts)


def test_frame_list_gives_multipart_of_those_frames(library: Library) -> None:
    client, entry = library.store(EMRI)
    response = client.get(f"{instance_url(entry)}/frames/3,1,10/rendered", headers={"Accept": "image/png"})
    parts = _multipart(response.headers["content-type"], response.content)
    assert [h["content-location"].rsplit("/", 2)[1] for h, _ in parts] == ["3", "1", "10"]
    single = client.get(f"{instance_url(entry)}/frames/3/rendered", headers={"Accept": "image/png"})
    assert single.headers["content-type"] == "image/png"
    assert single.content == parts[0][1]


def test_multiframe_instance_as_jpeg_is_its_first_frame(library: Library) -> None:
    client, entry = library.store(EMRI)
    whole = client.get(f"{instance_url(entry)}/rendered", headers={"Accept": "image/png"})
    first = client.get(f"{instance_url(entry)}/frames/1/rendered", headers={"Accept": "image/png"})
    assert whole.content == first.content


def test_series_thumbnail_is_middle_slice_fitted(library: Library) -> None:
    entries = [library.store(p) for p in MR700]
    client, entry = entries[0]
    thumb = client.get(f"{_series_url(entry)}/thumbnail", headers={"Accept": "image/png"})
    assert thumb.status_code == 200
    assert Image.open(io.BytesIO(thumb.content)).size == (128, 128)
    # Instances sort by Instance Number; the middle of 7 is the 4th.
    numbers = {e["path"]: int(dcmread(DATA / e["path"], stop_before_pixels=True).InstanceNumber)
               for _, e in entries}
    ordered = sorted(entries, key=lambda ce: numbers[ce[1]["path"]])
    middle = ordered[len(ordered) // 2][1]
    direct = client.get(f"{instance_url(middle)}/rendered", params={"viewport": "128,128"},
                        headers={"Accept": "image/png"})
    assert thumb.content == direct.content
    study = client.get(f"/dicom-web/studies/{entry['study_uid']}/thumbnail", headers={"Accept": "image/png"})
    assert study.status_code == 200 and Image.open(io.BytesIO(study.content)).size[0] <= 128


def test_huge_viewport_is_capped(library: Library) -> None:
    client, entry = library.store("pydicom-test-files/CT_small.dcm")  # 128 x 128
    response = client.get(f"{instance_url(entry)}/rendered", params={"viewport": "99999,5000"})
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (4096, 4096)


def test_thumbnail_keeps_aspect_and_honours_viewport(library: Library) -> None:
    client, entry = library.store("pydicom-data/US1_UNCR.dcm")  # 640 x 480
    default = client.get(f"{instance_url(entry)}/thumbnail")
    assert default.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(default.content)).size == (128, 96)
    sized = client.get(f"{instance_url(entry)}/thumbnail", params={"viewport": "64,64"})
    assert Image.open(io.BytesIO(sized.content)).size == (64, 48)


def test_etag_revalidation_and_cache(library: Library) -> None:
    client, entry = library.store(CT)
    first = client.get(f"{instance_url(entry)}/rendered", params={"quality": "80"})
    etag = first.headers["etag"]
    again = client.get(f"{instance_url(entry)}/rendered", params={"quality": "80"}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = client.get(f"{instance_url(entry)}/rendered", params={"quality": "60"})
    assert other.headers["etag"] != etag and len(other.content) < len(first.content)
    repeat = client.get(f"{instance_url(entry)}/rendered", params={"quality": "80"})
    assert repeat.content == first.content and repeat.headers["etag"] == etag


def test_thumbnail_persists_on_disk(library: Library) -> None:
    client, entry = library.store(CT)
    response = client.get(f"{instance_url(entry)}/thumbnail")
    assert response.status_code == 200
    folder = library.placed[CT].archive.settings.data_dir / "rendered-cache"
    stored = [p.read_bytes() for p in folder.rglob("*") if p.is_file()]
    assert response.content in stored


def test_annotation_burns_text_and_policy(library: Library) -> None:
    client, entry = library.store(CT)
    plain = np.asarray(Image.open(io.BytesIO(client.get(f"{instance_url(entry)}/rendered",
                                                        headers={"Accept": "image/png"}).content)))
    marked = client.get(f"{instance_url(entry)}/rendered", params={"annotation": "patient,technique"},
                        headers={"Accept": "image/png"})
    burned = np.asarray(Image.open(io.BytesIO(marked.content)))
    assert burned.shape == plain.shape
    changed = burned != plain
    assert changed[:40].any() and changed[-40:].any() and not changed[200:300].any()


def test_icc_profile_on_colour_output(library: Library) -> None:
    client, entry = library.store("pydicom-data/US1_UNCR.dcm")
    response = client.get(f"{instance_url(entry)}/rendered", params={"iccprofile": "srgb"},
                          headers={"Accept": "image/png"})
    assert Image.open(io.BytesIO(response.content)).info.get("icc_profile")
    plain = client.get(f"{instance_url(entry)}/rendered", headers={"Accept": "image/png"})
    assert not Image.open(io.BytesIO(plain.content)).info.get("icc_profile")


def test_accept_query_parameter_wins(library: Library) -> None:
    client, entry = library.store(CT)
    response = client.get(f"{instance_url(entry)}/rendered", params={"accept": "image/png"},
                          headers={"Accept": "image/jpeg"})
    assert response.headers["content-type"] == "image/png"


@pytest.mark.parametrize(("query", "words"), [
    ({"viewport": "-1,100"}, "viewport width must be at least 1"),
    ({"viewport": "100"}, "viewport must be"),
    ({"viewport": "100,100,600,0,10,10"}, "outside the 512x512 image"),
    ({"viewport": "100,100,0,0,0,10"}, "zero width"),
    ({"window": "abc,400"}, "must be numbers"),
    ({"window": "40,0"}, "too small"),
    ({"window": "40,400,cubic"}, "window function"),
    ({"quality": "101"}, "quality must be 1 to 100"),
    ({"quality": "high"}, "whole number"),
    ({"annotation": "everything"}, "annotation takes"),
    ({"iccprofile": "adobergb"}, "iccprofile"),
])
def test_bad_parameters_are_400(library: Library, query: dict[str, str], words: str) -> None:
    client, entry = library.store(CT)
    response = client.get(f"{instance_url(entry)}/rendered", params=query)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


@pytest.mark.parametrize("frames", ["11", "0", "abc", "1,,2", "2,99"])
def test_frames_that_do_not_exist_are_400(library: Library, frames: str) -> None:
    client, entry = library.store(EMRI)
    for resource in ("rendered", "thumbnail"):
        response = client.get(f"{instance_url(entry)}/frames/{frames}/{resource}")
        assert response.status_code == 400, response.text
        assert "frame" in response.json()["detail"]


@pytest.mark.parametrize("path", ["pydicom-test-files/test-SR.dcm", "pydicom-test-files/waveform_ecg.dcm",
                                  "pydicom-test-files/rtplan.dcm"])
def test_non_images_are_406(library: Library, path: str) -> None:
    client, entry = library.store(path)
    for resource in ("rendered", "thumbnail"):
        response = client.get(f"{instance_url(entry)}/{resource}")
        assert response.status_code == 406, response.text
        assert "no images" in response.json()["detail"]


def test_undecodable_pixels_are_406(library: Library) -> None:
    client, entry = library.store("pydicom-test-files/JPEG-lossy.dcm")  # 12-bit JPEG no installed codec reads
    response = client.get(f"{instance_url(entry)}/rendered")
    assert response.status_code == 406
    assert "cannot be decoded" in response.json()["detail"]


def test_unacceptable_media_types_are_406(library: Library) -> None:
    client, entry = library.store(CT)
    for accept in ("application/dicom", "image/jp2", "text/html"):
        response = client.get(f"{instance_url(entry)}/rendered", headers={"Accept": accept})
        assert response.status_code == 406, accept
    response = client.get(f"{instance_url(entry)}/thumbnail", headers={"Accept": "video/mp4"})
    assert response.status_code == 406


def test_unknown_resources_are_404(library: Library) -> None:
    client, entry = library.store(CT)
    response = client.get(f"/dicom-web/studies/{entry['study_uid']}/series/1.2.3/rendered")
    assert response.status_code == 404
    response = client.get("/dicom-web/studies/not-a-uid/thumbnail")
    assert response.status_code == 400


@given(viewport=st.text(alphabet="0123456789,-", max_size=24), window=st.text(alphabet="0123456789.,-e", max_size=16))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_parameter_text_gets_200_or_400(library: Library, viewport: str, window: str) -> None:
    client, entry = library.store("pydicom-test-files/CT_small.dcm")
    response = client.get(f"{instance_url(entry)}/rendered", params={"viewport": viewport, "window": window})
    assert response.status_code in (200, 400), response.text
