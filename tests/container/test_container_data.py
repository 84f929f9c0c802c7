"""Every valid file of the shared data set round-trips byte for byte, alone and with its series."""

from __future__ import annotations

import io
import itertools
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pydicom
import pytest
from container_helpers import DATA_DIR, VALID, needs_data
from pydicom.encaps import generate_frames

from dicomweb.backends.container import SeriesContainer, pack_series
from dicomweb.plugins.codecs import available_codecs

pytestmark = [needs_data, pytest.mark.filterwarnings("ignore::UserWarning")]

# Single files rotate through the codecs so each one meets real data; series use "auto".
SINGLE_CODECS = [
    c for c in ("jpegls", "htj2k", "jpegxl", "ffv1", "zstd", "gzip", "interslice", "j2k") if c in available_codecs()
]


def _series_groups() -> list[list[dict[str, Any]]]:
    """Group by series; a SOP Instance UID stored in several encodings goes to separate packs."""
    by_series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in VALID:
        by_series[entry["series_uid"]].append(entry)
    groups: list[list[dict[str, Any]]] = []
    for entries in by_series.values():
        packs: list[list[dict[str, Any]]] = []
        for entry in sorted(entries, key=lambda e: e["path"]):
            home = next((p for p in packs if all(x["sop_instance_uid"] != entry["sop_instance_uid"] for x in p)), None)
            if home is None:
                packs.append(home := [])
            home.append(entry)
        groups.extend(p for p in packs if len(p) > 1)
    return groups


def _original_frames(path: Path) -> list[bytes]:
    ds = pydicom.dcmread(path, force=True)
    if "PixelData" not in ds or not ds.get("Rows"):
        return []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    value = bytes(ds.PixelData)
    if ds["PixelData"].is_undefined_length:
        return list(generate_frames(value, number_of_frames=n))
    bits = int(ds.BitsAllocated)
    size = ds.Rows * ds.Columns * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    if "_422" in str(ds.get("PhotometricInterpretation", "")):
        size = ds.Rows * ds.Columns * 2 * bits // 8
    if bits == 1 or size * n > len(value):
        return []
    return [value[i * size : (i + 1) * size] for i in range(n)]


def _check(entries: list[dict[str, Any]], codec: str) -> None:
    paths = [DATA_DIR / e["path"] for e in entries]
    buf = io.BytesIO()
    report = pack_series(paths, buf, codec=codec)
    assert report.instances == len(paths) and report.bytes_out == len(buf.getvalue())
    container = SeriesContainer.open(io.BytesIO(buf.getvalue()))
    assert sorted(container.instance_uids()) == sorted(e["sop_instance_uid"] for e in entries)
    rnd = random.Random(0)
    for entry, path in zip(entries, paths, strict=True):
        uid = entry["sop_instance_uid"]
        assert container.read_instance(uid) == path.read_bytes()
        header = pydicom.dcmread(io.BytesIO(container.read_header(uid)), force=True)
        assert "PixelData" not in header
        frames = _original_frames(path)
        for number in sorted(rnd.sample(range(1, len(frames) + 1), min(3, len(frames)))):
            got = container.read_frame(uid, number)
            # encapsulated frames may end in a padding byte pydicom keeps or strips
            assert got == frames[number - 1] or got.rstrip(b"\0") == frames[number - 1].rstrip(b"\0")
    assert container.verify().ok


@pytest.mark.parametrize("entries", _series_groups(), ids=lambda g: f"{g[0]['path']}+{len(g) - 1}")
def test_series_round_trip(entries: list[dict[str, Any]]) -> None:
    _check(entries, "auto")


@pytest.mark.parametrize(
    ("entry", "codec"),
    list(zip(VALID, itertools.cycle(SINGLE_CODECS), strict=False)),
    ids=lambda v: v["path"] if isinstance(v, dict) else v,
)
def test_single_file_round_trip(entry: dict[str, Any], codec: str) -> None:
    _check([entry], codec)
