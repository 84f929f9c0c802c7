"""Reading a stored Part 10 instance once, at ingest: its header and where each frame's bytes lie.

The header (everything but the Pixel Data value) is parsed by pydicom; the Pixel Data element is then
walked by hand, item headers only, so a multi-GB multi-frame instance is never loaded into memory and
every frame can later be served by one (or, for multi-fragment frames, a few) range reads.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from .raw_json import INTEGER_VRS, STRING_VRS, raw_single
from .uids import is_valid_uid

PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF
BIG_ENDIAN = "1.2.840.10008.1.2.2"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
DEFLATED = {"1.2.840.10008.1.2.1.99"}

# One frame as a list of (file offset, length) byte ranges: one range for native data, one per fragment
# for encapsulated data.
FrameRanges = list[tuple[int, int]]


class NotStorable(ValueError):
    """The bytes cannot be stored as an instance. ``status`` is the DICOM failure reason (PS3.4 B.2.3)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# Failure reasons used by ingest (PS3.4 Annex B, PS3.18 10.5.3).
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NOT_AUTHORIZED = 0x0124  # PS3.7 C.5: refused, the caller may not store this (the policy engine's answer)
OUT_OF_RESOURCES = 0xA700
DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
STUDY_UID_MISMATCH = 0xC409  # dcm4chee and Google's value for "StudyInstanceUID does not match the target"


@dataclass
class PixelLayout:
    """Where the pixel data lies in the file."""

    tag: int
    element_offset: int
    value_offset: int
    value_length: int  # for encapsulated data: up to and including the sequence delimiter item
    encapsulated: bool
    frames: list[FrameRanges] | None  # None when frame boundaries cannot be known without decoding


@dataclass
class ParsedInstance:
    header: Dataset  # everything but the pixel data value
    transfer_syntax: str
    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    number_of_frames: int
    pixels: PixelLayout | None
    warnings: list[str] = field(default_factory=list)


def _read_exact(fp: BinaryIO, n: int) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise NotStorable(CANNOT_UNDERSTAND, "the file ends inside the pixel data (truncated file)")
    return data


def _number_of_frames(ds: Dataset) -> int:
    single = raw_single(ds, "NumberOfFrames", INTEGER_VRS)  # the common case, without converting the element
    if single is not None:
        return max(int(single), 1)
    raw = ds.get("NumberOfFrames")
    try:
        n = int(raw) if raw not in (None, "") else 1
    except (TypeError, ValueError):
        return 1
    return max(n, 1)


def _single_int(ds: Dataset, keyword: str) -> int:
    """``int(ds.<keyword>)``, read off the bytes when it can be (raises as that would)."""
    single = raw_single(ds, keyword, INTEGER_VRS)
    return int(single) if single is not None else int(getattr(ds, keyword))


def _native_frames(ds: Dataset, value_offset: int, value_length: int, frames: int) -> list[FrameRanges] | None:
    try:
        rows, cols = _single_int(ds, "Rows"), _single_int(ds, "Columns")
        bits = _single_int(ds, "BitsAllocated")
        samples = raw_single(ds, "SamplesPerPixel", INTEGER_VRS)
        samples = int(samples or 1) if samples is not None else int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    frame_bits = rows * cols * samples * bits
    if frame_bits % 8:  # packed 1-bit frames need not start on a byte boundary
        return None
    frame_bytes = frame_bits // 8
    photometric = raw_single(ds, "PhotometricInterpretation", STRING_VRS)
    if (photometric if photometric is not None else str(ds.get("PhotometricInterpretation", ""))) == "YBR_FULL_422":
        frame_bytes = frame_bytes // 3 * 2
    if frame_bytes == 0 or frame_bytes * frames > value_length:
        return None
    return [[(value_offset + i * frame_bytes, frame_bytes)] for i in range(frames)]


def _starts_frame(fragment_head: bytes) -> bool:
    """Whether a fragment begins a new compressed image (JPEG SOI or a JPEG 2000 codestream)."""
    return fragment_head.startswith(b"\xff\xd8") or fragment_head.startswith(b"\xff\x4f\xff\x51")


def _encapsulated_frames(
    fp: BinaryIO, ds: Dataset, value_offset: int, end_limit: int, frames: int
) -> tuple[list[FrameRanges] | None, int]:
    """Walk the item headers of encapsulated pixel data; return frames and the value's total length."""
    fp.seek(value_offset)
    tag, length = struct.unpack("<2I", _read_exact(fp, 8))
    tag = ((tag & 0xFFFF) << 16) | (tag >> 16)
    if tag != ITEM:
        raise NotStorable(CANNOT_UNDERSTAND, "encapsulated pixel data does not start with a Basic Offset Table item")
    bot_raw = _read_exact(fp, length)
    basic_offsets = list(struct.unpack(f"<{length // 4}I", bot_raw)) if length else []
    first_fragment = fp.tell()

    fragments: list[tuple[int, int, bytes]] = []  # (value offset, length, first bytes)
    while True:
        pos = fp.tell()
        if pos + 8 > end_limit:
            raise NotStorable(CANNOT_UNDERSTAND, "the file ends inside the pixel data (no sequence delimiter)")
        group, elem, length = struct.unpack("<HHI", _read_exact(fp, 8))
        tag = (group << 16) | elem
        if tag == SEQUENCE_DELIMITER:
            break
        if tag != ITEM or length == UNDEFINED_LENGTH:
            raise NotStorable(CANNOT_UNDERSTAND, f"unexpected tag ({group:04X},{elem:04X}) in encapsulated pixel data")
        if pos + 8 + length > end_limit:
            raise NotStorable(CANNOT_UNDERSTAND, "the file ends inside a pixel data fragment (truncated file)")
        head = fp.read(4)
        fragments.append((pos + 8, length, head))
        fp.seek(pos + 8 + length)
    total_length = fp.tell() - value_offset

    if not fragments:
        return [], total_length
    if frames == 1:
        return [[(off, n) for off, n, _ in fragments]], total_length
    if len(fragments) == frames:
        return [[(off, n)] for off, n, _ in fragments], total_length

    extended = ds.get("ExtendedOffsetTable")
    offsets: list[int] | None = None
    if extended is not None and extended.value:
        raw = bytes(extended.value)
        offsets = list(struct.unpack(f"<{len(raw) // 8}Q", raw))
    elif len(basic_offsets) == frames:
        offsets = basic_offsets
    if offsets is not None:
        result: list[FrameRanges] = [[] for _ in offsets]
        for off, n, _ in fragments:
            relative = off - 8 - first_fragment
            index = max(i for i, start in enumerate(offsets) if start <= relative)
            result[index].append((off, n))
        if all(result):
            return result, total_length
        return None, total_length

    grouped: list[FrameRanges] = []
    for off, n, head in fragments:
        if _starts_frame(head) or not grouped:
            grouped.append([])
        grouped[-1].append((off, n))
    return (grouped if len(grouped) == frames else None), total_length


def _locate_pixels(fp: BinaryIO, ds: Dataset, transfer_syntax: str, file_size: int) -> PixelLayout | None:
    element_offset = fp.tell()
    if element_offset >= file_size or transfer_syntax in DEFLATED:
        return None
    head = fp.read(8)
    if len(head) < 8:
        return None
    big = transfer_syntax == BIG_ENDIAN
    # Whether a VR follows the tag is read off the bytes, not the meta: some writers claim explicit VR
    # and write implicit (pydicom copes the same way).
    implicit = not (65 <= head[4] <= 90 and 65 <= head[5] <= 90)
    group, elem = struct.unpack(">HH" if big else "<HH", head[:4])
    tag = (group << 16) | elem
    if tag not in PIXEL_TAGS:
        return None
    if implicit:
        (length,) = struct.unpack("<I", head[4:8])
        value_offset = element_offset + 8
    else:
        value_offset = element_offset + 12
        (length,) = struct.unpack(">I" if big else "<I", _read_exact(fp, 4))
    frames = _number_of_frames(ds)
    if length == UNDEFINED_LENGTH:
        frame_ranges, total = _encapsulated_frames(fp, ds, value_offset, file_size, frames)
        return PixelLayout(tag, element_offset, value_offset, total, True, frame_ranges)
    if value_offset + length > file_size:
        raise NotStorable(
            CANNOT_UNDERSTAND,
            f"the pixel data declares {length} bytes but the file holds only {file_size - value_offset}"
            " (truncated file)",
        )
    native = _native_frames(ds, value_offset, length, frames) if tag == 0x7FE00010 else None
    return PixelLayout(tag, element_offset, value_offset, length, False, native)


def _required_uid(ds: Dataset, keyword: str) -> str:
    value = raw_single(ds, keyword, STRING_VRS)
    if value is None:
        value = ds.get(keyword)
    if value in (None, ""):
        raise NotStorable(CANNOT_UNDERSTAND, f"the data set has no {keyword}")
    text = str(value).strip("\0 ")
    if not is_valid_uid(text):
        raise NotStorable(CANNOT_UNDERSTAND, f"{keyword} {text!r} is not a valid UID")
    return text


# A file's first bytes, read at once and parsed in memory: pydicom asks a file for its position some 70 times
# for a CT header, and each time Python's buffered file makes a system call (lseek) and lets go of the GIL,
# which the other ingest threads of the process take: a third of a worker's system calls and most of its
# thread switches. Headers are almost always far shorter.
HEADER_PREFIX = 64 * 1024


def _dcmread(fp: BinaryIO) -> Dataset:
    try:
        return dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError as exc:
        raise NotStorable(CANNOT_UNDERSTAND, f"not a DICOM Part 10 file: {exc}") from None
    except (ValueError, struct.error, EOFError, OSError, KeyError, NotImplementedError) as exc:
        raise NotStorable(CANNOT_UNDERSTAND, f"the data set cannot be parsed: {exc}") from None


def _read_header(fp: BinaryIO, file_size: int) -> tuple[Dataset, BinaryIO]:
    """The header (all but the pixel data's value) and a stream positioned right after it.

    Parsed from the file's first HEADER_PREFIX bytes in memory when the whole file, or a header ending at a
    pixel data element, lies within them; from the file itself otherwise (a header with large values, or no
    pixel data). Either way the data set is the one pydicom reads from the file.
    """
    if not isinstance(fp, io.BytesIO):
        fp.seek(0)
        head = fp.read(min(file_size, HEADER_PREFIX))
        memory = io.BytesIO(head)
        if len(head) >= file_size:
            return _dcmread(memory), memory  # the whole file: its own answer, errors included
        try:
            ds: Dataset | None = dcmread(memory, stop_before_pixels=True)
        except Exception:  # cut off mid-element, say: the file decides below
            ds = None
        if ds is not None and _at_pixel_tag(head, memory.tell(), ds):
            fp.seek(memory.tell())
            return ds, fp
    fp.seek(0)
    return _dcmread(fp), fp


def _at_pixel_tag(head: bytes, offset: int, ds: Dataset) -> bool:
    """Whether a header read from ``head`` stopped at a pixel data element wholly inside it (not at its end)."""
    if offset + 12 > len(head):
        return False
    big = str(ds.file_meta.get("TransferSyntaxUID", "")).strip("\0 ") == BIG_ENDIAN
    group, elem = struct.unpack(">HH" if big else "<HH", head[offset : offset + 4])
    return ((group << 16) | elem) in PIXEL_TAGS


def parse_instance(fp: BinaryIO, file_size: int) -> ParsedInstance:
    """Parse a Part 10 file from a seekable binary stream positioned at its start."""
    start = fp.read(132)
    if len(start) < 132 or start[128:132] != b"DICM":
        raise NotStorable(
            CANNOT_UNDERSTAND,
            "not a DICOM Part 10 file: the 128-byte preamble and 'DICM' prefix are missing",
        )
    ds, fp = _read_header(fp, file_size)

    meta = ds.file_meta
    transfer_syntax = str(meta.get("TransferSyntaxUID", "")).strip("\0 ")
    if not transfer_syntax:
        raise NotStorable(CANNOT_UNDERSTAND, "the file meta information has no Transfer Syntax UID (0002,0010)")
    if not is_valid_uid(transfer_syntax):
        raise NotStorable(CANNOT_UNDERSTAND, f"Transfer Syntax UID {transfer_syntax!r} is not a valid UID")

    try:
        sop_class = _required_uid(ds, "SOPClassUID")
        sop_instance = _required_uid(ds, "SOPInstanceUID")
        study = _required_uid(ds, "StudyInstanceUID")
        series = _required_uid(ds, "SeriesInstanceUID")
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, NotStorable):
            raise
        raise NotStorable(CANNOT_UNDERSTAND, f"the data set cannot be parsed: {exc}") from None

    warnings: list[str] = []
    media_sop = str(meta.get("MediaStorageSOPInstanceUID", "")).strip("\0 ")
    if media_sop and media_sop != sop_instance:
        warnings.append(
            f"MediaStorageSOPInstanceUID {media_sop} differs from SOPInstanceUID {sop_instance}"
        )
    try:
        pixels = _locate_pixels(fp, ds, transfer_syntax, file_size)
    except struct.error:
        raise NotStorable(CANNOT_UNDERSTAND, "the pixel data element is malformed") from None
    return ParsedInstance(
        header=ds,
        transfer_syntax=str(UID(transfer_syntax)),
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        study_instance_uid=study,
        series_instance_uid=series,
        number_of_frames=_number_of_frames(ds),
        pixels=pixels,
        warnings=warnings,
    )


def parse_bytes(data: bytes) -> ParsedInstance:
    return parse_instance(io.BytesIO(data), len(data))
