"""Series container benchmark: lossless codecs side by side on real CT/MR series and a synthetic CT.

    python bench/container_bench.py [--quick] [--data DIR] [--slices N]

For each series: compression ratio (original files / container, headers included), encode MB/s (codec
only, in-memory frames), decode MB/s (sequential read_frame from a packed container file, CRC checks
included) and single-frame latency (p50 of read_frame on random frames, cold cache). MB = 10**6 bytes
of native pixel data; one core (codecs run single-threaded). The synthetic series comes from
shared/tools/peers/gen_data.py and is labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dicomweb.backends.container import SeriesContainer, pack_series
from dicomweb.backends.container.frames import frame_array
from dicomweb.backends.container.layout import analyze
from dicomweb.plugins.codecs import (
    DEFAULT_KEYFRAME_INTERVAL,
    InterSliceCodec,
    available_codecs,
    get_codec,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DICOMWEB_TEST_DATA", ROOT / ".." / "shared" / "data")).resolve()
GEN = Path(os.environ.get("DICOMWEB_GEN_DATA", ROOT / ".." / "shared" / "tools" / "peers" / "gen_data.py"))
NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
CODECS = ["gzip", "zstd", "jpegls", "j2k", "htj2k", "jpegxl", "ffv1", "interslice", "auto"]
LATENCY_SAMPLES = 15


@dataclass
class Row:
    codec: str
    ratio: float
    enc: float
    dec: float
    p50_ms: float
    size: int


def real_series(data: Path) -> list[tuple[str, list[Path]]]:
    entries = json.loads((data / "INDEX.json").read_text())
    groups: dict[str, dict[str, Path]] = defaultdict(dict)
    labels: dict[str, str] = {}
    for e in sorted(entries, key=lambda e: e["path"]):
        wanted = e.get("valid") and e.get("modality") in ("CT", "MR") and e.get("transfer_syntax") in NATIVE
        if wanted and e.get("rows") and e["sop_instance_uid"] not in groups[e["series_uid"]]:
            groups[e["series_uid"]][e["sop_instance_uid"]] = data / e["path"]
            labels.setdefault(e["series_uid"], f"{e['modality']} {e['path']}")
    return [(labels[s], list(files.values())) for s, files in groups.items() if files]


def load_frames(paths: list[Path]) -> tuple[list[np.ndarray], int]:
    frames: list[np.ndarray] = []
    for p in paths:
        with open(p, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            lay = analyze(f, 0, size)
            if lay is None or lay.mode != "native" or lay.dtype is None:
                continue
            for s, e in lay.blocks:
                f.seek(s)
                frames.append(frame_array(f.read(e - s), lay.dtype, lay.shape, lay.planar))
    return frames, sum(a.nbytes for a in frames)


def encode_seconds(name: str, frames: list[np.ndarray], base: str) -> float:
    codec = get_codec(f"interslice:{base}" if name == "interslice" else name)
    t0 = time.perf_counter()
    for i, arr in enumerate(frames):
        prev = frames[i - 1] if i else None
        if (
            isinstance(codec, InterSliceCodec)
            and i % DEFAULT_KEYFRAME_INTERVAL
            and prev is not None
            and prev.shape == arr.shape
            and prev.dtype == arr.dtype
        ):
            codec.encode_delta(arr, prev)
        elif codec.supports(arr.shape, arr.dtype):
            codec.encode(arr)
        else:
            get_codec("zstd").encode(arr)
    return time.perf_counter() - t0


def measure(name: str, paths: list[Path], frames: list[np.ndarray], pixel_bytes: int, tmp: Path) -> Row:
    target = tmp / f"{name}.dcms"
    with open(target, "wb") as out:
        report = pack_series(paths, out, codec=name)
    enc_codec = report.codec.split(":")[0]
    enc_s = encode_seconds(enc_codec, frames, report.codec.partition(":")[2] or "jpegls")
    with open(target, "rb") as f:
        c = SeriesContainer.open(f)
        keys = [(u, n) for u in c.instance_uids() for n in range(1, c.number_of_frames(u) + 1)]
        t0 = time.perf_counter()
        for uid, n in keys:
            c.read_frame(uid, n)
        dec_s = time.perf_counter() - t0
        lat = []
        for uid, n in random.Random(1).choices(keys, k=LATENCY_SAMPLES):
            cold = SeriesContainer.open(f)
            t0 = time.perf_counter()
            cold.read_frame(uid, n)
            lat.append(time.perf_counter() - t0)
    label = f"auto={report.codec}" if name == "auto" else report.codec
    mb = pixel_bytes / 1e6
    return Row(label, report.ratio, mb / enc_s, mb / dec_s, statistics.median(lat) * 1e3, report.bytes_out)


def per_frame_jpegls_size(paths: list[Path], frames: list[np.ndarray], pixel_bytes: int) -> int:
    """Size of the same files stored as JPEG-LS Lossless DICOM: headers + one codestream per frame
    (+ 8-byte item per fragment, an empty offset table and the sequence delimiter per file)."""
    jls = get_codec("jpegls")
    coded = sum(len(jls.encode(a)) + 8 for a in frames)
    return sum(p.stat().st_size for p in paths) - pixel_bytes + coded + 16 * len(paths)


def bench_series(label: str, paths: list[Path], quick: bool) -> None:
    frames, pixel_bytes = load_frames(paths)
    if not frames:
        return
    shape = f"{len(paths)} files, {len(frames)} frames {frames[0].shape} {frames[0].dtype}"
    print(f"\n## {label}  ({shape}, {pixel_bytes / 1e6:.1f} MB pixels)")
    names = [n for n in CODECS if n == "auto" or n in available_codecs()]
    if quick:
        names = [n for n in names if n not in ("j2k",)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in names:
            rows.append(measure(name, paths, frames, pixel_bytes, Path(tmp)))
    print(f"{'codec':24} {'ratio':>7} {'enc MB/s':>9} {'dec MB/s':>9} {'1-frame p50 ms':>15} {'bytes':>12}")
    for r in rows:
        print(f"{r.codec:24} {r.ratio:7.3f} {r.enc:9.1f} {r.dec:9.1f} {r.p50_ms:15.2f} {r.size:12d}")
    auto = rows[-1]
    jls = per_frame_jpegls_size(paths, frames, pixel_bytes)
    gain = 1 - auto.size / jls
    print(
        f"goals: container {auto.size} B vs per-frame JPEG-LS {jls} B: {gain:+.1%} smaller "
        f"(goal >= 20%: {'met' if gain >= 0.2 else 'NOT met'}); decode {auto.dec:.0f} MB/s "
        f"(goal >= 100: {'met' if auto.dec >= 100 else 'NOT met'}); one frame {auto.p50_ms:.1f} ms "
        f"(goal < 20: {'met' if auto.p50_ms < 20 else 'NOT met'})"
    )


def noise_floor(frames: list[np.ndarray], sigma: float, padding: int = -2000) -> None:
    """What no lossless coder can beat on the generator's series: its i.i.d. Gaussian noise.

    Even a coder that knew the noiseless phantom exactly would still code the rounded noise of every pixel
    inside the field of view, at least 0.5*log2(2*pi*e*sigma**2) bits each (the padding is free).
    """
    inside = sum(int(np.count_nonzero(a != padding)) for a in frames)
    bits = 0.5 * np.log2(2 * np.pi * np.e * sigma**2)
    floor = inside * bits / 8
    jls = get_codec("jpegls")
    coded = sum(len(jls.encode(a)) for a in frames)
    print(f"noise floor (sigma {sigma:g} HU, {bits:.2f} bits a pixel in the FOV): {floor:.0f} B of pixel data "
          f"vs per-frame JPEG-LS {coded} B: no lossless coder can be more than {1 - floor / coded:.1%} smaller")


def synthetic(tmp: Path, slices: int) -> list[Path]:
    subprocess.run(
        [sys.executable, str(GEN), "ct", "--out", str(tmp), "--slices", str(slices)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return sorted(tmp.glob("*.dcm"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 synthetic slices, 3 real series, no J2K")
    parser.add_argument("--slices", type=int, default=200, help="synthetic CT slices (default 200)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    print(
        f"codecs available: {', '.join(available_codecs())}; interslice keyframe every "
        f"{DEFAULT_KEYFRAME_INTERVAL} frames"
    )
    series = real_series(args.data) if (args.data / "INDEX.json").is_file() else []
    for label, paths in series[:3] if args.quick else series:
        bench_series(f"real {label}", paths, args.quick)
    if GEN.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            paths = synthetic(Path(tmp), 40 if args.quick else args.slices)
            bench_series(f"SYNTHETIC CT ({len(paths)} slices, gen_data.py)", paths, args.quick)
            noise_floor(load_frames(paths)[0], sigma=12.0)  # gen_data.ct_series' default noise_hu
    else:
        print(f"\n(no synthetic series: {GEN} not found)")


if __name__ == "__main__":
    main()
