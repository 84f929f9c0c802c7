"""Conversions between a native frame's stored bytes and the array a codec sees."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def frame_array(raw: bytes, dtype: str, shape: Sequence[int], planar: bool) -> np.ndarray:
    """Stored bytes (file byte order, maybe colour-by-plane) -> native-endian (rows, cols[, 3])."""
    dt = np.dtype(dtype)
    arr = np.frombuffer(raw, dtype=dt)
    if planar:
        arr = arr.reshape(3, shape[0], shape[1]).transpose(1, 2, 0)
    else:
        arr = arr.reshape(tuple(shape))
    return np.ascontiguousarray(arr, dtype=dt.newbyteorder("="))


def frame_bytes(arr: np.ndarray, dtype: str, planar: bool) -> bytes:
    """Inverse of :func:`frame_array`: exactly the bytes as they were in the original file."""
    if planar:
        arr = arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr, dtype=np.dtype(dtype)).tobytes()
