"""``pack_series``: write the Part 10 files of one series into a container, one instance at a time."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import zstandard

from dicomweb.plugins.codecs import (
    DEFAULT_KEYFRAME_INTERVAL,
    CodecError,
    FrameCodec,
    InterSliceCodec,
    get_codec,
)

from .errors import ContainerError
from .format import (
    FOOTER,
    HEADER_ZSTD_LEVEL,
    MAGIC,
    OPAQUE_CHUNK,
    OPAQUE_ZSTD_LEVEL,
    RAW_ZSTD,
    VERSION,
    BlockRef,
    FrameEntry,
    crc32,
    encode_index,
)
from .frames import frame_array, frame_bytes
from .layout import Layout, analyze
from .sources import SeriesSource, Source, slice_order
from .trial import choose_codec

log = logging.getLogger(__name__)

MAX_DICTIONARY = 1 << 20
_HASH_CHUNK = 1 << 20


@dataclass
class PackReport:
    codec: str  # codec used for native frames ("interslice:<base>" for interslice)
    bytes_in: int  # sum of the original file sizes
    bytes_out: int  # container size, headers and index included
    instances: int
    seconds: float
    trial_sizes: dict[str, int | None] = field(default_factory=dict)  # auto trial: bytes per codec
    frames: int = 0
    pixel_bytes: int = 0  # native pixel bytes coded by the frame codec
    opaque_instances: int = 0  # stored whole (deflated, unsplittable)
    fallback_frames: int = 0  # frames the codec could not code exactly, stored as zstd instead

    @property
    def ratio(self) -> float:
        return self.bytes_in / self.bytes_out if self.bytes_out else 0.0


class _RoundTripError(ContainerError):
    """The split/encode path did not reproduce the file: store it opaque instead."""


class _Output:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.pos = 0

    def write(self, data: bytes) -> BlockRef:
        ref = BlockRef(self.pos, len(data), crc32(data))
        self.out.write(data)
        self.pos += len(data)
        return ref


class _HeaderCoder:
    """zstd for headers, with the series' first header as a raw-content dictionary.

    Headers in a series are near-identical, so referencing the first one turns each later header into
    a few hundred bytes, while every header stays independently decodable (only the dictionary block
    is shared). It needs no training pass, so packing stays single-pass and streaming.
    """

    def __init__(self, out: _Output) -> None:
        self.out = out
        self.dict_ref: BlockRef | None = None
        self._cctx: zstandard.ZstdCompressor | None = None
        self._dctx: zstandard.ZstdDecompressor | None = None

    def compress(self, header: bytes) -> bytes:
        if self._cctx is None:
            if len(header) >= 256:
                raw = header[:MAX_DICTIONARY]
                self.dict_ref = self.out.write(zstandard.ZstdCompressor(level=HEADER_ZSTD_LEVEL).compress(raw))
                zdict = zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                self._cctx = zstandard.ZstdCompressor(level=HEADER_ZSTD_LEVEL, dict_data=zdict)
                self._dctx = zstandard.ZstdDecompressor(dict_data=zdict)
            else:
                self._cctx = zstandard.ZstdCompressor(level=HEADER_ZSTD_LEVEL)
                self._dctx = zstandard.ZstdDecompressor()
        return self._cctx.compress(header)

    def decompress(self, data: bytes) -> bytes:
        assert self._dctx is not None
        return self._dctx.decompress(data)


class _FrameCoder:
    """Codes native frames with the chosen codec, checking each one decodes back exactly."""

    def __init__(self, codec_name: str, out: _Output) -> None:
        self.out = out
        self.codec: FrameCodec = get_codec(codec_name)
        self.zstd = get_codec("zstd")
        self.inter = self.codec if isinstance(self.codec, InterSliceCodec) else None
        # interslice state: the previous frame (array, key) and frames since the last keyframe
        self.prev: tuple[np.ndarray, tuple[int, int]] | None = None
        self.since_key = 0
        self.fallbacks = 0

    def reset_prediction(self) -> None:
        self.prev = None

    def code(self, raw: bytes, lay: Layout, key: tuple[int, int]) -> tuple[FrameEntry, bytes]:
        """Store one frame; returns its entry and the bytes it decodes back to (== raw)."""
        raw_crc = crc32(raw)
        if lay.mode != "native":
            return FrameEntry(self.out.write(raw), "raw", raw_crc), raw
        if lay.dtype is None:
            return self._zstd(raw, raw_crc), raw
        arr = frame_array(raw, lay.dtype, lay.shape, lay.planar)
        try:
            data, method, ref, decoded = self._encode(arr)
            back = frame_bytes(decoded, lay.dtype, lay.planar)
            if back != raw:
                raise CodecError(f"{method} did not round-trip")
        except CodecError as exc:
            log.warning("frame %s: %s; stored with zstd", key, exc)
            self.fallbacks += 1
            self.prev, self.since_key = (arr, key), 1
            return self._zstd(raw, raw_crc), raw
        if self.inter is not None:
            self.since_key = 1 if ref is None else self.since_key + 1
            self.prev = (arr, key)
        return FrameEntry(self.out.write(data), method, raw_crc, ref), back

    def _encode(self, arr: np.ndarray) -> tuple[bytes, str, tuple[int, int] | None, np.ndarray]:
        codec = self.codec
        if not codec.supports(arr.shape, arr.dtype):
            raise CodecError(f"{codec.name} does not support {arr.shape}/{arr.dtype}")
        if self.inter is not None:
            prev = self.prev
            if (
                prev is not None
                and self.since_key < self.inter.keyframe_interval
                and prev[0].shape == arr.shape
                and prev[0].dtype == arr.dtype
            ):
                data = self.inter.encode_delta(arr, prev[0])
                decoded = self.inter.decode_delta(data, arr.shape, arr.dtype, prev[0])
                return data, self.inter.name, prev[1], decoded
            codec = self.inter.base
        data = codec.encode(arr)
        return data, codec.name, None, codec.decode(data, arr.shape, arr.dtype)

    def _zstd(self, raw: bytes, raw_crc: int) -> FrameEntry:
        assert isinstance(self.zstd, FrameCodec)
        data = self.zstd.compress(raw)  # type: ignore[attr-defined]
        return FrameEntry(self.out.write(data), RAW_ZSTD, raw_crc)


def _file_sha256(f: BinaryIO, start: int, size: int) -> str:
    h = hashlib.sha256()
    f.seek(start)
    left = size
    while left:
        chunk = f.read(min(_HASH_CHUNK, left))
        if not chunk:
            raise ContainerError("source file shrank while being read")
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def _read(f: BinaryIO, start: int, begin: int, end: int) -> bytes:
    f.seek(start + begin)
    data = f.read(end - begin)
    if len(data) != end - begin:
        raise ContainerError("short read from source")
    return data


class _Packer:
    def __init__(self, out: BinaryIO, codec_name: str) -> None:
        self.out = _Output(out)
        self.out.write(MAGIC)
        self.headers = _HeaderCoder(self.out)
        self.frames = _FrameCoder(codec_name, self.out)
        self.instances: list[dict[str, Any]] = []
        self.uids: dict[str, str] = {}
        self.bytes_in = self.pixel_bytes = self.nframes = self.opaque = 0

    def add(self, src: SeriesSource) -> None:
        with src.open() as (f, start, size):
            sha = _file_sha256(f, start, size)
            lay = analyze(f, start, size)
            uid = lay.sop_instance_uid if lay else _uid_of_opaque(f, start)
            if uid in self.uids:
                if self.uids[uid] == sha:
                    return  # the very same file twice: keep one
                raise ContainerError(f"SOP Instance UID {uid} appears twice with different content")
            entry: dict[str, Any] | None = None
            if lay is not None:
                try:
                    entry = self._split(f, start, lay, sha)
                except _RoundTripError as exc:
                    log.warning("%s: %s; storing the file opaque", uid, exc)
            if entry is None:
                self.frames.reset_prediction()
                entry = self._opaque(f, start, size, uid)
                self.opaque += 1
            entry.update(uid=uid, sha256=sha, size=size)
        self.uids[uid] = sha
        self.instances.append(entry)
        self.bytes_in += size

    def _split(self, f: BinaryIO, start: int, lay: Layout, sha: str) -> dict[str, Any]:
        head = _read(f, start, 0, lay.frames_start)
        tail = _read(f, start, lay.frames_end, lay.size)
        packed = self.headers.compress(head + tail)
        if self.headers.decompress(packed) != head + tail:
            raise _RoundTripError("header did not round-trip")
        header_ref = self.out.write(packed)
        if lay.mode != "native" or lay.dtype is None:
            self.frames.reset_prediction()
        h = hashlib.sha256(head)
        frames = []
        index = len(self.instances)
        for i, (s, e) in enumerate(lay.blocks):
            entry, decoded = self.frames.code(_read(f, start, s, e), lay, (index, i))
            h.update(decoded)
            frames.append(entry.to_json())
            if lay.mode == "native":
                self.pixel_bytes += e - s
        h.update(tail)
        if h.hexdigest() != sha:
            raise _RoundTripError("reassembled file differs from the original")
        self.nframes += lay.nframes
        return {
            "kind": "split",
            "header": header_ref.to_json(),
            "head_len": len(head),
            "pixel_tag": lay.pixel_tag_offset,
            "value_end": lay.value_end,
            "mode": lay.mode,
            "nframes": lay.nframes,
            "dtype": lay.dtype,
            "shape": list(lay.shape),
            "planar": lay.planar,
            "frame_bits": lay.frame_bits,
            "frames": frames,
        }

    def _opaque(self, f: BinaryIO, start: int, size: int, uid: str) -> dict[str, Any]:
        cctx = zstandard.ZstdCompressor(level=OPAQUE_ZSTD_LEVEL)
        dctx = zstandard.ZstdDecompressor()
        blocks = []
        for pos in range(0, size, OPAQUE_CHUNK):
            chunk = _read(f, start, pos, min(pos + OPAQUE_CHUNK, size))
            packed = cctx.compress(chunk)
            if dctx.decompress(packed) != chunk:
                raise ContainerError(f"{uid}: zstd did not round-trip")
            blocks.append(self.out.write(packed).to_json())
        return {"kind": "opaque", "blocks": blocks}

    def finish(self, codec: str, trial: dict[str, int | None]) -> int:
        index = {
            "version": VERSION,
            "codec": codec,
            "keyframe_interval": DEFAULT_KEYFRAME_INTERVAL,
            "trial_sizes": trial,
            "dictionary": self.headers.dict_ref.to_json() if self.headers.dict_ref else None,
            "instances": self.instances,
        }
        data = encode_index(index)
        offset = self.out.pos
        self.out.write(data)
        self.out.out.write(FOOTER.pack(offset, len(data), crc32(data), VERSION, MAGIC))
        return self.out.pos + FOOTER.size


def _uid_of_opaque(f: BinaryIO, start: int) -> str:
    import pydicom

    try:
        f.seek(start)
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        uid = str(ds.get("SOPInstanceUID", "") or ds.file_meta.get("MediaStorageSOPInstanceUID", ""))
    except Exception as exc:
        raise ContainerError(f"cannot read a SOP Instance UID: {exc}") from exc
    if not uid:
        raise ContainerError("file has no SOP Instance UID")
    return uid


def pack_series(sources: Iterable[Source], out: BinaryIO, codec: str = "auto") -> PackReport:
    """Pack the Part 10 files of one series into ``out`` (written sequentially, index at the end).

    ``codec``: a codec name (see :func:`dicomweb.plugins.codecs.codec_names`) or ``"auto"`` to try
    the available ones on a few frames spread over the series and keep the smallest that still reads fast
    (:mod:`.trial`). Every instance is checked to reassemble to its original SHA-256 before this returns;
    a file whose pixel data cannot be cut out safely is stored whole (zstd). Raises :class:`ContainerError`
    on duplicate SOP Instance UIDs with different content or unreadable input.
    """
    t0 = time.perf_counter()
    items = [SeriesSource(s) for s in sources]
    if len(items) > 2:
        items = slice_order(items)
    chosen, trial = choose_codec(items, codec)
    packer = _Packer(out, chosen)
    for item in items:
        packer.add(item)
    total = packer.finish(chosen, trial)
    return PackReport(
        codec=chosen,
        bytes_in=packer.bytes_in,
        bytes_out=total,
        instances=len(packer.instances),
        seconds=time.perf_counter() - t0,
        trial_sizes=trial,
        frames=packer.nframes,
        pixel_bytes=packer.pixel_bytes,
        opaque_instances=packer.opaque,
        fallback_frames=packer.frames.fallbacks,
    )
