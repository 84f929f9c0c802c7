"""The lossless frame codec interface shared by every codec plugin."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

# Sample types every pixel codec must handle: 8..16-bit integers stored in 1 or 2 bytes.
SUPPORTED_DTYPES = frozenset(np.dtype(t) for t in ("u1", "i1", "u2", "i2"))


class CodecError(Exception):
    """A codec failed to encode or decode, or decoded something of the wrong shape/type."""


class CodecUnavailableError(CodecError):
    """The package backing a codec is not installed (or lacks the needed feature)."""


class CodecUnsupportedError(CodecError):
    """The codec cannot represent this shape/dtype exactly; callers must pick another codec."""


def is_supported_frame(shape: Sequence[int], dtype: np.dtype) -> bool:
    """True for (rows, cols) or (rows, cols, 3) frames of 8/16-bit integer samples."""
    if np.dtype(dtype).newbyteorder("=") not in SUPPORTED_DTYPES:
        return False
    if len(shape) == 2:
        return shape[0] > 0 and shape[1] > 0
    return len(shape) == 3 and shape[0] > 0 and shape[1] > 0 and shape[2] == 3


def to_unsigned(frame: np.ndarray) -> np.ndarray:
    """Map samples to native unsigned integers of the same width, bijectively.

    Signed values get their sign bit flipped (an order-preserving offset by 2**(n-1)), which keeps
    neighbouring values numerically close, so predictive coders do not see a jump at zero.
    """
    dt = frame.dtype.newbyteorder("=")
    arr = np.ascontiguousarray(frame, dtype=dt)
    if dt.kind == "u":
        return arr
    unsigned = arr.view(f"u{dt.itemsize}")
    return unsigned ^ np.array(1 << (8 * dt.itemsize - 1), dtype=unsigned.dtype)


def from_unsigned(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`to_unsigned`."""
    dt = np.dtype(dtype).newbyteorder("=")
    arr = np.ascontiguousarray(data, dtype=f"u{dt.itemsize}")
    if dt.kind == "u":
        return arr
    return (arr ^ np.array(1 << (8 * dt.itemsize - 1), dtype=arr.dtype)).view(dt)


def check_decoded(arr: np.ndarray, shape: Sequence[int], dtype: np.dtype, codec: str) -> np.ndarray:
    """Reject a decoded array that does not have the expected geometry (never reshape silently)."""
    if tuple(arr.shape) != tuple(shape) or arr.dtype != np.dtype(dtype).newbyteorder("="):
        raise CodecError(f"{codec}: decoded {arr.shape}/{arr.dtype}, expected {tuple(shape)}/{dtype}")
    return arr


class FrameCodec(ABC):
    """A lossless codec for one pixel frame.

    ``encode(frame) -> bytes`` and ``decode(data, shape, dtype) -> ndarray`` must be exact inverses for
    every frame where ``supports(shape, dtype)`` is true. ``available()`` reports whether the backing
    package is importable; an unavailable codec raises :class:`CodecUnavailableError` when used.
    """

    name: str = ""

    @abstractmethod
    def available(self) -> bool: ...

    def supports(self, shape: Sequence[int], dtype: np.dtype) -> bool:
        return is_supported_frame(shape, dtype)

    @abstractmethod
    def encode(self, frame: np.ndarray) -> bytes: ...

    @abstractmethod
    def decode(self, data: bytes, shape: Sequence[int], dtype: np.dtype) -> np.ndarray: ...

    def _check_encodable(self, frame: np.ndarray) -> None:
        if not self.available():
            raise CodecUnavailableError(f"codec {self.name!r} is not available")
        if not self.supports(frame.shape, frame.dtype):
            raise CodecUnsupportedError(f"codec {self.name!r} cannot code {frame.shape}/{frame.dtype}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
