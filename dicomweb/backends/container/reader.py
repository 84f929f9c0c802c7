"""``SeriesContainer``: random access to the instances, headers and frames of a packed series.

Opening costs two range reads (footer, index); a frame is one read (up to K coalesced blocks for an
interslice residual chain), a header one read (plus the shared dictionary once). Only ``seek``/``read``
are used, so any seekable binary file object works (local file, fsspec S3/GCS/HTTP file, BytesIO).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import zstandard

from dicomweb.plugins.codecs import CodecError, InterSliceCodec, get_codec

from .errors import ContainerCorruptError, ContainerError, InstanceNotFoundError
from .format import FOOTER, MAGIC, RAW, RAW_ZSTD, VERSION, BlockRef, FrameEntry, crc32, decode_index
from .frames import frame_array, frame_bytes

_CACHE_FRAMES = 8  # decoded frames kept for interslice chains (sequential reads reuse them)


@dataclass
class VerifyReport:
    instances: int = 0
    frames: int = 0
    blocks: int = 0
    bytes_checked: int = 0
    errors: list[ContainerCorruptError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        if self.errors:
            raise self.errors[0]


@dataclass
class _Instance:
    index: int
    uid: str
    meta: dict[str, Any]
    frames: list[FrameEntry]


class SeriesContainer:
    def __init__(self, fileobj: BinaryIO, base: int, index: dict[str, Any]) -> None:
        self._f = fileobj
        self._base = base
        self._lock = threading.Lock()
        self.codec: str = str(index.get("codec", ""))
        self.trial_sizes: dict[str, int | None] = dict(index.get("trial_sizes") or {})
        self._dict_ref = BlockRef.from_json(index["dictionary"]) if index.get("dictionary") else None
        self._dctx: zstandard.ZstdDecompressor | None = None
        self._instances: list[_Instance] = []
        self._by_uid: dict[str, _Instance] = {}
        for i, meta in enumerate(index["instances"]):
            frames = [FrameEntry.from_json(v) for v in meta.get("frames", [])]
            inst = _Instance(i, str(meta["uid"]), meta, frames)
            self._instances.append(inst)
            self._by_uid[inst.uid] = inst
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, fileobj: BinaryIO) -> SeriesContainer:
        """Read the footer and index of the container that ends at the end of ``fileobj``."""
        end = fileobj.seek(0, os.SEEK_END)
        if end < FOOTER.size + len(MAGIC):
            raise ContainerCorruptError("file too small to be a series container")
        fileobj.seek(end - FOOTER.size)
        footer = fileobj.read(FOOTER.size)
        try:
            offset, length, index_crc, version, magic = FOOTER.unpack(footer)
        except Exception as exc:
            raise ContainerCorruptError(f"unreadable footer: {exc}") from exc
        if magic != MAGIC:
            raise ContainerCorruptError("not a series container (bad footer magic)")
        if version != VERSION:
            raise ContainerCorruptError(f"unsupported container version {version}")
        base = end - (offset + length + FOOTER.size)
        if base < 0 or offset < len(MAGIC):
            raise ContainerCorruptError("footer offsets are out of range")
        fileobj.seek(base)
        if fileobj.read(len(MAGIC)) != MAGIC:
            raise ContainerCorruptError("bad container start magic")
        fileobj.seek(base + offset)
        data = fileobj.read(length)
        if len(data) != length or crc32(data) != index_crc:
            raise ContainerCorruptError("container index checksum mismatch")
        try:
            index = decode_index(data)
            container = cls(fileobj, base, index)
        except (ValueError, KeyError, TypeError, IndexError, zstandard.ZstdError) as exc:
            raise ContainerCorruptError(f"unreadable container index: {exc}") from exc
        return container

    # -- public API ----------------------------------------------------------------------------

    def instance_uids(self) -> list[str]:
        return [i.uid for i in self._instances]

    def number_of_frames(self, sop_instance_uid: str) -> int:
        inst = self._get(sop_instance_uid)
        return int(inst.meta.get("nframes", 0)) if inst.meta["kind"] == "split" else 0

    def read_instance(self, sop_instance_uid: str) -> bytes:
        """The original Part 10 bytes, checked against their SHA-256."""
        inst = self._get(sop_instance_uid)
        data = self._assemble(inst)
        if hashlib.sha256(data).hexdigest() != inst.meta["sha256"]:
            raise ContainerCorruptError("instance SHA-256 mismatch", sop_instance_uid=inst.uid)
        return data

    def read_header(self, sop_instance_uid: str) -> bytes:
        """The instance's bytes without its top-level Pixel Data element (tag, length and value).

        Dropping the whole element (not just its value) keeps the result a well-formed Part 10 stream
        that pydicom reads as the dataset minus pixels.
        """
        inst = self._get(sop_instance_uid)
        if inst.meta["kind"] == "opaque":
            data = self._assemble(inst)
            if hashlib.sha256(data).hexdigest() != inst.meta["sha256"]:
                raise ContainerCorruptError("instance SHA-256 mismatch", sop_instance_uid=inst.uid)
            return _strip_pixels(data)
        header = self._header(inst)
        head_len, tag, vend = inst.meta["head_len"], inst.meta["pixel_tag"], inst.meta["value_end"]
        # header == file[:head_len] + file[frames_end:]; the element spans file[tag:vend]
        frames_end = inst.meta["size"] - (len(header) - head_len)
        return header[:tag] + header[head_len + vend - frames_end :]

    def read_frame(self, sop_instance_uid: str, frame_number: int) -> bytes:
        """Frame ``frame_number`` (1-based): raw pixel bytes for native data, in the file's byte
        order; the concatenated fragment values of the frame for encapsulated data."""
        inst = self._get(sop_instance_uid)
        meta = inst.meta
        nframes = int(meta.get("nframes", 0)) if meta["kind"] == "split" else 0
        if meta["kind"] == "opaque":
            return _frame_from_file(self.read_instance(inst.uid), frame_number, inst.uid)
        if not 1 <= frame_number <= nframes:
            raise InstanceNotFoundError(f"{inst.uid} has no frame {frame_number} (1..{nframes})")
        mode = meta["mode"]
        if mode == "native":
            return (
                frame_bytes(self._decode(inst, frame_number - 1), meta["dtype"], meta["planar"])
                if meta["dtype"]
                else self._plain(inst, frame_number - 1)
            )
        if mode == "encaps":
            return _item_values(self._plain(inst, frame_number - 1))
        if mode == "bits":
            return _bits_frame(self._plain(inst, 0), frame_number - 1, int(meta["frame_bits"]))
        # encaps_all: fragments could not be mapped at pack time; let pydicom's heuristics split them
        from pydicom.encaps import get_frame

        buffer = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + self._plain(inst, 0)
        try:
            return bytes(get_frame(buffer, frame_number - 1, number_of_frames=nframes))
        except ValueError as exc:
            raise ContainerError(f"{inst.uid}: cannot locate frame {frame_number}: {exc}") from exc

    def verify(self) -> VerifyReport:
        """Check every block's CRC and every instance's SHA-256 (which also decodes every frame)."""
        report = VerifyReport()
        for inst in self._instances:
            report.instances += 1
            try:
                data = self._assemble(inst)
                if hashlib.sha256(data).hexdigest() != inst.meta["sha256"]:
                    raise ContainerCorruptError("instance SHA-256 mismatch", sop_instance_uid=inst.uid)
                report.frames += len(inst.frames)
                report.blocks += len(inst.frames) + (1 if inst.meta["kind"] == "split" else 0)
                report.bytes_checked += len(data)
            except ContainerCorruptError as exc:
                report.errors.append(exc)
            except ContainerError as exc:
                report.errors.append(ContainerCorruptError(str(exc), sop_instance_uid=inst.uid))
        return report

    # -- internals -----------------------------------------------------------------------------

    def _get(self, uid: str) -> _Instance:
        try:
            return self._by_uid[uid]
        except KeyError:
            raise InstanceNotFoundError(f"no instance {uid} in this container") from None

    def _read_ranges(self, refs: list[BlockRef]) -> list[bytes]:
        """Read blocks in one request when they are close together (interslice chains)."""
        lo = min(r.offset for r in refs)
        hi = max(r.offset + r.length for r in refs)
        with self._lock:
            if hi - lo <= 2 * sum(r.length for r in refs) + (64 << 10):
                self._f.seek(self._base + lo)
                span = self._f.read(hi - lo)
                return [span[r.offset - lo : r.offset - lo + r.length] for r in refs]
            out = []
            for r in refs:
                self._f.seek(self._base + r.offset)
                out.append(self._f.read(r.length))
            return out

    def _checked(self, refs: list[BlockRef], labels: list[tuple[str | None, int | None]]) -> list[bytes]:
        """Read blocks and check their CRCs; ``labels`` name the (instance, frame) each belongs to."""
        blobs = self._read_ranges(refs)
        for ref, blob, (uid, frame) in zip(refs, blobs, labels, strict=True):
            if len(blob) != ref.length or crc32(blob) != ref.crc:
                what = "frame" if frame is not None else "header"
                raise ContainerCorruptError(f"{what} block checksum mismatch", sop_instance_uid=uid, frame=frame)
        return blobs

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        if self._dctx is None:
            if self._dict_ref is None:
                self._dctx = zstandard.ZstdDecompressor()
            else:
                (packed,) = self._checked([self._dict_ref], [(None, None)])
                raw = zstandard.ZstdDecompressor().decompress(packed)
                zdict = zstandard.ZstdCompressionDict(raw, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
                self._dctx = zstandard.ZstdDecompressor(dict_data=zdict)
        return self._dctx

    def _header(self, inst: _Instance) -> bytes:
        (packed,) = self._checked([BlockRef.from_json(inst.meta["header"])], [(inst.uid, None)])
        try:
            return self._decompressor().decompress(packed)
        except zstandard.ZstdError as exc:
            raise ContainerCorruptError(f"header does not decompress: {exc}", sop_instance_uid=inst.uid) from exc

    def _plain(self, inst: _Instance, i: int) -> bytes:
        """Frame block ``i`` of a non-codec mode (``raw`` items/bits, or zstd raw bytes)."""
        entry = inst.frames[i]
        (blob,) = self._checked([entry.block], [(inst.uid, i + 1)])
        if entry.method == RAW_ZSTD:
            try:
                blob = zstandard.ZstdDecompressor().decompress(blob)
            except zstandard.ZstdError as exc:
                raise ContainerCorruptError(f"zstd: {exc}", sop_instance_uid=inst.uid, frame=i + 1) from exc
        elif entry.method != RAW:
            raise ContainerCorruptError(f"unexpected method {entry.method!r}", sop_instance_uid=inst.uid, frame=i + 1)
        if crc32(blob) != entry.raw_crc:
            raise ContainerCorruptError("frame bytes checksum mismatch", sop_instance_uid=inst.uid, frame=i + 1)
        return blob

    def _decode(self, inst: _Instance, i: int) -> np.ndarray:
        """Decode native frame ``i`` of ``inst``, following its interslice chain if it has one."""
        chain: list[tuple[_Instance, int]] = [(inst, i)]
        while True:
            cur_inst, cur = chain[-1]
            if (cur_inst.index, cur) in self._cache:
                break
            ref = cur_inst.frames[cur].ref
            if ref is None:
                break
            if len(chain) > 4096 or not (0 <= ref[0] < len(self._instances)):
                raise ContainerCorruptError("bad reference chain", sop_instance_uid=inst.uid, frame=i + 1)
            chain.append((self._instances[ref[0]], ref[1]))
        chain.reverse()
        todo = [(ci, fi) for ci, fi in chain if (ci.index, fi) not in self._cache]
        refs = [ci.frames[fi].block for ci, fi in todo]
        blobs = self._checked(refs, [(ci.uid, fi + 1) for ci, fi in todo]) if todo else []
        previous: np.ndarray | None = None
        blob_iter = iter(blobs)
        for ci, fi in chain:
            key = (ci.index, fi)
            if key in self._cache:
                previous = self._cache[key]
                continue
            previous = self._decode_one(ci, fi, next(blob_iter), previous)
            self._cache[key] = previous
            if len(self._cache) > _CACHE_FRAMES:
                self._cache.popitem(last=False)
        assert previous is not None
        return previous

    def _decode_one(self, inst: _Instance, i: int, blob: bytes, reference: np.ndarray | None) -> np.ndarray:
        entry, meta = inst.frames[i], inst.meta
        if entry.method in (RAW_ZSTD, RAW):
            raw = self._plain(inst, i)
            return frame_array(raw, meta["dtype"], meta["shape"], meta["planar"])
        dtype = np.dtype(meta["dtype"]).newbyteorder("=")
        shape = tuple(meta["shape"])
        try:
            codec = get_codec(entry.method)
            if entry.ref is not None:
                if not isinstance(codec, InterSliceCodec) or reference is None:
                    raise CodecError("residual frame without a reference")
                arr = codec.decode_delta(blob, shape, dtype, reference)
            else:
                arr = codec.decode(blob, shape, dtype)
        except CodecError as exc:
            raise ContainerCorruptError(
                f"frame does not decode: {exc}", sop_instance_uid=inst.uid, frame=i + 1
            ) from exc
        if crc32(frame_bytes(arr, meta["dtype"], meta["planar"])) != entry.raw_crc:
            raise ContainerCorruptError("decoded pixels checksum mismatch", sop_instance_uid=inst.uid, frame=i + 1)
        return arr

    def _assemble(self, inst: _Instance) -> bytes:
        meta = inst.meta
        if meta["kind"] == "opaque":
            refs = [BlockRef.from_json(b) for b in meta["blocks"]]
            dctx = zstandard.ZstdDecompressor()
            parts = []
            for n, ref in enumerate(refs):
                (blob,) = self._checked([ref], [(inst.uid, None)])
                try:
                    parts.append(dctx.decompress(blob))
                except zstandard.ZstdError as exc:
                    raise ContainerCorruptError(f"opaque block {n}: {exc}", sop_instance_uid=inst.uid) from exc
            return b"".join(parts)
        header = self._header(inst)
        out = io.BytesIO()
        out.write(header[: meta["head_len"]])
        for i in range(len(inst.frames)):
            if meta["mode"] == "native" and meta["dtype"]:
                out.write(frame_bytes(self._decode(inst, i), meta["dtype"], meta["planar"]))
            else:
                out.write(self._plain(inst, i))
        out.write(header[meta["head_len"] :])
        return out.getvalue()


def _item_values(items: bytes) -> bytes:
    """Concatenate the values of the (FFFE,E000) items in ``items``."""
    out, pos = [], 0
    while pos + 8 <= len(items):
        length = int.from_bytes(items[pos + 4 : pos + 8], "little")
        out.append(items[pos + 8 : pos + 8 + length])
        pos += 8 + length
    return b"".join(out)


def _bits_frame(packed: bytes, index: int, frame_bits: int) -> bytes:
    """Frame ``index`` of packed 1-bit data (DICOM packs LSB first), re-packed to start at bit 0."""
    bits = np.unpackbits(np.frombuffer(packed, dtype=np.uint8), bitorder="little")
    return np.packbits(bits[index * frame_bits : (index + 1) * frame_bits], bitorder="little").tobytes()


def _frame_from_file(data: bytes, frame_number: int, uid: str) -> bytes:
    """Frame access for an opaque (e.g. deflated) instance: parse it with pydicom."""
    import pydicom
    from pydicom.encaps import get_frame

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise InstanceNotFoundError(f"{uid} has no pixel data")
    nframes = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= frame_number <= nframes:
        raise InstanceNotFoundError(f"{uid} has no frame {frame_number} (1..{nframes})")
    value = bytes(ds.PixelData)
    if ds["PixelData"].is_undefined_length:
        return bytes(get_frame(value, frame_number - 1, number_of_frames=nframes))
    size = len(value) // nframes
    return value[(frame_number - 1) * size : frame_number * size]


def _strip_pixels(data: bytes) -> bytes:
    """Header of an opaque instance: cut before Pixel Data, or re-encode a deflated file without it."""
    import pydicom

    from .layout import DEFLATED

    try:
        f = io.BytesIO(data)
        ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
        if str(ds.file_meta.get("TransferSyntaxUID", "")) != DEFLATED:
            return data[: f.tell()]  # trailing elements after Pixel Data are dropped here
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        return buf.getvalue()
    except Exception as exc:  # pydicom raises many types on odd files
        raise ContainerError(f"cannot extract a header from an opaque instance: {exc}") from exc
