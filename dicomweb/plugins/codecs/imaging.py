"""Image codecs from imagecodecs: JPEG-LS (CharLS), JPEG 2000 and HTJ2K (OpenJPEG), JPEG XL (libjxl).

All are run in their lossless modes on unsigned samples; signed frames are mapped with
:func:`to_unsigned` first because CharLS and libjxl accept unsigned input only, and doing it for all
four keeps their inputs identical (and signed J2K gains nothing measurable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .base import (
    CodecError,
    CodecUnavailableError,
    FrameCodec,
    check_decoded,
    from_unsigned,
    to_unsigned,
)

JPEGXL_EFFORT = 3  # effort >3 costs several times the encode time for ~1-3 % on CT/MR frames


def _imagecodecs() -> Any:
    try:
        import imagecodecs
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CodecUnavailableError("imagecodecs is not installed") from exc
    return imagecodecs


class _ImagecodecsCodec(FrameCodec):
    """Shared plumbing: capability probe, sign mapping and strict shape/dtype checks."""

    feature = ""  # imagecodecs attribute whose ``.available`` says the codec was built in

    def available(self) -> bool:
        try:
            ic = _imagecodecs()
        except CodecUnavailableError:
            return False
        probe = getattr(ic, self.feature.upper(), None)
        return bool(getattr(probe, "available", False))

    def _encoder(self) -> Callable[[np.ndarray], bytes]:
        raise NotImplementedError

    def _decoder(self) -> Callable[[bytes], np.ndarray]:
        return getattr(_imagecodecs(), f"{self.feature}_decode")  # type: ignore[no-any-return]

    def encode(self, frame: np.ndarray) -> bytes:
        self._check_encodable(frame)
        try:
            return bytes(self._encoder()(to_unsigned(frame)))
        except Exception as exc:  # imagecodecs raises its own per-codec error types
            raise CodecError(f"{self.name}: {exc}") from exc

    def decode(self, data: bytes, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        if not self.available():
            raise CodecUnavailableError(f"codec {self.name!r} is not available")
        try:
            arr = np.asarray(self._decoder()(data))
        except Exception as exc:
            raise CodecError(f"{self.name}: {exc}") from exc
        unsigned = np.dtype(f"u{np.dtype(dtype).itemsize}")
        check_decoded(arr, shape, unsigned, self.name)
        return from_unsigned(arr, dtype)


class JpegLsCodec(_ImagecodecsCodec):
    """JPEG-LS lossless (near=0) via CharLS."""

    name = "jpegls"
    feature = "jpegls"

    def _encoder(self) -> Callable[[np.ndarray], bytes]:
        ic = _imagecodecs()
        return lambda a: ic.jpegls_encode(a, level=0)  # type: ignore[no-any-return]


class Jpeg2kCodec(_ImagecodecsCodec):
    """JPEG 2000 lossless (reversible 5/3 wavelet, reversible colour transform) via OpenJPEG."""

    name = "j2k"
    feature = "jpeg2k"

    def _encoder(self) -> Callable[[np.ndarray], bytes]:
        ic = _imagecodecs()
        return lambda a: ic.jpeg2k_encode(  # type: ignore[no-any-return]
            a, level=0, reversible=True, codecformat="j2k", numthreads=1
        )


class Htj2kCodec(_ImagecodecsCodec):
    """High-Throughput JPEG 2000 lossless (Part 15), via imagecodecs' OpenJPH/OpenJPEG build."""

    name = "htj2k"
    feature = "htj2k"

    def _encoder(self) -> Callable[[np.ndarray], bytes]:
        ic = _imagecodecs()
        return lambda a: ic.htj2k_encode(a, level=0, reversible=True)  # type: ignore[no-any-return]


class JpegXlCodec(_ImagecodecsCodec):
    """JPEG XL lossless (modular mode) via libjxl."""

    name = "jpegxl"
    feature = "jpegxl"

    def _encoder(self) -> Callable[[np.ndarray], bytes]:
        ic = _imagecodecs()
        return lambda a: ic.jpegxl_encode(  # type: ignore[no-any-return]
            a, lossless=True, effort=JPEGXL_EFFORT, numthreads=1
        )
