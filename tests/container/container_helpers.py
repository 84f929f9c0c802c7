"""Helpers for the container tests: the shared data set and a small synthetic series."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = Path(os.environ.get("DICOMWEB_TEST_DATA", REPO_ROOT / ".." / "shared" / "data")).resolve()


def load_index() -> list[dict[str, Any]]:
    index = DATA_DIR / "INDEX.json"
    if not index.is_file():
        return []
    return [e for e in json.loads(index.read_text()) if e.get("valid")]


VALID = load_index()
needs_data = pytest.mark.skipif(not VALID, reason=f"no test data at {DATA_DIR}")


def make_series(directory: Path, count: int = 6, seed: int = 0) -> list[Path]:
    """``count`` CT slices derived from pydicom's CT_small.dcm, each with its own UID and pixels."""
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    rng = np.random.default_rng(seed)
    base = template.pixel_array.astype(np.int16)
    series_uid = generate_uid()
    paths = []
    for i in range(count):
        ds = copy.deepcopy(template)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        pixels = base + rng.integers(-8, 8, base.shape).astype(np.int16) + i
        ds.PixelData = pixels.astype("<i2").tobytes()
        path = directory / f"ct{i:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
