"""Baseline codecs on the frame's raw bytes: zstd and gzip (general-purpose, any sample type)."""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from collections.abc import Sequence

import numpy as np

from .base import CodecError, CodecUnavailableError, FrameCodec, check_decoded

ZSTD_LEVEL = 9  # a fair general-purpose baseline; higher levels cost far more time for ~1-2 %
GZIP_LEVEL = 6


def _decode_bytes(raw: bytes, shape: Sequence[int], dtype: np.dtype, codec: str) -> np.ndarray:
    dt = np.dtype(dtype).newbyteorder("=")
    if len(raw) != int(np.prod(shape)) * dt.itemsize:
        raise CodecError(f"{codec}: decoded {len(raw)} bytes, expected shape {tuple(shape)} of {dt}")
    return check_decoded(np.frombuffer(raw, dtype=dt).reshape(shape), shape, dt, codec)


class ZstdCodec(FrameCodec):
    """zstd on the native-endian frame bytes; also the container's fallback for opaque data."""

    name = "zstd"

    def __init__(self, level: int = ZSTD_LEVEL) -> None:
        self.level = level

    def available(self) -> bool:
        return importlib.util.find_spec("zstandard") is not None

    def supports(self, shape: Sequence[int], dtype: np.dtype) -> bool:
        return True  # byte-exact on anything

    def compress(self, raw: bytes) -> bytes:
        if not self.available():
            raise CodecUnavailableError("zstd needs the 'zstandard' package")
        import zstandard

        return zstandard.ZstdCompressor(level=self.level).compress(raw)

    def decompress(self, data: bytes) -> bytes:
        if not self.available():
            raise CodecUnavailableError("zstd needs the 'zstandard' package")
        import zstandard

        try:
            return zstandard.ZstdDecompressor().decompress(data)
        except zstandard.ZstdError as exc:
            raise CodecError(f"zstd: {exc}") from exc

    def encode(self, frame: np.ndarray) -> bytes:
        return self.compress(np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("=")).tobytes())

    def decode(self, data: bytes, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        return _decode_bytes(self.decompress(data), shape, dtype, self.name)


class GzipCodec(FrameCodec):
    """gzip (DEFLATE) on the native-endian frame bytes: the most portable baseline."""

    name = "gzip"

    def available(self) -> bool:
        return True

    def supports(self, shape: Sequence[int], dtype: np.dtype) -> bool:
        return True

    def encode(self, frame: np.ndarray) -> bytes:
        raw = np.ascontiguousarray(frame, dtype=frame.dtype.newbyteorder("=")).tobytes()
        return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)

    def decode(self, data: bytes, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise CodecError(f"gzip: {exc}") from exc
        return _decode_bytes(raw, shape, dtype, self.name)
