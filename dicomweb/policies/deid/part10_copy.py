"""De-identifying a stored Part 10 file into a stream: a new header, then the original Pixel Data bytes copied.

The header (everything before Pixel Data) is parsed, de-identified and written by pydicom; the Pixel Data
element is re-framed for the output encoding and its value copied from the source in chunks, so a large
multi-frame instance is never held in memory. Elements after Pixel Data (trailing padding, digital
signatures: both removed by the profile) are dropped.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import BinaryIO

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomweb.dicom.part10 import BIG_ENDIAN, DEFLATED, IMPLICIT_LITTLE, UNDEFINED_LENGTH, PixelLayout, parse_instance

CHUNK = 1 << 20
_PIXEL_VRS = {0x7FE00008: b"OF", 0x7FE00009: b"OD"}


def _pixel_vr(source: BinaryIO, layout: PixelLayout, header: Dataset) -> bytes:
    source.seek(layout.element_offset + 4)
    written = source.read(2)
    if written in (b"OB", b"OW", b"OF", b"OD", b"UN"):
        return written
    if layout.tag in _PIXEL_VRS:
        return _PIXEL_VRS[layout.tag]
    return b"OB" if layout.encapsulated or int(header.get("BitsAllocated", 8) or 8) <= 8 else b"OW"


def _element_header(transfer_syntax: str, layout: PixelLayout, vr: bytes) -> bytes:
    group, element = layout.tag >> 16, layout.tag & 0xFFFF
    length = UNDEFINED_LENGTH if layout.encapsulated else layout.value_length
    if transfer_syntax == IMPLICIT_LITTLE:
        return struct.pack("<HHI", group, element, length)
    order = ">" if transfer_syntax == BIG_ENDIAN else "<"
    return struct.pack(f"{order}HH", group, element) + vr + b"\0\0" + struct.pack(f"{order}I", length)


def _copy(source: BinaryIO, sink: BinaryIO, offset: int, length: int) -> None:
    source.seek(offset)
    left = length
    while left:
        block = source.read(min(CHUNK, left))
        if not block:
            raise ValueError("the stored file ends inside its pixel data")
        sink.write(block)
        left -= len(block)


def _write(ds: Dataset, sink: BinaryIO) -> None:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    sink.write(buffer.getvalue())


def copy_deidentified(source: BinaryIO, sink: BinaryIO, deidentify: Callable[[Dataset], Dataset]) -> None:
    source.seek(0, io.SEEK_END)
    size = source.tell()
    source.seek(0)
    parsed = parse_instance(source, size)
    if parsed.transfer_syntax in DEFLATED:  # the pixel data lies inside the deflated stream: read it whole
        source.seek(0)
        _write(deidentify(dcmread(source)), sink)
        return
    header = deidentify(parsed.header)
    _write(header, sink)
    layout = parsed.pixels
    if layout is None:
        return
    sink.write(_element_header(parsed.transfer_syntax, layout, _pixel_vr(source, layout, parsed.header)))
    _copy(source, sink, layout.value_offset, layout.value_length)
