"""Find where the pixel data value sits in a Part 10 file, so it can be stored apart from the header.

The file is cut into ``head | frame blocks | tail``: frame blocks are contiguous byte ranges of the
pixel data value (one per native frame, or the items of one encapsulated frame), and head/tail are every
other byte, kept verbatim. :func:`analyze` returns ``None`` whenever that cut is not provably safe
(deflated syntax, unparsable file, lengths that run past the end...), and the caller then stores the
whole file as an opaque blob instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

DEFLATED = "1.2.840.10008.1.2.1.99"
PIXEL_TAGS = {(0x7FE0, 0x0010), (0x7FE0, 0x0008), (0x7FE0, 0x0009)}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"UC", b"UR", b"UT", b"SQ"}
_ITEM, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
_UNDEFINED = 0xFFFFFFFF
_MAX_ITEMS = 1_000_000


@dataclass
class Layout:
    """Where the pieces of one Part 10 file are (absolute offsets in the source)."""

    sop_instance_uid: str
    size: int
    pixel_tag_offset: int  # first byte of the Pixel Data element (== size when there is none)
    value_end: int  # first byte after the whole element (sequence delimiter included)
    # "native": one block per frame, coded by the frame codec when ``dtype`` is set, else zstd;
    # "encaps": one block per frame holding its items; "bits": one block of packed bits for all frames;
    # "encaps_all": fragments could not be assigned to frames, one block holds them all;
    # "none": no pixel data.
    mode: str = "none"
    nframes: int = 0
    blocks: list[tuple[int, int]] = field(default_factory=list)  # [start, end) per stored block
    dtype: str | None = None  # numpy dtype *with byte order* of native frames a codec may code
    shape: tuple[int, ...] = ()  # frame shape given to the codec: (rows, cols) or (rows, cols, 3)
    planar: bool = False  # stored colour-by-plane (3, rows, cols): transposed for the codec
    frame_bits: int = 0  # "bits" mode: bits per frame

    @property
    def frames_start(self) -> int:
        return self.blocks[0][0] if self.blocks else self.value_end

    @property
    def frames_end(self) -> int:
        return self.blocks[-1][1] if self.blocks else self.value_end


def _read_exact(f: BinaryIO, offset: int, n: int) -> bytes:
    f.seek(offset)
    data = f.read(n)
    if len(data) != n:
        raise ValueError("short read")
    return data


def analyze(f: BinaryIO, start: int, size: int) -> Layout | None:
    """Describe the file occupying ``f[start:start+size]``; ``None`` means "store it opaque"."""
    try:
        f.seek(start)
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        tag_offset = f.tell() - start
    except (InvalidDicomError, ValueError, KeyError, TypeError, EOFError, OSError, struct.error):
        return None
    uid = str(ds.get("SOPInstanceUID", "") or ds.file_meta.get("MediaStorageSOPInstanceUID", ""))
    tsyntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if not uid or tsyntax == DEFLATED:
        return None
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return None
    try:
        return _locate_pixels(f, start, size, tag_offset, ds, uid, bool(implicit), bool(little))
    except (ValueError, TypeError, struct.error, OSError, AttributeError):
        return None


def _locate_pixels(
    f: BinaryIO,
    start: int,
    size: int,
    tag_offset: int,
    ds: pydicom.Dataset,
    uid: str,
    implicit: bool,
    little: bool,
) -> Layout | None:
    if tag_offset >= size:
        return Layout(uid, size, size, size)
    e = "<" if little else ">"
    head = _read_exact(f, start + tag_offset, min(12, size - tag_offset))
    group, elem = struct.unpack_from(f"{e}HH", head)
    if (group, elem) not in PIXEL_TAGS:
        return None
    # Some files say explicit VR but are written implicit (pydicom copes); trust the bytes.
    if implicit or head[4:6] not in _LONG_VRS:
        (length,) = struct.unpack_from(f"{e}I", head, 4)
        value_offset = tag_offset + 8
    else:
        (length,) = struct.unpack_from(f"{e}I", head, 8)
        value_offset = tag_offset + 12
    if length == _UNDEFINED:
        if (group, elem) != (0x7FE0, 0x0010):
            return None
        return _encapsulated(f, start, size, tag_offset, value_offset, ds, uid)
    value_end = value_offset + length
    if value_end > size:
        return None
    layout = Layout(uid, size, tag_offset, value_end, mode="native")
    if (group, elem) != (0x7FE0, 0x0010):
        # float/double pixel data: frames of 4/8-byte samples, kept as zstd-coded bytes
        item = 4 if elem == 0x0008 else 8
        return _native(layout, ds, value_offset, length, item * 8, little, codec_ok=False)
    bits = int(ds.get("BitsAllocated", 0) or 0)
    return _native(layout, ds, value_offset, length, bits, little, codec_ok=True)


def _native(
    layout: Layout,
    ds: pydicom.Dataset,
    value_offset: int,
    length: int,
    bits: int,
    little: bool,
    *,
    codec_ok: bool,
) -> Layout | None:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    nframes = _number_of_frames(ds)
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if rows <= 0 or cols <= 0 or bits <= 0 or length == 0:
        # no usable geometry: keep the value with the header (it is still byte exact)
        layout.mode, layout.nframes = "none", 0
        return layout
    if photometric.endswith("_422"):
        frame_bits = rows * cols * 2 * bits  # 2 samples per pixel on average (Y Y Cb Cr)
    else:
        frame_bits = rows * cols * spp * bits
    if frame_bits * nframes > length * 8:
        return None  # value shorter than its frames: cannot cut safely
    layout.nframes = nframes
    if frame_bits % 8:
        # packed 1-bit frames that do not end on a byte: store all frames as one block
        nbytes = (frame_bits * nframes + 7) // 8
        layout.mode, layout.frame_bits = "bits", frame_bits
        layout.blocks = [(value_offset, value_offset + nbytes)]
        return layout
    fsize = frame_bits // 8
    layout.blocks = [(value_offset + i * fsize, value_offset + (i + 1) * fsize) for i in range(nframes)]
    if codec_ok and bits in (8, 16) and spp in (1, 3) and not photometric.endswith("_422"):
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        layout.dtype = np.dtype(f"{'<' if little else '>'}{'i' if signed else 'u'}{bits // 8}").str
        layout.shape = (rows, cols) if spp == 1 else (rows, cols, 3)
        layout.planar = spp == 3 and int(ds.get("PlanarConfiguration", 0) or 0) == 1
    return layout


def _number_of_frames(ds: pydicom.Dataset) -> int:
    try:
        n = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        n = 1
    return max(n, 1)


def _encapsulated(
    f: BinaryIO, start: int, size: int, tag_offset: int, value_offset: int, ds: pydicom.Dataset, uid: str
) -> Layout | None:
    items: list[tuple[int, int]] = []  # (item start, item end) including the 8-byte item header
    pos = value_offset
    while True:
        if pos + 8 > size or len(items) > _MAX_ITEMS:
            return None
        group, elem, length = struct.unpack("<HHI", _read_exact(f, start + pos, 8))
        if (group, elem) == _SEQ_END:
            value_end = pos + 8
            break
        if (group, elem) != _ITEM or length == _UNDEFINED or pos + 8 + length > size:
            return None
        items.append((pos, pos + 8 + length))
        pos += 8 + length
    if not items:
        return None
    bot, fragments = items[0], items[1:]
    layout = Layout(uid, size, tag_offset, value_end, mode="encaps", nframes=_number_of_frames(ds))
    if not fragments:
        layout.mode, layout.nframes = "none", 0
        return layout
    groups = _group_fragments(f, start, bot, fragments, layout.nframes, ds)
    if groups is None:
        layout.mode = "encaps_all"
        layout.blocks = [(fragments[0][0], fragments[-1][1])]
    else:
        layout.blocks = groups
    return layout


def _group_fragments(
    f: BinaryIO,
    start: int,
    bot: tuple[int, int],
    fragments: list[tuple[int, int]],
    nframes: int,
    ds: pydicom.Dataset,
) -> list[tuple[int, int]] | None:
    """Assign fragments to frames the way DICOM PS3.5 A.4 allows; ``None`` if it is ambiguous."""
    first = fragments[0][0]
    if nframes == 1:
        return [(first, fragments[-1][1])]
    if len(fragments) == nframes:
        return list(fragments)
    offsets: list[int] = []
    if bot[1] - bot[0] > 8:
        raw = _read_exact(f, start + bot[0] + 8, bot[1] - bot[0] - 8)
        offsets = list(struct.unpack(f"<{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
    elif "ExtendedOffsetTable" in ds:
        raw = bytes(ds.ExtendedOffsetTable)
        offsets = list(struct.unpack(f"<{len(raw) // 8}Q", raw[: len(raw) // 8 * 8]))
    starts = {s - first for s, _ in fragments}
    if len(offsets) == nframes and offsets[0] == 0 and all(o in starts for o in offsets):
        bounds = [first + o for o in offsets] + [fragments[-1][1]]
        return [(bounds[i], bounds[i + 1]) for i in range(nframes)]
    # Last resort: a fragment that opens with a JPEG/J2K/JP2 start marker begins a new frame.
    begins = [s for s, e in fragments if e - s >= 12 and _starts_codestream(_read_exact(f, start + s + 8, 4))]
    if len(begins) == nframes and begins[0] == first:
        bounds = [*begins, fragments[-1][1]]
        return [(bounds[i], bounds[i + 1]) for i in range(nframes)]
    return None


def _starts_codestream(head: bytes) -> bool:
    return head[:2] in (b"\xff\xd8", b"\xff\x4f") or head == b"\x00\x00\x00\x0c"
