"""Rendered pixels against an independent reference (pydicom + Pillow), for every kind of image data.

Output is requested as PNG (lossless) so the comparison measures the rendering, not a codec. Tolerance:
every pixel within 1 of the reference (rounding of float windowing); for JPEG and for scaled output, a
stated mean/max difference.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from .conftest import Library, instance_url, reference

PNG = {"Accept": "image/png"}

# (file, frame number, what it covers)
CASES = [
    ("pydicom-data/693_UNCR.dcm", 1, "CT signed 16-bit, rescale, dataset window"),
    ("pydicom-data/693_J2KR.dcm", 1, "CT in JPEG 2000 lossless"),
    ("pydicom-test-files/CT_small.dcm", 1, "CT without a window: full range"),
    ("pydicom-test-files/MR_small.dcm", 1, "MR with a window"),
    ("pydicom-test-files/MR_small_RLE.dcm", 1, "MR in RLE"),
    ("pydicom-test-files/MR_small_jpeg_ls_lossless.dcm", 1, "MR in JPEG-LS"),
    ("pydicom-test-files/MR_small_bigendian.dcm", 1, "MR big endian"),
    ("pydicom-data/MR2_UNCR.dcm", 1, "MR 12-bit with a fractional rescale slope"),
    ("pydicom-test-files/dicomdirtests/77654033/CR1/6154", 1, "MONOCHROME1 with window and rescale"),
    ("pydicom-data/RG3_UNCR.dcm", 1, "MONOCHROME1 10-bit radiograph"),
    ("pydicom-data/mlut_18.dcm", 1, "Modality LUT Sequence"),
    ("pydicom-data/vlut_04.dcm", 1, "VOI LUT Sequence"),
    ("pydicom-data/OBXXXX1A.dcm", 1, "palette colour"),
    ("pydicom-data/OBXXXX1A_rle_2frame.dcm", 2, "palette colour in RLE, second frame"),
    ("pydicom-data/gdcm-US-ALOKA-16.dcm", 1, "palette colour with 16-bit indices"),
    ("pydicom-data/US1_UNCR.dcm", 1, "RGB"),
    ("pydicom-data/color-pl.dcm", 1, "RGB planar configuration 1"),
    ("pydicom-test-files/ExplVR_BigEnd.dcm", 1, "RGB planar, big endian"),
    ("pydicom-data/SC_rgb_16bit.dcm", 1, "RGB 16-bit"),
    ("pydicom-data/SC_rgb_32bit_2frame.dcm", 2, "RGB 32-bit, second frame"),
    ("pydicom-data/SC_ybr_full_uncompressed.dcm", 1, "YBR_FULL native"),
    ("pydicom-test-files/SC_ybr_full_422_uncompressed.dcm", 1, "YBR_FULL_422 native"),
    ("pydicom-test-files/SC_rgb_dcmtk_+eb+cy+n1.dcm", 1, "YBR_FULL in JPEG baseline"),
    ("pydicom-data/US1_J2KR.dcm", 1, "YBR_RCT in JPEG 2000"),
    ("pydicom-data/emri_small.dcm", 7, "multi-frame MR, frame 7"),
    ("pydicom-test-files/examples_ybr_color.dcm", 12, "multi-frame YBR_FULL_422 JPEG, frame 12"),
    ("pydicom-test-files/image_dfl.dcm", 1, "deflated transfer syntax"),
    ("pydicom-data/liver.dcm", 2, "1-bit segmentation frame"),
]


def _png(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return np.asarray(image)


@pytest.mark.parametrize(("path", "frame", "what"), CASES, ids=[c[0].rsplit("/", 1)[-1] for c in CASES])
def test_frame_matches_reference(library: Library, path: str, frame: int, what: str) -> None:
    client, entry = library.store(path)
    response = client.get(f"{instance_url(entry)}/frames/{frame}/rendered", headers=PNG)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    got = _png(response.content)
    want = reference(path, frame - 1)
    assert got.shape == want.shape, what
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1, f"{what}: max difference {diff.max()}"


@pytest.mark.parametrize("function", ["linear", "linear-exact", "sigmoid"])
def test_window_parameter(library: Library, function: str) -> None:
    path = "pydicom-data/693_UNCR.dcm"
    client, entry = library.store(path)
    response = client.get(f"{instance_url(entry)}/rendered", params={"window": f"40,400,{function}"}, headers=PNG)
    assert response.status_code == 200, response.text
    want = reference(path, window=(40.0, 400.0, function.upper().replace("-", "_")))
    diff = np.abs(_png(response.content).astype(int) - want.astype(int))
    assert diff.max() <= 1


def test_window_replaces_voi_lut_sequence(library: Library) -> None:
    path = "pydicom-data/vlut_04.dcm"
    client, entry = library.store(path)
    response = client.get(f"{instance_url(entry)}/rendered", params={"window": "128,64"}, headers=PNG)
    want = reference(path, window=(128.0, 64.0, "LINEAR"))
    assert np.abs(_png(response.content).astype(int) - want.astype(int)).max() <= 1


def test_region_and_flip_are_exact(library: Library) -> None:
    path = "pydicom-data/693_UNCR.dcm"
    client, entry = library.store(path)
    # 50x40 region from (100,200), flipped left-right, into a 50x40 viewport: no scaling, exact pixels.
    response = client.get(f"{instance_url(entry)}/rendered", params={"viewport": "50,40,100,200,-50,40"},
                          headers=PNG)
    assert response.status_code == 200, response.text
    want = reference(path)[200:240, 100:150][:, ::-1]
    got = _png(response.content)
    assert got.shape == (40, 50)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_viewport_scales_keeping_aspect(library: Library) -> None:
    path = "pydicom-data/US1_UNCR.dcm"  # 640 x 480 RGB
    client, entry = library.store(path)
    response = client.get(f"{instance_url(entry)}/rendered", params={"viewport": "320,320"}, headers=PNG)
    got = _png(response.content)
    assert got.shape == (240, 320, 3)
    want = np.asarray(Image.fromarray(reference(path)).resize((320, 240), Image.Resampling.LANCZOS))
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 8


def test_jpeg_default_is_close_to_reference(library: Library) -> None:
    path = "pydicom-data/693_UNCR.dcm"
    client, entry = library.store(path)
    response = client.get(f"{instance_url(entry)}/rendered")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.mode == "L" and image.size == (512, 512)
    diff = np.abs(np.asarray(image).astype(int) - reference(path).astype(int))
    assert diff.mean() < 1.5
