"""Files written without the 128-byte preamble (pydicom's, so dicomweb-client's, for a data set made in
memory) are completed with it; everything after it is stored exactly as sent."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from dicomweb.dicom.file_meta import PREAMBLE
from dicomweb.services.staging import BlobSpooler
from tests.conftest import start_server

CT = "pydicom-test-files/CT_small.dcm"


def _without_preamble(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    ds.preamble = None
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds)
    data = buffer.getvalue()
    assert data[:2] == b"\x02\x00"  # starts with the File Meta Information group
    return data


@pytest.mark.parametrize("chunk", [1, 7, 131, 132, 4096, 1 << 20])
def test_spooler_completes_the_preamble_in_any_chunking(tmp_path: Path, shared_data: Path, chunk: int) -> None:
    data = _without_preamble(shared_data / CT)
    spool = BlobSpooler(tmp_path, memory_limit=1000)  # past it: spooled to a file
    for at in range(0, len(data), chunk):
        spool.write(memoryview(data)[at:at + chunk])
    blob = spool.finish()
    with blob.open() as fp:
        assert fp.read() == PREAMBLE + data
    assert blob.size == len(PREAMBLE) + len(data)


@pytest.mark.parametrize("data", [
    b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL",  # a real preamble: unchanged
    b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100",  # a data set without file meta: left for the parser to refuse
    b"\x02\x00",  # too short to tell
    b"",
])
def test_other_beginnings_are_left_alone(tmp_path: Path, data: bytes) -> None:
    spool = BlobSpooler(tmp_path, memory_limit=1 << 20)
    for at in range(len(data)):
        spool.write(data[at:at + 1])
    blob = spool.finish()
    assert blob.data == data


def test_dicomweb_client_stores_a_dataset_made_in_memory(tmp_path: Path, shared_data: Path) -> None:
    ds = pydicom.dcmread(shared_data / CT)
    ds.preamble = None  # as a data set built by an application (highdicom, an AI pipeline) has none
    sent = _without_preamble(shared_data / CT)
    server = start_server(tmp_path / "data", {"DICOMWEB_AUTH": "off"})
    try:
        client = DICOMwebClient(server.url)
        response = client.store_instances([ds])
        assert len(response.ReferencedSOPSequence) == 1
        assert not response.get("FailedSOPSequence")
        raw = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert raw.PixelData == ds.PixelData
        # The archive's copy: the completed preamble, then the bytes exactly as the client sent them.
        stored = list((tmp_path / "data").rglob(f"{ds.SOPInstanceUID}.*.dcm"))
        assert len(stored) == 1 and stored[0].read_bytes() == PREAMBLE + sent
    finally:
        server.stop()
