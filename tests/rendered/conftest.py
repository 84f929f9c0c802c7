"""An in-process archive holding the shared test files that the rendered tests use, and reference renderings.

The same SOP Instance UID appears in several files (one per encoding), so files are spread over a few
archives ("bins"): each bin holds a UID at most once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from starlette.testclient import TestClient

from dicomweb.app import create_app
from dicomweb.archive import Archive
from dicomweb.settings import load_settings
from tests.conftest import DATA, data_index


@dataclass
class Bin:
    client: TestClient
    archive: Archive
    uids: set[str] = field(default_factory=set)


class Library:
    """Stores each asked-for file once and answers with the client that holds it and its resource URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries = {e["path"]: e for e in data_index()}
        self.bins: list[Bin] = []
        self.placed: dict[str, Bin] = {}

    def _new_bin(self) -> Bin:
        settings = load_settings(data_dir=self.root / f"bin{len(self.bins)}", ingest_processes=0, fsync=False)
        archive = Archive.open(settings)
        client = TestClient(create_app(settings, archive))
        client.__enter__()
        self.bins.append(Bin(client, archive))
        return self.bins[-1]

    def store(self, path: str) -> tuple[TestClient, dict[str, Any]]:
        entry = self.entries[path]
        if path not in self.placed:
            uid = entry["sop_instance_uid"]
            target = next((b for b in self.bins if uid not in b.uids), None) or self._new_bin()
            result = target.archive.ingest.store(target.archive.stage_file(DATA / path))
            assert result.outcome == "stored", (path, result.message)
            target.uids.add(uid)
            self.placed[path] = target
        return self.placed[path].client, entry

    def close(self) -> None:
        for b in self.bins:
            b.client.__exit__(None, None, None)
            b.archive.close()


def instance_url(entry: dict[str, Any]) -> str:
    return (f"/dicom-web/studies/{entry['study_uid']}/series/{entry['series_uid']}"
            f"/instances/{entry['sop_instance_uid']}")


@pytest.fixture(scope="session")
def library(shared_data: Path) -> Iterator[Library]:
    with tempfile.TemporaryDirectory(prefix="rendered-tests-") as tmp:
        lib = Library(Path(tmp))
        yield lib
        lib.close()


def reference(path: str, frame: int = 0, window: tuple[float, float, str] | None = None) -> np.ndarray:
    """A rendering computed independently of the server: pydicom's decoders, Modality LUT and VOI LUT.

    Grayscale VOI output is scaled to 0..255 from the range pydicom maps the window onto (found by pushing
    extreme values through the same window) or from the VOI LUT's bit depth; MONOCHROME1 is inverted.
    A dataset without any VOI is stretched from its minimum to its maximum.
    """
    ds = dcmread(DATA / path)
    arr = ds.pixel_array
    if int(ds.get("NumberOfFrames") or 1) > 1:
        arr = arr[frame]
    photometric = ds.PhotometricInterpretation
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return (rgb >> 8).astype(np.uint8) if rgb.dtype != np.uint8 else rgb
    if arr.ndim == 3:
        bits = int(ds.BitsStored)
        return (arr.astype(np.uint64) >> max(0, bits - 8)).astype(np.uint8)
    if window is not None:
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = window
        if "VOILUTSequence" in ds:
            del ds.VOILUTSequence
    values = apply_modality_lut(arr, ds)
    if "VOILUTSequence" in ds:
        out = apply_voi_lut(values, ds).astype(np.float64)
        unit = out / (2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    elif "WindowCenter" in ds:
        out = apply_voi_lut(values, ds).astype(np.float64)
        low, high = apply_voi_lut(np.array([-1e12, 1e12]), ds).astype(np.float64)
        unit = (out - low) / (high - low)
    else:
        values = values.astype(np.float64)
        unit = (values - values.min()) / (values.max() - values.min())
    result = np.rint(np.clip(unit, 0, 1) * 255).astype(np.uint8)
    return 255 - result if photometric == "MONOCHROME1" else result
