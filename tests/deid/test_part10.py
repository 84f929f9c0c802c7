"""Streaming de-identification of stored Part 10 files: the header replaced, the pixel bytes copied as they were."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicomweb.policies.deid import Deidentifier

from ..conftest import DATA
from .helpers import assert_deidentified

# The test files include broken values on purpose; pydicom warns about each as it reads them.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
KEY = "P-10"
FILES = [
    "pydicom-test-files/CT_small.dcm",  # explicit VR little endian, private tags, trailing padding
    "pydicom-test-files/MR_small_implicit.dcm",
    "pydicom-test-files/MR_small_bigendian.dcm",
    "pydicom-test-files/SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, encapsulated
    "pydicom-test-files/MR_small_jp2klossless.dcm",
    "pydicom-data/emri_small_RLE.dcm",  # encapsulated multi-frame
    "pydicom-data/emri_small.dcm",  # native multi-frame
    "pydicom-test-files/examples_ybr_color.dcm",  # 30 JPEG frames
    "pydicom-test-files/image_dfl.dcm",  # deflated: read whole
    "pydicom-test-files/rtplan.dcm",  # no pixel data
]


def _entry(ds: pydicom.Dataset) -> dict[str, str]:
    return {"study_uid": ds.StudyInstanceUID, "series_uid": ds.SeriesInstanceUID,
            "sop_instance_uid": ds.SOPInstanceUID}


def _deidentify(deid: Deidentifier, data: bytes) -> bytes:
    sink = io.BytesIO()
    deid.part10(io.BytesIO(data), sink, KEY)
    return sink.getvalue()


@pytest.mark.parametrize("name", FILES)
def test_part10(name: str) -> None:
    deid = Deidentifier(b"part10", None)
    path = DATA / name
    original = pydicom.dcmread(path)
    out = pydicom.dcmread(io.BytesIO(_deidentify(deid, path.read_bytes())))
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out.SOPInstanceUID == deid.pseudonym(original.SOPInstanceUID)
    # pydicom writes the Part 10 header with Media Storage SOP Instance UID equal to the SOP Instance UID.
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.PatientIdentityRemoved == "YES"
    assert 0xFFFCFFFC not in out
    assert_deidentified(deid, original.to_json_dict(1024, lambda e: "bulk"), out.to_json_dict(1024, lambda e: "bulk"),
                        _entry(original), KEY)
    if "PixelData" in original:
        assert out.PixelData == original.PixelData
        assert np.array_equal(out.pixel_array, original.pixel_array)
    else:
        assert "PixelData" not in out


def test_trailing_elements_are_dropped(tmp_path: Path) -> None:
    data = (DATA / "pydicom-test-files/MR_small.dcm").read_bytes()
    padded = data + struct.pack("<HH2sHI", 0xFFFC, 0xFFFC, b"OB", 0, 6) + b"secret"
    out = _deidentify(Deidentifier(b"part10", None), padded)
    assert b"secret" not in out
    ds = pydicom.dcmread(io.BytesIO(out))
    assert 0xFFFCFFFC not in ds
    assert ds.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData


def test_pixels_copied_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dicomweb.policies.deid.part10_copy.CHUNK", 1000)
    data = (DATA / "pydicom-data/emri_small_RLE.dcm").read_bytes()
    out = pydicom.dcmread(io.BytesIO(_deidentify(Deidentifier(b"part10", None), data)))
    assert out.PixelData == pydicom.dcmread(io.BytesIO(data)).PixelData
