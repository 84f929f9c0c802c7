"""A whole stored instance rewritten in another transfer syntax (a Part 10 file in memory).

Uncompressed targets keep every attribute and change only the encoding; compressed targets encode frame by
frame with ``codec.encode_frame`` and fix the attributes the new encoding implies (PS3.5 8.2: photometric
interpretation, planar configuration, lossy compression flags). The SOP Instance UID is kept: a viewer asked
for this instance, and a transcoded copy is not stored.
"""

from __future__ import annotations

import io
from typing import BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from . import syntaxes as ts
from .codec import NotTranscodable, PixelDescription, encode_frame, native_bytes

PIXEL_DATA = 0x7FE00010


def _frames(ds: Dataset) -> np.ndarray:
    """All frames decoded, first axis the frame, colour as RGB."""
    try:
        array = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise NotTranscodable(f"the stored pixel data cannot be decoded here: {exc}") from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    return array if frames > 1 else array[np.newaxis, ...]


def _to_native(ds: Dataset, stored: str) -> None:
    """Pixel data as uncompressed little endian bytes, in place."""
    if PIXEL_DATA not in ds or stored in (ts.EXPLICIT_LE, ts.IMPLICIT_LE, ts.DEFLATED_LE):
        return
    if ts.syntax(stored).encapsulated:
        try:
            ds.decompress(generate_instance_uid=False)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
            raise NotTranscodable(f"the stored pixel data cannot be decoded here: {exc}") from None
        return
    # Big endian: the decoded values written back little endian.
    pixels = PixelDescription.of(ds)
    ds.PixelData = b"".join(native_bytes(frame, pixels) for frame in _frames(ds))
    ds["PixelData"].VR = "OB" if pixels.bits_allocated <= 8 else "OW"


def _photometric_after(target: str, pixels: PixelDescription) -> str:
    if pixels.samples_per_pixel != 3:
        return pixels.photometric_interpretation
    if target == ts.JPEG_BASELINE:
        return "YBR_FULL_422"
    if target in (ts.J2K_LOSSLESS, ts.HTJ2K_LOSSLESS):
        return "YBR_RCT"
    if target == ts.J2K:
        return "YBR_ICT"
    return "RGB"


def _compress(ds: Dataset, target: str) -> None:
    if PIXEL_DATA not in ds:
        return
    pixels = PixelDescription.of(ds)
    encoded = [encode_frame(frame, target, pixels) for frame in _frames(ds)]
    ds.PixelData = encapsulate(encoded, has_bot=len(encoded) > 1)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if pixels.samples_per_pixel == 3:
        ds.PhotometricInterpretation = _photometric_after(target, pixels)
        ds.PlanarConfiguration = 0
    if not ts.syntax(target).lossless:
        ds.LossyImageCompression = "01"


def transcode_instance(fp: BinaryIO, stored: str, target: str) -> bytes:
    """The instance as a Part 10 file in ``target``."""
    try:
        ds = dcmread(fp, force=False)
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise NotTranscodable(f"the stored instance cannot be read for transcoding: {exc}") from None
    syntax = ts.syntax(target)
    if not syntax.encodable:
        raise NotTranscodable(f"the archive cannot write transfer syntax {target}")
    _to_native(ds, stored)
    if syntax.encapsulated:
        if PIXEL_DATA not in ds:
            raise NotTranscodable(f"the instance has no pixel data to compress as {target}")
        _compress(ds, target)
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    little = target != ts.EXPLICIT_BE
    dcmwrite(out, ds, implicit_vr=target == ts.IMPLICIT_LE, little_endian=little, enforce_file_format=True)
    return out.getvalue()
