"""``codec="auto"``: code a few frames spread across the series with every candidate codec.

The pick is the smallest output among codecs that decode the sample at >= ``MIN_DECODE_MBPS`` (one
core), so that random frame reads stay interactive; slower codecs (JPEG 2000, JPEG XL, FFV1 here) only
win when no fast one can code the frames. Interslice is tried on top of the best fast codec.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from dicomweb.plugins.codecs import (
    DEFAULT_KEYFRAME_INTERVAL,
    CodecError,
    FrameCodec,
    InterSliceCodec,
    available_codecs,
    get_codec,
)

from .frames import frame_array
from .layout import Layout, analyze
from .sources import SeriesSource

log = logging.getLogger(__name__)

SAMPLE_FRAMES = 4
MIN_DECODE_MBPS = 50.0
Sample = tuple[np.ndarray, np.ndarray | None]  # (frame, its predecessor in series order, if any)


def _read_frame(src: SeriesSource, index: int | None) -> tuple[np.ndarray, Layout] | None:
    """Frame ``index`` (None: the last) of a native instance whose frames a codec can code."""
    with src.open() as (f, start, size):
        lay = analyze(f, start, size)
        if lay is None or lay.mode != "native" or lay.dtype is None or not lay.blocks:
            return None
        s, e = lay.blocks[-1 if index is None else index]
        f.seek(start + s)
        raw = f.read(e - s)
    return frame_array(raw, lay.dtype, lay.shape, lay.planar), lay


def sample_frames(sources: list[SeriesSource], count: int = SAMPLE_FRAMES) -> list[Sample]:
    """Up to ``count`` frames spread over the series, each with its predecessor."""
    picks = sorted({round(x) for x in np.linspace(0, len(sources) - 1, min(count, len(sources)))})
    samples: list[Sample] = []
    for i in picks:
        first = _read_frame(sources[i], 0)
        if first is None:
            continue
        lay = first[1]
        per = max(1, count // len(picks))
        for j in sorted({round(x) for x in np.linspace(0, lay.nframes - 1, min(per, lay.nframes))}):
            got = first if j == 0 else _read_frame(sources[i], j)
            if got is None:
                continue
            arr = got[0]
            prev: np.ndarray | None = None
            if j > 0:
                got = _read_frame(sources[i], j - 1)
                prev = got[0] if got else None
            elif i > 0:
                got = _read_frame(sources[i - 1], None)
                prev = got[0] if got else None
            if prev is not None and (prev.shape != arr.shape or prev.dtype != arr.dtype):
                prev = None
            samples.append((arr, prev))
    return samples


def _trial(codec: FrameCodec, samples: list[Sample]) -> tuple[int, float] | None:
    """(bytes, decode MB/s) of ``codec`` on the samples; ``None`` if it cannot code one of them."""
    total, seconds = 0, 0.0
    for arr, _ in samples:
        if not codec.supports(arr.shape, arr.dtype):
            return None
        try:
            data = codec.encode(arr)
            t0 = time.perf_counter()
            codec.decode(data, arr.shape, arr.dtype)
            seconds += time.perf_counter() - t0
        except CodecError as exc:
            log.debug("codec %s failed on a sample frame: %s", codec.name, exc)
            return None
        total += len(data)
    return total, sum(a.nbytes for a, _ in samples) / 1e6 / max(seconds, 1e-9)


def _interslice_size(codec: InterSliceCodec, samples: list[Sample]) -> int | None:
    """Expected size with a keyframe every K frames: key/K + residual*(K-1)/K per frame."""
    k = codec.keyframe_interval
    total = 0.0
    try:
        for arr, prev in samples:
            key = len(codec.encode(arr))
            total += key if prev is None else key / k + len(codec.encode_delta(arr, prev)) * (k - 1) / k
    except CodecError:
        return None
    return int(total)


def choose_codec(sources: list[SeriesSource], requested: str) -> tuple[str, dict[str, int | None]]:
    """Return the codec name to store (``interslice:<base>`` for interslice) and the trial sizes."""
    if requested != "auto":
        codec = get_codec(requested)
        if not codec.available():
            raise ValueError(f"codec {requested!r} is not available here")
        return codec.name, {}
    samples = sample_frames(sources)
    if not samples:
        return "zstd", {}  # nothing a frame codec could code: the choice is moot
    sizes: dict[str, int | None] = {}
    speed: dict[str, float] = {}
    for name in available_codecs():
        if name != "interslice":
            got = _trial(get_codec(name), samples)
            sizes[name] = got[0] if got else None
            if got:
                speed[name] = got[1]
    fast = [n for n, mbps in speed.items() if mbps >= MIN_DECODE_MBPS] or list(speed)
    if not fast:
        return "zstd", sizes
    best = min(fast, key=lambda n: (sizes[n] or 0, n))
    chosen, chosen_size = best, sizes[best] or 0
    if any(prev is not None for _, prev in samples):
        inter = InterSliceCodec(get_codec(best), DEFAULT_KEYFRAME_INTERVAL)
        inter_size = _interslice_size(inter, samples)
        sizes[inter.name] = inter_size
        if inter_size is not None and inter_size < chosen_size:
            chosen = inter.name
    return chosen, sizes
