"""What ingest reads straight off the raw bytes (DICOM JSON values, index columns, the Part 10 layout) equals
what pydicom's conversion gives, exactly: over every file of the shared data and over generated values."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from dicomweb.dicom import json_model
from dicomweb.dicom import part10 as part10_module
from dicomweb.dicom.part10 import NotStorable, parse_bytes
from dicomweb.services import ingest
from dicomweb.services.staging import StagedBlob
from dicomweb.settings import Settings

from ..conftest import data_index, data_path


def both(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fast, reference) JSON of one Part 10 file, each from its own fresh parse (conversion is cached)."""
    out = []
    for fast in (True, False):
        parsed = parse_bytes(data)
        out.append(json_model.header_to_json(
            parsed.header, parsed.study_instance_uid, parsed.series_instance_uid, parsed.sop_instance_uid,
            pixel_tag=None, pixel_vr="", threshold=1024, fast=fast))
    return out[0], out[1]


def test_every_shared_file_encodes_as_pydicom_does() -> None:
    compared = 0
    for entry in data_index():
        path = data_path(entry)
        if not path.is_file():
            continue
        try:
            fast, reference = both(path.read_bytes())
        except NotStorable:
            continue  # the broken files: nothing is stored, nothing encoded
        assert json_model.dumps(fast) == json_model.dumps(reference), entry["path"]
        compared += 1
    if compared == 0:
        pytest.skip("no shared data")
    assert compared > 100


LONG_LENGTH_VRS = {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}


def element(tag: int, vr: str, value: bytes, big_endian: bool) -> bytes:
    """One explicit-VR element written by hand, so the value bytes are exactly the test's (padded to even)."""
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB") else b" "
    order = ">" if big_endian else "<"
    head = struct.pack(f"{order}HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in LONG_LENGTH_VRS:
        return head + b"\0\0" + struct.pack(f"{order}I", len(value)) + value
    return head + struct.pack(f"{order}H", len(value)) + value


def part10(elements: list[tuple[int, str, bytes]], big_endian: bool = False, charset: str | None = None) -> bytes:
    required = [(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.2"), (0x00080018, "UI", b"1.2.3.4"),
                (0x0020000D, "UI", b"1.2.3"), (0x0020000E, "UI", b"1.2.3.5")]
    if charset is not None:
        required.append((0x00080005, "CS", charset.encode()))
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRBigEndian if big_endian else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buffer = DicomBytesIO()
    write_file_meta_info(buffer, meta, enforce_standard=True)
    body = b"".join(element(tag, vr, value, big_endian) for tag, vr, value in sorted(required + elements))
    return b"\0" * 128 + b"DICM" + buffer.getvalue() + body


# Raw byte strings, not Python values: what a modality may really write, padding and oddities included.
TEXTY = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in (0x5C,)) if b else b)
COMPONENTS = st.lists(st.sampled_from([b"1", b"-2", b"+3", b" 4", b"5 ", b"1.5", b"-.5e3", b"", b"x", b"007",
                                      b"1e", b"  ", b"2.", b"NaN"]), min_size=1, max_size=4)
STRINGISH = st.lists(st.sampled_from([b"ABC", b"", b" ", b"A B ", b"\x00", b"\xe9t\xe9", b"\xc3\xa9", b"Z=Y",
                                     b"Doe^John", b"\xff\xfe", b"1.2.840.10008"]), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(
    numbers=COMPONENTS,
    texts=STRINGISH,
    binary=st.binary(max_size=24),
    big_endian=st.booleans(),
    charset=st.sampled_from([None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 6", "ISO_IR 144", "GB18030"]),
)
def test_generated_values_encode_as_pydicom_does(
    numbers: list[bytes], texts: list[bytes], binary: bytes, big_endian: bool, charset: str | None
) -> None:
    joined_numbers = b"\\".join(numbers)
    joined_texts = b"\\".join(texts)
    elements: list[tuple[int, str, bytes]] = [
        (0x00200013, "IS", joined_numbers),
        (0x00280030, "DS", joined_numbers),
        (0x00080060, "CS", joined_texts),
        (0x00080020, "DA", joined_texts),
        (0x00081030, "LO", joined_texts),
        (0x00080081, "ST", joined_texts),
        (0x00100010, "PN", joined_texts),
        (0x00080054, "AE", joined_texts),
        (0x00081155, "UI", joined_texts),
        (0x00280010, "US", binary[: len(binary) // 2 * 2]),
        (0x00189219, "SS", binary[: len(binary) // 2 * 2]),
        (0x00181150, "SL", binary[: len(binary) // 4 * 4]),
        (0x00189087, "FD", binary[: len(binary) // 8 * 8]),
        (0x00181310, "FL", binary[: len(binary) // 4 * 4]),
        (0x00091010, "LO", joined_texts),  # private: always pydicom's
        (0x00420011, "OB", binary),
    ]
    fast, reference = both(part10(elements, big_endian, charset))
    assert json_model.dumps(fast) == json_model.dumps(reference)


# -- what ingest reads off the raw bytes besides the JSON: the index columns and the Part 10 layout --------
def reference_text(ds: Any, keyword: str, limit: int) -> str:
    """The index column text as ingest computed it through pydicom's conversion alone."""
    try:
        value = ds.get(keyword)
    except (ValueError, TypeError):
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()[:limit]


def reference_int(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


TEXT_COLUMNS = [("PatientID", 64), ("IssuerOfPatientID", 64), ("PatientName", 330), ("PatientBirthDate", 8),
                ("PatientSex", 16), ("StudyDate", 8), ("StudyTime", 16), ("AccessionNumber", 64), ("StudyID", 16),
                ("StudyDescription", 64), ("ReferringPhysicianName", 330), ("InstitutionName", 64),
                ("Modality", 16), ("SeriesDescription", 64), ("BodyPartExamined", 16),
                ("PerformedProcedureStepStartDate", 8), ("PerformedProcedureStepStartTime", 16),
                ("BurnedInAnnotation", 16), ("SOPClassUID", 64), ("PhotometricInterpretation", 16)]
INT_COLUMNS = ["InstanceNumber", "SeriesNumber", "Rows", "Columns", "BitsAllocated", "NumberOfFrames",
               "SamplesPerPixel"]


def ingest_view(data: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Everything ingest derives from one file's header: the parse, the instance row (DICOM JSON included),
    the patient, study and series columns. ``fast=False``: through pydicom's conversion alone."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(part10_module, "raw_single", lambda *args: None)
            patch.setattr(ingest, "raw_values", lambda *args: None)
            plain = json_model.header_to_json
            patch.setattr(json_model, "header_to_json", lambda *a, **k: plain(*a, **{**k, "fast": False}))
        parsed = parse_bytes(data)
        service = ingest.IngestService(None, None, Settings())  # type: ignore[arg-type]
        row = service._row(parsed, StagedBlob.from_bytes(data))
        ds = parsed.header
        now = "now"
        return {
            "parsed": (parsed.transfer_syntax, parsed.sop_class_uid, parsed.sop_instance_uid,
                       parsed.study_instance_uid, parsed.series_instance_uid, parsed.number_of_frames,
                       parsed.pixels, parsed.warnings),
            "row": {k: v for k, v in row.items() if k != "created_at"},
            "patient": ingest.patient_columns(ds, now),
            "study": ingest.study_columns(ds, parsed.study_instance_uid, now),
            "series": ingest.series_columns(ds, parsed.series_instance_uid, now),
            "texts": [ingest._text(ds, k, n) for k, n in TEXT_COLUMNS],
            "ints": [ingest._int(ds, k) for k in INT_COLUMNS],
            "others": ingest.other_patient_ids(ds),
        }


def test_every_shared_file_is_indexed_as_through_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    compared = 0
    for entry in data_index():
        path = data_path(entry)
        if not path.is_file():
            continue
        data = path.read_bytes()
        try:
            reference = ingest_view(data, False, monkeypatch)
        except NotStorable:
            with pytest.raises(NotStorable):
                ingest_view(data, True, monkeypatch)
            continue
        assert ingest_view(data, True, monkeypatch) == reference, entry["path"]
        compared += 1
    if compared == 0:
        pytest.skip("no shared data")
    assert compared > 100


def test_index_texts_read_off_the_bytes_equal_pydicom_over_the_shared_data() -> None:
    """The helpers against the old implementation itself (not only against their own pydicom fallback)."""
    for entry in data_index():
        path = data_path(entry)
        if not path.is_file():
            continue
        try:
            fast, plain = parse_bytes(path.read_bytes()).header, parse_bytes(path.read_bytes()).header
        except NotStorable:
            continue
        for keyword, limit in TEXT_COLUMNS:
            assert ingest._text(fast, keyword, limit) == reference_text(plain, keyword, limit), (entry["path"], keyword)
        for keyword in INT_COLUMNS:
            assert ingest._int(fast, keyword) == reference_int(plain, keyword), (entry["path"], keyword)


@settings(max_examples=150, deadline=None)
@given(
    numbers=COMPONENTS,
    texts=STRINGISH,
    big_endian=st.booleans(),
    charset=st.sampled_from([None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 6", "ISO_IR 144", "GB18030"]),
)
def test_generated_index_columns_equal_pydicom(
    numbers: list[bytes], texts: list[bytes], big_endian: bool, charset: str | None
) -> None:
    joined_numbers, joined_texts = b"\\".join(numbers), b"\\".join(texts)
    elements: list[tuple[int, str, bytes]] = [
        (0x00100020, "LO", joined_texts), (0x00100021, "LO", joined_texts), (0x00100010, "PN", joined_texts),
        (0x00100030, "DA", joined_texts), (0x00100040, "CS", joined_texts), (0x00080020, "DA", joined_texts),
        (0x00080030, "TM", joined_texts), (0x00080050, "SH", joined_texts), (0x00200010, "SH", joined_texts),
        (0x00081030, "LO", joined_texts), (0x00080080, "LO", joined_texts), (0x00080060, "CS", joined_texts),
        (0x0008103E, "LO", joined_texts), (0x00280301, "CS", joined_texts), (0x00280004, "CS", joined_texts),
        (0x00200013, "IS", joined_numbers), (0x00200011, "IS", joined_numbers), (0x00280008, "IS", joined_numbers),
    ]
    data = part10(elements, big_endian, charset)
    fast, plain = parse_bytes(data).header, parse_bytes(data).header
    for keyword, limit in TEXT_COLUMNS:
        assert ingest._text(fast, keyword, limit) == reference_text(plain, keyword, limit), keyword
    for keyword in INT_COLUMNS:
        assert ingest._int(fast, keyword) == reference_int(plain, keyword), keyword


@pytest.mark.parametrize("prefix", [200, 4096, 65536, part10_module.HEADER_PREFIX])
def test_headers_read_from_a_prefix_in_memory_equal_those_read_from_the_file(
    prefix: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """part10 parses the header from the file's first bytes when it lies within them, from the file
    otherwise: over every shared file, with prefixes that are too short for most, the same answer."""
    compared = 0
    for entry in data_index():
        path = data_path(entry)
        if not path.is_file():
            continue
        size = path.stat().st_size

        def parsed(limit: int, path: Path = path, size: int = size) -> tuple[Any, ...]:
            monkeypatch.setattr(part10_module, "HEADER_PREFIX", limit)
            try:
                with open(path, "rb") as fp:
                    found = part10_module.parse_instance(fp, size)
            except NotStorable as exc:
                return ("refused", exc.status, str(exc))
            return (found.transfer_syntax, found.sop_instance_uid, found.number_of_frames, found.pixels,
                    found.warnings, json_model.dumps(json_model.header_to_json(
                        found.header, found.study_instance_uid, found.series_instance_uid, found.sop_instance_uid,
                        pixel_tag=None, pixel_vr="", threshold=1024, fast=False)))

        assert parsed(prefix) == parsed(0), entry["path"]  # 0: nothing in memory, all from the file
        compared += 1
    if compared == 0:
        pytest.skip("no shared data")
