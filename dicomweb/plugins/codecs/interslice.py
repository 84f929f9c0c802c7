"""Inter-slice prediction: code a frame as its difference from the previous frame of the series.

Neighbouring slices of a tomographic series are strongly correlated, so the residual
``frame - previous`` often has less entropy than the frame itself. The residual is computed modulo
2**bits (exactly invertible, no overflow) and re-centred by flipping its top bit so that small positive
and negative differences stay numerically close; it is then coded by an ordinary lossless ``base``
codec (JPEG-LS by default, or whichever the packer found best).

Random access: the packer stores a *keyframe* (coded with ``encode``, no reference) every
``keyframe_interval`` frames (K, default 4), so decoding one frame needs at most K frames: its keyframe
and the residuals after it. ``encode``/``decode`` alone code a keyframe; ``encode_delta``/``decode_delta``
code a residual against an explicit reference frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .base import CodecUnsupportedError, FrameCodec, from_unsigned, to_unsigned

DEFAULT_KEYFRAME_INTERVAL = 4


def _unsigned_view(frame: np.ndarray) -> np.ndarray:
    dt = frame.dtype.newbyteorder("=")
    return np.ascontiguousarray(frame, dtype=dt).view(f"u{dt.itemsize}")


class InterSliceCodec(FrameCodec):
    def __init__(self, base: FrameCodec, keyframe_interval: int = DEFAULT_KEYFRAME_INTERVAL) -> None:
        if keyframe_interval < 1:
            raise ValueError("keyframe_interval must be >= 1")
        self.base = base
        self.keyframe_interval = keyframe_interval
        self.name = f"interslice:{base.name}"

    def available(self) -> bool:
        return self.base.available()

    def supports(self, shape: Sequence[int], dtype: np.dtype) -> bool:
        return self.base.supports(shape, dtype)

    def encode(self, frame: np.ndarray) -> bytes:
        return self.base.encode(frame)

    def decode(self, data: bytes, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        return self.base.decode(data, shape, dtype)

    def encode_delta(self, frame: np.ndarray, reference: np.ndarray) -> bytes:
        if frame.shape != reference.shape or frame.dtype.newbyteorder("=") != reference.dtype.newbyteorder("="):
            raise CodecUnsupportedError("interslice: reference frame has a different shape or dtype")
        residual = _unsigned_view(frame) - _unsigned_view(reference)  # wraps modulo 2**bits
        signed = residual.view(f"i{residual.dtype.itemsize}")
        return self.base.encode(to_unsigned(signed))

    def decode_delta(self, data: bytes, shape: Sequence[int], dtype: np.dtype, reference: np.ndarray) -> np.ndarray:
        itemsize = np.dtype(dtype).itemsize
        coded = self.base.decode(data, shape, np.dtype(f"u{itemsize}"))
        residual = from_unsigned(coded, np.dtype(f"i{itemsize}")).view(f"u{itemsize}")
        return (_unsigned_view(reference) + residual).view(np.dtype(dtype).newbyteorder("="))
