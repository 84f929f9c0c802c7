"""Rendering one frame or a cine of a stored instance, series or study, with the output cached.

Everything here is blocking (file reads, decoding, encoding): routes call it through a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image
from pydicom.dataset import Dataset

from ..archive import Archive
from ..http.problems import HTTPProblem
from ..services.retrieve import StoredInstance
from . import annotate, encode
from .cache import RenderCache, render_key
from .display import display
from .params import ANIMATED, RenderParams, Viewport
from .pixels import CannotRender, HeaderCache, decode_frame, has_pixels
from .viewport import apply

DEFAULT_FPS = 10.0
MAX_CINE_FRAMES = 1000  # a cine holds its frames in memory while encoding


@dataclass(frozen=True)
class FrameRef:
    instance: StoredInstance
    index: int  # 0-based

    @property
    def number(self) -> int:
        return self.index + 1


def is_image(inst: StoredInstance) -> bool:
    return has_pixels(inst)


def representative(instances: Sequence[StoredInstance]) -> FrameRef | None:
    """The middle frame of the middle image of the first series that has images (instances come ordered)."""
    images = [i for i in instances if is_image(i)]
    if not images:
        return None
    series = [i for i in images if i.series_instance_uid == images[0].series_instance_uid]
    middle = series[(len(series) - 1) // 2]
    return FrameRef(middle, (max(1, middle.number_of_frames) - 1) // 2)


def all_frames(instances: Sequence[StoredInstance]) -> list[FrameRef]:
    return [FrameRef(i, n) for i in instances if is_image(i) for n in range(max(1, i.number_of_frames))]


def frames_per_second(header: Dataset) -> float:
    """Frame Time (ms), else Cine Rate, else Recommended Display Frame Rate, else 10."""
    try:
        if header.get("FrameTime"):
            return min(120.0, max(0.5, 1000.0 / float(header.FrameTime)))
        for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
            if header.get(keyword):
                return min(120.0, max(0.5, float(header.get(keyword))))
    except (TypeError, ValueError, ZeroDivisionError):
        pass
    return DEFAULT_FPS


class Renderer:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.settings = archive.settings
        self.headers = HeaderCache()
        self.cache = RenderCache(self.settings.render_cache_bytes, self.settings.data_dir / "rendered-cache")

    def image(self, ref: FrameRef, params: RenderParams) -> Image.Image:
        """One frame through the whole pipeline: decode, LUTs, region, viewport, annotation."""
        if "patient" in params.annotation and not self.settings.render_patient_annotation:
            raise HTTPProblem(403, "this archive's policy does not allow patient identity burned into images "
                                   "(setting render_patient_annotation)")
        try:
            frame = decode_frame(self.archive.retrieve, self.headers, ref.instance, ref.index)
        except CannotRender as exc:
            raise HTTPProblem(406, f"{exc}; it cannot be given in a rendered media type") from None
        pixels, used_window = display(frame, params.window)
        image = apply(pixels, params.viewport)
        if params.annotation:
            top = annotate.patient_lines(frame.header) if "patient" in params.annotation else []
            bottom = (annotate.technique_lines(frame.header, ref.number, max(1, ref.instance.number_of_frames),
                                               used_window) if "technique" in params.annotation else [])
            image = annotate.burn(image, top, bottom)
        return image

    def _icc(self, ref: FrameRef, params: RenderParams) -> bytes | None:
        if params.iccprofile == "no":
            return None
        if params.iccprofile == "yes":
            own = self.headers.get(self.archive.retrieve, ref.instance).get("ICCProfile")
            if own:
                return bytes(own)
        return encode.srgb_profile()

    @staticmethod
    def key(kind: str, refs: Sequence[FrameRef], media_type: str, params: RenderParams) -> str:
        return render_key(kind, media_type, params.cache_key(), *(f"{r.instance.sha256}:{r.index}" for r in refs))

    def still(self, ref: FrameRef, media_type: str, params: RenderParams, *, persistent: bool = False) -> bytes:
        key = self.key("still", [ref], media_type, params)
        cached = self.cache.get(key, persistent=persistent)
        if cached is not None:
            return cached
        data = encode.still(self.image(ref, params), media_type, params.quality, self._icc(ref, params))
        self.cache.put(key, data, persistent=persistent)
        return data

    def cine(self, refs: Sequence[FrameRef], media_type: str, params: RenderParams) -> bytes:
        if media_type not in ANIMATED:
            raise ValueError(media_type)
        if len(refs) > MAX_CINE_FRAMES:
            raise HTTPProblem(400, f"a cine of {len(refs)} frames is more than the {MAX_CINE_FRAMES} this server "
                                   "renders at once; ask for a series, an instance or a list of frames")
        key = self.key("cine", refs, media_type, params)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        images = [self.image(ref, params) for ref in refs]
        fps = frames_per_second(self.headers.get(self.archive.retrieve, refs[0].instance))
        data = encode.animation(images, media_type, fps, params.quality)
        self.cache.put(key, data)
        return data

    def thumbnail_params(self, params: RenderParams) -> RenderParams:
        """A thumbnail is fitted into the configured square unless the request names a viewport."""
        if params.viewport is not None:
            return params
        side = self.settings.thumbnail_size
        return RenderParams(Viewport(side, side), params.window, params.quality, params.annotation,
                            params.iccprofile)

    def thumbnail(self, ref: FrameRef, media_type: str, params: RenderParams) -> bytes:
        return self.still(ref, media_type, self.thumbnail_params(params), persistent=True)
