"""One frame: decoded from its stored encoding to pixels, encoded from pixels to another transfer syntax.

Decoding is pydicom's (every backend it finds: pylibjpeg, openjpeg, libjpeg, RLE); encoding uses imagecodecs
and pydicom's RLE encoder. Functions here are CPU work: callers run them in a worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, pack_bits
from pydicom.pixels.encoders import RLELosslessEncoder

from . import syntaxes as ts


class NotTranscodable(ValueError):
    """The pixel data cannot be given in the asked transfer syntax; the message says why."""


@dataclass(frozen=True)
class PixelDescription:
    """What a decoder needs to know of a frame, from the instance's header."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int

    @classmethod
    def of(cls, ds: Dataset) -> PixelDescription:
        try:
            return cls(
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
                bits_allocated=int(ds.BitsAllocated),
                bits_stored=int(ds.get("BitsStored", ds.BitsAllocated) or ds.BitsAllocated),
                pixel_representation=int(ds.get("PixelRepresentation", 0) or 0),
                photometric_interpretation=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
                planar_configuration=int(ds.get("PlanarConfiguration", 0) or 0),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise NotTranscodable(f"the instance lacks the image attributes a decoder needs ({exc})") from None

    def options(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "columns": self.columns,
            "samples_per_pixel": self.samples_per_pixel,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": self.pixel_representation,
            "photometric_interpretation": self.photometric_interpretation,
            "planar_configuration": self.planar_configuration,
            "number_of_frames": 1,
            "pixel_keyword": "PixelData",
        }


def decode_frame(stored_syntax: str, frame: bytes, pixels: PixelDescription) -> np.ndarray:
    """The frame's pixels (colour as RGB, the way pydicom's ``pixel_array`` gives them)."""
    source = encapsulate([frame]) if ts.syntax(stored_syntax).encapsulated else frame
    try:
        array, _ = get_decoder(stored_syntax).as_array(source, index=0, **pixels.options())
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise NotTranscodable(f"the stored frame ({stored_syntax}) cannot be decoded here: {exc}") from None
    return np.asarray(array)


def native_bytes(array: np.ndarray, pixels: PixelDescription) -> bytes:
    """Explicit VR Little Endian pixel bytes of one frame (1-bit frames packed as DICOM packs them)."""
    if pixels.bits_allocated == 1:
        return bytes(pack_bits(array))
    if array.dtype.itemsize * 8 != pixels.bits_allocated:
        kind = "i" if pixels.pixel_representation else "u"
        array = array.astype(f"<{kind}{pixels.bits_allocated // 8}")
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def _unsigned(array: np.ndarray, pixels: PixelDescription, what: str) -> np.ndarray:
    if pixels.pixel_representation or array.dtype.kind not in "ub":
        raise NotTranscodable(f"{what} is given for unsigned pixel data only; this image is signed")
    return array


def _encode_rle(array: np.ndarray, pixels: PixelDescription) -> bytes:
    options = {**pixels.options(), "planar_configuration": 0}
    if pixels.samples_per_pixel == 3:
        options["photometric_interpretation"] = "RGB"
    return bytes(RLELosslessEncoder.encode(array, **options))


def encode_frame(array: np.ndarray, target: str, pixels: PixelDescription) -> bytes:
    """One frame in ``target``; raises NotTranscodable when that syntax cannot hold these pixels."""
    if target in (ts.EXPLICIT_LE, ts.IMPLICIT_LE):
        return native_bytes(array, pixels)
    if pixels.bits_allocated == 1 or pixels.bits_allocated > 16:
        raise NotTranscodable(f"{pixels.bits_allocated}-bit images are given uncompressed only")
    try:
        if target == ts.JPEG_BASELINE:
            if array.dtype != np.uint8:
                raise NotTranscodable(
                    f"JPEG baseline holds 8-bit images only; this one has {pixels.bits_stored} bits stored")
            return bytes(imagecodecs.jpeg8_encode(array, level=90, subsampling="422"))
        if target == ts.JPEG_LOSSLESS_SV1:
            data = _unsigned(array, pixels, "JPEG lossless")
            bits = min(max(pixels.bits_stored, 2), 16)
            return bytes(imagecodecs.jpeg8_encode(data, lossless=True, predictor=1, bitspersample=bits))
        if target == ts.JPEG_LS_LOSSLESS:
            return bytes(imagecodecs.jpegls_encode(_unsigned(array, pixels, "JPEG-LS")))
        if target in (ts.J2K_LOSSLESS, ts.J2K):
            return bytes(imagecodecs.jpeg2k_encode(
                array, codecformat="J2K", reversible=target == ts.J2K_LOSSLESS,
                level=None if target == ts.J2K_LOSSLESS else 10, bitspersample=pixels.bits_stored,
                mct=pixels.samples_per_pixel == 3))
        if target == ts.HTJ2K_LOSSLESS:
            return bytes(imagecodecs.htj2k_encode(array, reversible=True))
        if target == ts.RLE:
            return _encode_rle(array, pixels)
    except NotTranscodable:
        raise
    except (imagecodecs.DelayedImportError, RuntimeError, ValueError, TypeError) as exc:
        raise NotTranscodable(f"encoding as {target} failed for this image: {exc}") from None
    raise NotTranscodable(f"the archive cannot encode {target}")


def transcode_frame(stored_syntax: str, frame: bytes, target: str, pixels: PixelDescription) -> bytes:
    """A stored frame in ``target``: stored bytes when nothing changes, else decoded and encoded."""
    little = (ts.EXPLICIT_LE, ts.IMPLICIT_LE)
    if (target == stored_syntax and stored_syntax != ts.EXPLICIT_BE) or (target in little and stored_syntax in little):
        return frame
    return encode_frame(decode_frame(stored_syntax, frame, pixels), target, pixels)
