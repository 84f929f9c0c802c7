"""Encoders: JPEG and PNG for one frame, GIF (Pillow) and MP4 (PyAV, H.264) for a sequence of frames."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from .params import GIF, JPEG, MP4, PNG

DEFAULT_QUALITY = 90


@lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return bytes(profile.tobytes())


def still(image: Image.Image, media_type: str, quality: int | None, icc: bytes | None) -> bytes:
    out = io.BytesIO()
    extra = {"icc_profile": icc} if icc and image.mode == "RGB" else {}
    if media_type == JPEG:
        image.save(out, "JPEG", quality=quality or DEFAULT_QUALITY, **extra)
    elif media_type == PNG:
        image.save(out, "PNG", compress_level=3, **extra)  # level 3: most of the size gain at a fraction of the time
    elif media_type == GIF:
        image.save(out, "GIF")
    else:
        raise ValueError(f"{media_type} is not a still image type")
    return out.getvalue()


def _uniform(images: Sequence[Image.Image]) -> list[Image.Image]:
    """An animation has one size and mode: frames of other instances in a series are fitted to the first."""
    first = images[0]
    mode = "RGB" if any(i.mode == "RGB" for i in images) else "L"
    return [(i if i.size == first.size else i.resize(first.size, Image.Resampling.BILINEAR)).convert(mode)
            for i in images]


def gif(images: Sequence[Image.Image], fps: float) -> bytes:
    frames = _uniform(images)
    out = io.BytesIO()
    duration = max(20, round(1000 / fps))  # browsers clamp faster GIF frames to 100 ms; 20 ms is the floor
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return out.getvalue()


def mp4(images: Sequence[Image.Image], fps: float, quality: int | None) -> bytes:
    frames = _uniform(images)
    # 4:2:0 chroma needs even sides: pad one row/column of the edge rather than scale.
    width, height = frames[0].width + frames[0].width % 2, frames[0].height + frames[0].height % 2
    # faststart (index before the media, so phones play while downloading) rewrites the file: it needs a path.
    with tempfile.TemporaryDirectory(prefix="dicomweb-mp4-") as folder:
        path = Path(folder) / "cine.mp4"
        _write_mp4(path, frames, width, height, fps, quality)
        return path.read_bytes()


def _write_mp4(path: Path, frames: Sequence[Image.Image], width: int, height: int, fps: float,
               quality: int | None) -> None:
    import av  # imported here: PyAV loads FFmpeg, which only cine requests need

    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        rate = max(1, round(fps))
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        crf = 23 if quality is None else max(0, min(51, round(51 - quality * 0.45)))
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for image in frames:
            arr = np.asarray(image.convert("RGB"))
            if arr.shape[:2] != (height, width):
                arr = np.pad(arr, ((0, height - arr.shape[0]), (0, width - arr.shape[1]), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def animation(images: Sequence[Image.Image], media_type: str, fps: float, quality: int | None) -> bytes:
    if media_type == GIF:
        return gif(images, fps)
    if media_type == MP4:
        return mp4(images, fps, quality)
    raise ValueError(f"{media_type} is not an animation type")
