"""Corruption is always detected, and the container works on any seekable file object."""

from __future__ import annotations

import io
from pathlib import Path

import fsspec
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicomweb.backends.container import (
    ContainerCorruptError,
    ContainerError,
    InstanceNotFoundError,
    SeriesContainer,
    pack_series,
)
from dicomweb.backends.container.format import FOOTER, FrameEntry, decode_index

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _packed(paths: list[Path], codec: str = "auto") -> bytes:
    buf = io.BytesIO()
    pack_series(paths, buf, codec=codec)
    return buf.getvalue()


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[str, bytes]]:
    from container_helpers import make_series

    paths = make_series(tmp_path_factory.mktemp("series"), count=5)
    originals = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p.read_bytes() for p in paths}
    return _packed(paths, codec="interslice"), originals


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_byte_flip_is_detected(packed: tuple[bytes, dict[str, bytes]], data: st.DataObject) -> None:
    blob, originals = packed
    pos = data.draw(st.integers(0, len(blob) - 1))
    flip = data.draw(st.integers(1, 255))
    damaged = bytearray(blob)
    damaged[pos] ^= flip
    try:
        container = SeriesContainer.open(io.BytesIO(bytes(damaged)))
    except ContainerCorruptError:
        return
    assert not container.verify().ok
    for uid, original in originals.items():  # every read either fails loudly or is exact
        try:
            assert container.read_instance(uid) == original
        except ContainerCorruptError:
            pass


def test_frame_corruption_names_instance_and_frame(packed: tuple[bytes, dict[str, bytes]]) -> None:
    blob, _originals = packed
    container = SeriesContainer.open(io.BytesIO(blob))
    uid = container.instance_uids()[2]
    meta = next(m for m in decode_index(_index_bytes(blob))["instances"] if m["uid"] == uid)
    block = FrameEntry.from_json(meta["frames"][0]).block
    damaged = bytearray(blob)
    damaged[block.offset + block.length // 2] ^= 0x40  # container starts at byte 0
    bad = SeriesContainer.open(io.BytesIO(bytes(damaged)))
    with pytest.raises(ContainerCorruptError) as err:
        bad.read_frame(uid, 1)
    assert err.value.sop_instance_uid == uid and err.value.frame == 1
    with pytest.raises(ContainerCorruptError):
        bad.read_instance(uid)
    report = bad.verify()
    assert not report.ok and any(e.sop_instance_uid == uid for e in report.errors)
    assert bad.read_header(uid) == container.read_header(uid)  # header blocks are untouched


def _index_bytes(blob: bytes) -> bytes:
    offset, length, *_ = FOOTER.unpack(blob[-FOOTER.size :])
    return blob[offset : offset + length]


def test_fsspec_file_and_frame_access(series: list[Path]) -> None:
    fs = fsspec.filesystem("memory")
    with fs.open("/c/series.dcms", "wb") as out:
        report = pack_series(series, out)
    assert report.codec in report.trial_sizes
    with fs.open("/c/series.dcms", "rb") as f:
        container = SeriesContainer.open(f)
        for path in series:
            ds = pydicom.dcmread(path)
            assert container.read_frame(ds.SOPInstanceUID, 1) == ds.PixelData
            assert container.read_instance(ds.SOPInstanceUID) == path.read_bytes()
        assert container.verify().ok


def test_container_inside_a_larger_file(series: list[Path]) -> None:
    buf = io.BytesIO(b"prefix bytes")
    buf.seek(0, io.SEEK_END)
    pack_series(series, buf, codec="jpegls")
    container = SeriesContainer.open(io.BytesIO(buf.getvalue()))
    assert container.verify().ok and len(container.instance_uids()) == len(series)


class _Stream(io.RawIOBase):
    """A forward-only stream (like an HTTP body)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(len(b))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_file_objects_and_streams(series: list[Path]) -> None:
    sources = [io.BytesIO(series[0].read_bytes()), _Stream(series[1].read_bytes()), series[2]]
    buf = io.BytesIO()
    report = pack_series(sources, buf)  # type: ignore[arg-type]
    assert report.instances == 3
    container = SeriesContainer.open(io.BytesIO(buf.getvalue()))
    for path in series[:3]:
        uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert container.read_instance(uid) == path.read_bytes()


def test_conflicting_duplicate_uid_is_refused(series: list[Path], tmp_path: Path) -> None:
    ds = pydicom.dcmread(series[0])
    ds.PatientName = "Other^Name"
    other = tmp_path / "conflict.dcm"
    ds.save_as(other)
    with pytest.raises(ContainerError):
        pack_series([series[0], other], io.BytesIO())
    report = pack_series([series[0], series[0]], io.BytesIO())  # identical copies collapse
    assert report.instances == 1


def test_missing_instance_and_frame(packed: tuple[bytes, dict[str, bytes]]) -> None:
    container = SeriesContainer.open(io.BytesIO(packed[0]))
    with pytest.raises(InstanceNotFoundError):
        container.read_instance("1.2.3")
    with pytest.raises(InstanceNotFoundError):
        container.read_frame(container.instance_uids()[0], 2)


def test_not_a_container() -> None:
    with pytest.raises(ContainerCorruptError):
        SeriesContainer.open(io.BytesIO(b"\0" * 100))
