"""One decoded frame of a stored instance: its header and pixel values, as the stored bytes hold them.

Native little-endian frames are read by their byte range alone (the index knows where each frame lies) and
turned into an array without pydicom; everything else (encapsulated, big-endian, 1-bit, YBR 4:2:2, float)
goes through pydicom's decoders, which read only the asked frame where the encoding allows.
"""

from __future__ import annotations

import copy
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import convert_color_space, pixel_array

from ..services.retrieve import RetrieveService, StoredInstance

PIXEL_DATA = 0x7FE00010
NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
DEFLATED = "1.2.840.10008.1.2.1.99"


def has_pixels(inst: StoredInstance) -> bool:
    """Whether the instance may hold an image: ingest does not look inside deflated files, so those may."""
    return inst.pixel_tag is not None or inst.transfer_syntax_uid == DEFLATED


class CannotRender(Exception):
    """The instance has no pixels this server can decode; the message says why."""


@dataclass(frozen=True)
class Frame:
    header: Dataset  # without pixel data
    pixels: np.ndarray  # (rows, cols) or (rows, cols, 3); colour already RGB unless photometric says palette
    photometric: str


class HeaderCache:
    """Parsed headers by file digest: a rendered frame of a series needs its header parsed once, not per view."""

    def __init__(self, entries: int = 512) -> None:
        self._entries = entries
        self._items: OrderedDict[str, Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, retrieve: RetrieveService, inst: StoredInstance) -> Dataset:
        with self._lock:
            found = self._items.get(inst.sha256)
            if found is not None:
                self._items.move_to_end(inst.sha256)
                return found
        with retrieve.open(inst) as fp:
            header = dcmread(fp, stop_before_pixels=True, force=True)
        with self._lock:
            self._items[inst.sha256] = header
            while len(self._items) > self._entries:
                self._items.popitem(last=False)
        return header


def _native(header: Dataset, data: bytes) -> np.ndarray | None:
    """A native little-endian frame as an array, or None where pydicom should do it."""
    bits, stored = int(header.get("BitsAllocated", 0)), int(header.get("BitsStored") or 0)
    rows, cols = int(header.get("Rows", 0)), int(header.get("Columns", 0))
    samples, signed = int(header.get("SamplesPerPixel", 1)), int(header.get("PixelRepresentation", 0)) == 1
    photometric = str(header.get("PhotometricInterpretation", ""))
    if bits not in (8, 16, 32) or not rows or not cols or samples not in (1, 3) or photometric == "YBR_FULL_422":
        return None
    count = rows * cols * samples
    if len(data) < count * bits // 8:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    if samples == 1:
        arr = arr.reshape(rows, cols)
    elif int(header.get("PlanarConfiguration", 0)) == 1:
        arr = arr.reshape(samples, rows, cols).transpose(1, 2, 0)
    else:
        arr = arr.reshape(rows, cols, samples)
    if 0 < stored < bits:  # bits above Bits Stored are not pixel data: mask them, sign-extending signed values
        shift = bits - stored
        arr = (arr << shift) >> shift if signed else arr & np.array((1 << stored) - 1, dtype=dtype)
    if photometric == "YBR_FULL":
        arr = convert_color_space(arr, "YBR_FULL", "RGB")
    return arr


def _photometric(header: Dataset, pixels: np.ndarray) -> str:
    stated = str(header.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3 and stated != "PALETTE COLOR":
        return "RGB"  # pydicom gives YBR_* (and J2K's ICT/RCT) as RGB
    return stated


def decode_frame(retrieve: RetrieveService, headers: HeaderCache, inst: StoredInstance, index: int) -> Frame:
    """Frame ``index`` (0-based) of ``inst``; raises CannotRender when it has no decodable pixels."""
    if not has_pixels(inst):
        raise CannotRender(f"instance {inst.sop_instance_uid} has no pixel data (SOP Class {inst.sop_class_uid})")
    if not 0 <= index < max(1, inst.number_of_frames):
        raise CannotRender(f"instance {inst.sop_instance_uid} has no frame {index + 1}")
    header = headers.get(retrieve, inst)
    pixels: np.ndarray | None = None
    ranges = inst.frame_ranges
    if (inst.pixel_tag == PIXEL_DATA and not inst.encapsulated and ranges is not None and index < len(ranges)
            and inst.transfer_syntax_uid in NATIVE_LE):
        data = b"".join(retrieve.read_range(inst, offset, length) for offset, length in ranges[index])
        pixels = _native(header, data)
    if pixels is None:
        pixels = _decode_with_pydicom(retrieve, inst, index)
    return Frame(_for_frame(header, index), pixels, _photometric(header, pixels))


def _for_frame(header: Dataset, index: int) -> Dataset:
    """Enhanced multi-frame objects keep rescale and window in functional groups: lift this frame's to the top."""
    groups = []
    for keyword, item in (("SharedFunctionalGroupsSequence", 0), ("PerFrameFunctionalGroupsSequence", index)):
        seq = header.get(keyword)
        if seq is not None and len(seq) > item:
            groups.append(seq[item])
    if not groups:
        return header
    lifted = copy.copy(header)
    for group in groups:  # per-frame values override shared ones
        for macro in ("PixelValueTransformationSequence", "FrameVOILUTSequence"):
            seq = group.get(macro)
            if seq is None or len(seq) == 0:
                continue
            for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth", "VOILUTFunction"):
                if keyword in seq[0]:
                    setattr(lifted, keyword, seq[0][keyword].value)
    return lifted


def _decode_with_pydicom(retrieve: RetrieveService, inst: StoredInstance, index: int) -> np.ndarray:
    try:
        with retrieve.open(inst) as fp:
            try:
                return np.asarray(pixel_array(fp, index=index))
            except (ValueError, NotImplementedError, AttributeError, KeyError, TypeError):
                # pydicom's frame reader cannot walk every encoding (deflate, odd files): read it whole.
                fp.seek(0)
                ds = dcmread(io.BytesIO(fp.read()), force=True)
        frames = int(ds.get("NumberOfFrames") or 1)
        whole = np.asarray(ds.pixel_array)
        return whole[index] if frames > 1 else whole
    except CannotRender:
        raise
    except Exception as exc:  # a codec's own exception types vary; all mean "cannot decode these bytes"
        raise CannotRender(
            f"the pixel data of instance {inst.sop_instance_uid} (transfer syntax {inst.transfer_syntax_uid}) "
            f"cannot be decoded: {exc}"
        ) from None
