"""Every transfer syntax of the shared data: stored bytes, transcoded instances and frames decode to the
original's pixels (lossless targets exactly)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from dicomweb.transcode import syntaxes as ts
from tests.conftest import data_path
from tests.multipart_util import split_multipart
from tests.wado.conftest import Loaded

LOSSLESS_TARGETS = [ts.EXPLICIT_LE, ts.IMPLICIT_LE, ts.RLE, ts.J2K_LOSSLESS, ts.HTJ2K_LOSSLESS,
                    ts.JPEG_LOSSLESS_SV1, ts.JPEG_LS_LOSSLESS]
MULTIPART_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax={}'


def original_pixels(entry: dict[str, Any]) -> np.ndarray | None:
    try:
        return np.asarray(pydicom.dcmread(data_path(entry)).pixel_array)
    except Exception:
        return None


def must_encode(target: str, header: pydicom.Dataset) -> bool:
    """Whether the archive must manage ``target`` for this image (codecs hold at most 16 bits; JPEG
    lossless and JPEG-LS are given for unsigned data only)."""
    if target in (ts.EXPLICIT_LE, ts.IMPLICIT_LE):
        return True
    if int(header.BitsAllocated) > 16:
        return False
    if target in (ts.JPEG_LOSSLESS_SV1, ts.JPEG_LS_LOSSLESS):
        return int(header.get("PixelRepresentation", 0)) == 0
    return True


def single_part(response: Any) -> tuple[dict[str, str], bytes]:
    assert response.status_code == 200, response.text
    parts = split_multipart(response.headers["content-type"], response.content)
    assert len(parts) == 1
    return parts[0]


def test_every_syntax_is_covered(syntaxes: list[tuple[Loaded, dict[str, Any]]]) -> None:
    stored = {entry["transfer_syntax"] for _, entry in syntaxes}
    assert {ts.EXPLICIT_LE, ts.EXPLICIT_BE, ts.IMPLICIT_LE, ts.DEFLATED_LE, ts.JPEG_BASELINE, ts.JPEG_EXTENDED,
            ts.JPEG_LOSSLESS_SV1, ts.JPEG_LS_LOSSLESS, ts.J2K_LOSSLESS, ts.J2K, ts.RLE} <= stored


def test_stored_bytes_as_they_are(syntaxes: list[tuple[Loaded, dict[str, Any]]]) -> None:
    for loaded, entry in syntaxes:
        response = loaded.client.get(loaded.url(entry), headers={"Accept": MULTIPART_DICOM.format("*")})
        headers, data = single_part(response)
        assert data == data_path(entry).read_bytes()
        assert headers["content-type"] == f"application/dicom; transfer-syntax={entry['transfer_syntax']}"


def test_transcoded_instances_decode_to_the_original_pixels(syntaxes: list[tuple[Loaded, dict[str, Any]]]) -> None:
    for loaded, entry in syntaxes:
        expected = original_pixels(entry)
        for target in LOSSLESS_TARGETS:
            response = loaded.client.get(loaded.url(entry), headers={"Accept": MULTIPART_DICOM.format(target)})
            if expected is None:
                assert response.status_code == 406, (entry["path"], target)
                assert "cannot be given" in response.json()["detail"]
                continue
            header = pydicom.dcmread(data_path(entry), stop_before_pixels=True)
            if not must_encode(target, header):
                assert response.status_code in (200, 406), (entry["path"], target)
                if response.status_code == 406:
                    assert "cannot be given" in response.json()["detail"]
                    continue
            headers, data = single_part(response)
            assert headers["content-type"] == f"application/dicom; transfer-syntax={target}"
            ds = pydicom.dcmread(io.BytesIO(data))
            assert ds.file_meta.TransferSyntaxUID == target
            assert ds.SOPInstanceUID == entry["sop_instance_uid"]
            np.testing.assert_array_equal(ds.pixel_array, expected, err_msg=f"{entry['path']} -> {target}")


def _original_frame(entry: dict[str, Any]) -> bytes:
    ds = pydicom.dcmread(data_path(entry))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return next(generate_frames(ds.PixelData, number_of_frames=frames))


def test_frames_as_stored_and_uncompressed(syntaxes: list[tuple[Loaded, dict[str, Any]]]) -> None:
    for loaded, entry in syntaxes:
        syntax = ts.syntax(entry["transfer_syntax"])
        url = loaded.url(entry) + "/frames/1"
        star = loaded.client.get(url, headers={"Accept": "multipart/related; type=application/octet-stream; "
                                                         "transfer-syntax=*"})
        headers, data = single_part(star)
        expected = original_pixels(entry)
        if ts.is_native(entry["transfer_syntax"]):
            assert headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
            assert expected is not None
            first = expected if int(entry["frames"]) == 1 else expected[0]
            assert data == first.astype(first.dtype.newbyteorder("<")).tobytes(), entry["path"]
            continue
        assert headers["content-type"] == f"{syntax.media_type}; transfer-syntax={entry['transfer_syntax']}"
        assert data == _original_frame(entry), entry["path"]
        plain = loaded.client.get(url, headers={"Accept": 'multipart/related; type="application/octet-stream"'})
        if expected is None:
            assert plain.status_code == 406
            continue
        headers, data = single_part(plain)
        assert headers["content-type"] == "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        first = expected if int(entry["frames"]) == 1 else expected[0]
        assert data == first.astype(first.dtype.newbyteorder("<")).tobytes(), entry["path"]


@pytest.mark.parametrize("media, syntax", [("image/jp2", ts.J2K_LOSSLESS), ("image/jphc", ts.HTJ2K_LOSSLESS),
                                           ("image/dicom-rle", ts.RLE), ("image/jls", ts.JPEG_LS_LOSSLESS)])
def test_frames_transcoded_to_a_compressed_media_type(loaded: Loaded, media: str, syntax: str) -> None:
    entry = next(e for e in loaded.entries if e["path"] == "pydicom-test-files/CT_small.dcm")
    accept = {"Accept": f"multipart/related; type={media}"}
    response = loaded.client.get(loaded.url(entry) + "/frames/1", headers=accept)
    if syntax == ts.JPEG_LS_LOSSLESS:  # CT_small is signed: JPEG-LS is refused with the reason
        assert response.status_code == 406 and "signed" in response.json()["detail"]
        return
    headers, data = single_part(response)
    assert headers["content-type"] == f"{media}; transfer-syntax={syntax}"
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder

    ds = pydicom.dcmread(data_path(entry))
    array, _ = get_decoder(syntax).as_array(
        encapsulate([data]), index=0, rows=ds.Rows, columns=ds.Columns, samples_per_pixel=1,
        bits_allocated=16, bits_stored=ds.BitsStored, pixel_representation=ds.PixelRepresentation,
        photometric_interpretation="MONOCHROME2", number_of_frames=1, pixel_keyword="PixelData")
    np.testing.assert_array_equal(array, ds.pixel_array)
