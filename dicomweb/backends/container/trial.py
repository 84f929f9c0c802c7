"""``codec="auto"``: code a few frames spread across the series with every candidate codec.

The pick is the smallest output among the candidates that keep reads interactive: decoding at least
``MIN_DECODE_MBPS`` of pixels per core in sequence and any single frame within ``MAX_FRAME_MS``
(issue 8's goals for the container). Interslice candidates are tried over every base codec; one random
frame of theirs costs a whole keyframe chain (up to K decodes), which the latency bound accounts for.
When no candidate meets both bounds the fastest one wins, so a hard series never becomes a slow one.

Decode cost is measured in CPU time of the packing thread (``time.thread_time``), not wall time: on a
busy machine wall time mostly measures the other processes, and the choice must not depend on them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

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
MIN_DECODE_MBPS = 100.0
MAX_FRAME_MS = 20.0
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


@dataclass(frozen=True)
class Candidate:
    """One way to store the series, as measured on the sample frames."""

    name: str
    size: int  # expected bytes for the sample frames
    frame_seconds: float  # CPU seconds to decode one frame read in sequence
    random_frame_seconds: float  # ... one frame read alone, at worst (a whole keyframe chain for interslice)

    def decode_mbps(self, frame_bytes: float) -> float:
        return frame_bytes / 1e6 / max(self.frame_seconds, 1e-9)

    def random_frame_ms(self) -> float:
        return self.random_frame_seconds * 1e3


def pick(candidates: list[Candidate], frame_bytes: float, min_decode_mbps: float = MIN_DECODE_MBPS,
         max_frame_ms: float = MAX_FRAME_MS) -> Candidate:
    """The smallest candidate within both read bounds; the fastest when none is (ties: by name)."""
    if not candidates:
        raise ValueError("no candidate codec")
    fit = [c for c in candidates
           if c.decode_mbps(frame_bytes) >= min_decode_mbps and c.random_frame_ms() <= max_frame_ms]
    if fit:
        return min(fit, key=lambda c: (c.size, c.name))
    return min(candidates, key=lambda c: (c.random_frame_seconds, c.size, c.name))


def _cpu_seconds(fn: Callable[..., object], *args: object) -> float:
    """Least CPU time of two runs of ``fn(*args)``: the first may pay for caches and imports."""
    best = float("inf")
    for _ in range(2):
        t0 = time.thread_time()
        fn(*args)
        best = min(best, time.thread_time() - t0)
    return best


def _measure(codec: FrameCodec, samples: list[Sample]) -> tuple[Candidate, list[int]] | None:
    """``codec`` coding every sample frame on its own, and each one's coded size; ``None`` if it cannot code
    one of them."""
    sizes, seconds = [], 0.0
    for arr, _ in samples:
        if not codec.supports(arr.shape, arr.dtype):
            return None
        try:
            data = codec.encode(arr)
            seconds += _cpu_seconds(codec.decode, data, arr.shape, arr.dtype)
        except CodecError as exc:
            log.debug("codec %s failed on a sample frame: %s", codec.name, exc)
            return None
        sizes.append(len(data))
    per_frame = seconds / len(samples)
    return Candidate(codec.name, sum(sizes), per_frame, per_frame), sizes


def _measure_interslice(codec: InterSliceCodec, base: Candidate, key_sizes: list[int],
                        samples: list[Sample]) -> Candidate | None:
    """Expected size with a keyframe every K frames (key/K + residual*(K-1)/K per frame) and decode cost.
    ``key_sizes``: each sample coded as a keyframe, which is how ``base`` measured it."""
    k = codec.keyframe_interval
    total, seconds, deltas = 0.0, 0.0, 0
    try:
        for (arr, prev), key in zip(samples, key_sizes, strict=True):
            if prev is None:
                total += key
                continue
            delta = codec.encode_delta(arr, prev)
            total += key / k + len(delta) * (k - 1) / k
            seconds += _cpu_seconds(codec.decode_delta, delta, arr.shape, arr.dtype, prev)
            deltas += 1
    except CodecError:
        return None
    if not deltas:
        return None
    residual = seconds / deltas
    # In sequence: one keyframe decode then K-1 residual decodes, each reusing the frame before it.
    # Alone, at worst: the last frame of a chain, its keyframe and every residual up to it.
    in_sequence = (base.frame_seconds + residual * (k - 1)) / k
    return Candidate(codec.name, int(total), in_sequence, base.frame_seconds + residual * (k - 1))


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
    bases: list[tuple[Candidate, list[int]]] = []
    for name in available_codecs():
        if name == "interslice":
            continue
        measured = _measure(get_codec(name), samples)
        sizes[name] = measured[0].size if measured else None
        if measured:
            bases.append(measured)
    if not bases:
        return "zstd", sizes
    candidates = [base for base, _ in bases]
    if any(prev is not None for _, prev in samples):
        for base, key_sizes in bases:
            inter = InterSliceCodec(get_codec(base.name), DEFAULT_KEYFRAME_INTERVAL)
            inter_measured = _measure_interslice(inter, base, key_sizes, samples)
            sizes[inter.name] = inter_measured.size if inter_measured else None
            if inter_measured:
                candidates.append(inter_measured)
    frame_bytes = sum(a.nbytes for a, _ in samples) / len(samples)
    chosen = pick(candidates, frame_bytes)
    log.info("auto codec: %s (%.0f MB/s per core, %.1f ms a random frame, %d bytes for the sample)",
             chosen.name, chosen.decode_mbps(frame_bytes), chosen.random_frame_ms(), chosen.size)
    return chosen.name, sizes
