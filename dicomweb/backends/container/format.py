"""On-disk format of a series container (version 1).

::

    magic "DCMSERC1" (8 bytes)
    block, block, ...           # payloads only; where they are is in the index
    index                       # zstd-compressed JSON (see below)
    footer (32 bytes, little endian): index offset u64 | index length u64 | index crc32 u32 |
                                      format version u32 | magic "DCMSERC1"

Offsets are relative to the first magic byte; a reader finds the container's start as
``end - (index offset + index length + 32)``, so a container may live inside a larger file.

Checksums: every block, and the index, carry a CRC-32 (zlib, IEEE polynomial). Why CRC-32: it is in
the standard library (no dependency on the read path), runs at GB/s, catches every burst error up to
32 bits and random damage with probability 1 - 2**-32 per block; blocks are small (one frame or one
header), so that is ample to detect storage corruption, while the per-instance SHA-256 of the original
file gives the end-to-end, tamper-evident check. Each frame also records the CRC-32 of its *decoded* raw
bytes, so a decoder that misbehaves (e.g. another library version) can never return wrong pixels.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

MAGIC = b"DCMSERC1"
VERSION = 1
FOOTER = struct.Struct("<QQII8s")
INDEX_ZSTD_LEVEL = 9
HEADER_ZSTD_LEVEL = 19  # headers are small: the strongest level is still fast
OPAQUE_ZSTD_LEVEL = 9
OPAQUE_CHUNK = 4 << 20  # opaque files are cut into 4 MiB blocks so they stream and fail locally
RAW = "raw"  # frame method: bytes stored as they were (encapsulated items, packed bits)
RAW_ZSTD = "raw+zstd"  # frame method: the original bytes, zstd-compressed (opaque or fallback frames)


def crc32(data: bytes | memoryview) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


@dataclass(frozen=True)
class BlockRef:
    """A stored block: offset from the container start, stored length, CRC-32 of the stored bytes."""

    offset: int
    length: int
    crc: int

    def to_json(self) -> list[int]:
        return [self.offset, self.length, self.crc]

    @classmethod
    def from_json(cls, value: Any) -> BlockRef:
        offset, length, crc = (int(v) for v in value)
        return cls(offset, length, crc)


@dataclass
class FrameEntry:
    """One stored frame block and how to decode it.

    ``method``: a codec name (``jpegls``..., coding the native-endian sample array),
    ``interslice:<base>`` (residual against ``ref``), ``raw+zstd`` (the original bytes, zstd) or
    ``raw`` (stored as is: encapsulated items, packed bits).
    ``raw_crc``: CRC-32 of the frame bytes exactly as in the original file.
    ``ref``: (instance index, frame index) of the reference frame of an interslice residual.
    """

    block: BlockRef
    method: str
    raw_crc: int
    ref: tuple[int, int] | None = None

    def to_json(self) -> list[Any]:
        out: list[Any] = [*self.block.to_json(), self.method, self.raw_crc]
        if self.ref is not None:
            out.append(list(self.ref))
        return out

    @classmethod
    def from_json(cls, value: Any) -> FrameEntry:
        ref = (int(value[5][0]), int(value[5][1])) if len(value) > 5 else None
        return cls(BlockRef.from_json(value[:3]), str(value[3]), int(value[4]), ref)


def encode_index(index: dict[str, Any]) -> bytes:
    import zstandard

    raw = json.dumps(index, separators=(",", ":"), sort_keys=True).encode()
    return zstandard.ZstdCompressor(level=INDEX_ZSTD_LEVEL).compress(raw)


def decode_index(data: bytes) -> dict[str, Any]:
    import zstandard

    value = json.loads(zstandard.ZstdDecompressor().decompress(data))
    if not isinstance(value, dict):
        raise ValueError("index is not an object")
    return value
