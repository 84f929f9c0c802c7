"""Frames and pixel data read from storage: one range read per frame from the offsets found at ingest.

Native frames go out little endian (PS3.18 8.7.3.3.2): big endian words are swapped here. Only instances
whose frame boundaries were unknown at ingest (deflated files, packed 1-bit frames) are parsed again.
Everything here blocks, callers run it in a worker thread, except ``cached_frames``.
"""

from __future__ import annotations

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from ..services.retrieve import RetrieveService, StoredInstance
from ..transcode import syntaxes as ts
from ..transcode.codec import NotTranscodable, PixelDescription, native_bytes, transcode_frame


def swap_to_little(data: bytes, bits_allocated: int | None) -> bytes:
    width = (bits_allocated or 16) // 8
    if width <= 1 or len(data) % width:
        return data
    return np.frombuffer(data, dtype=f">u{width}").astype(f"<u{width}").tobytes()


def read_header(retrieve: RetrieveService, instance: StoredInstance) -> Dataset:
    with retrieve.open(instance) as fp:
        return dcmread(fp, stop_before_pixels=True)


def _parsed_frames(retrieve: RetrieveService, instance: StoredInstance, numbers: list[int]) -> list[bytes]:
    """Frames of an instance whose boundaries are not indexed: the file is read and parsed."""
    with retrieve.open(instance) as fp:
        ds = dcmread(fp)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if ts.syntax(instance.transfer_syntax_uid).encapsulated and not ts.is_native(instance.transfer_syntax_uid):
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        return [frames[n - 1] for n in numbers]
    pixels = PixelDescription.of(ds)
    try:
        array = ds.pixel_array
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise NotTranscodable(f"the stored pixel data cannot be decoded here: {exc}") from None
    if count == 1:
        array = array[np.newaxis, ...]
    return [native_bytes(array[n - 1], pixels) for n in numbers]


def _span(pieces: list[tuple[int, int]]) -> tuple[int, int]:
    """Offset and length of the one read that covers a frame's pieces (its fragments)."""
    start = pieces[0][0]
    return start, pieces[-1][0] + pieces[-1][1] - start


def _assembled(blob: bytes | bytearray, pieces: list[tuple[int, int]]) -> bytes | bytearray:
    if len(pieces) == 1:
        return blob
    start = pieces[0][0]
    return b"".join(blob[o - start:o - start + n] for o, n in pieces)


def read_frames(
    retrieve: RetrieveService, instance: StoredInstance, bits_allocated: int | None, numbers: list[int]
) -> list[bytes]:
    """The frames (1-based numbers) as stored, native ones little endian."""
    ranges = instance.frame_ranges
    big_endian = instance.transfer_syntax_uid == ts.EXPLICIT_BE
    # Big endian 8-bit data may sit in OW words (swapped in pairs across frame boundaries): parsed instead.
    if ranges is None or (big_endian and bits_allocated != 16):
        return _parsed_frames(retrieve, instance, numbers)
    out = []
    for number in numbers:
        pieces = ranges[number - 1]
        data = bytes(_assembled(retrieve.read_range(instance, *_span(pieces)), pieces))
        if big_endian:
            data = swap_to_little(data, bits_allocated)
        out.append(data)
    return out


def cached_frames(
    retrieve: RetrieveService, instance: StoredInstance, numbers: list[int], target: str, most_bytes: int
) -> list[bytes | bytearray] | None:
    """The frames, when they go out as stored and every byte of them can be read without waiting (at most
    ``most_bytes`` in all); else None. Does not block: for the event loop, ahead of the thread path."""
    ranges = instance.frame_ranges
    stored = instance.transfer_syntax_uid
    if ranges is None or stored == ts.EXPLICIT_BE or target != (ts.EXPLICIT_LE if ts.is_native(stored) else stored):
        return None
    spans = [_span(ranges[number - 1]) for number in numbers]
    if sum(length for _, length in spans) > most_bytes:
        return None
    out: list[bytes | bytearray] = []
    for number, span in zip(numbers, spans, strict=True):
        blob = retrieve.read_range_cached(instance, *span)
        if blob is None:
            return None
        out.append(_assembled(blob, ranges[number - 1]))
    return out


def frames_in(
    retrieve: RetrieveService, instance: StoredInstance, bits_allocated: int | None, numbers: list[int],
    target: str,
) -> list[bytes]:
    """The frames in ``target``: as stored when it is what they are, else transcoded one by one."""
    stored = instance.transfer_syntax_uid
    frames = read_frames(retrieve, instance, bits_allocated, numbers)
    given = ts.EXPLICIT_LE if ts.is_native(stored) else stored
    if target == given:
        return frames
    pixels = PixelDescription.of(read_header(retrieve, instance))
    source = ts.EXPLICIT_LE if ts.is_native(stored) else stored  # already swapped / inflated
    return [transcode_frame(source, frame, target, pixels) for frame in frames]
