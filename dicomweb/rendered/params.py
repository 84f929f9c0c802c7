"""Rendering query parameters (PS3.18 8.3.5.1) and the rendered media type a request gets (8.7.4).

Parsing never touches storage: a bad value is a 400 before any pixel is read. Unknown parameters are ignored,
as the standard asks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..http.media import parse_accept, parse_media_type
from ..http.problems import HTTPProblem

JPEG, PNG, GIF, MP4 = "image/jpeg", "image/png", "image/gif", "video/mp4"
RENDERED_TYPES = (JPEG, PNG, GIF, MP4)
THUMBNAIL_TYPES = (JPEG, PNG, GIF)
ANIMATED = (GIF, MP4)
MAX_SIDE = 4096  # output pixels a side at most: no screen needs more, and memory must stay bounded
WINDOW_FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "linear_exact": "LINEAR_EXACT",
                    "sigmoid": "SIGMOID"}
ICC_CHOICES = ("no", "yes", "srgb")


@dataclass(frozen=True)
class Viewport:
    width: int
    height: int
    sx: int = 0
    sy: int = 0
    sw: int | None = None  # None: to the image's edge; negative: flipped
    sh: int | None = None


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"  # as VOI LUT Function (0028,1056) spells it


@dataclass(frozen=True)
class RenderParams:
    viewport: Viewport | None = None
    window: Window | None = None
    quality: int | None = None
    annotation: tuple[str, ...] = ()
    iccprofile: str = "no"

    def cache_key(self) -> str:
        """A canonical text of everything that changes the output."""
        return repr((self.viewport, self.window, self.quality, self.annotation, self.iccprofile))


def _int(name: str, text: str, *, minimum: int | None = None) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a whole number, not {text.strip()!r}") from None
    if minimum is not None and value < minimum:
        raise HTTPProblem(400, f"{name} must be at least {minimum}, not {value}")
    return value


def parse_viewport(text: str) -> Viewport:
    """``vw,vh[,sx,sy,sw,sh]``: the output box, then an optional source region (empty values take defaults)."""
    parts = text.split(",")
    if len(parts) not in (2, 6):
        raise HTTPProblem(400, f"viewport must be vw,vh or vw,vh,sx,sy,sw,sh; got {text!r}")
    width, height = (_int(n, p, minimum=1) for n, p in zip(("viewport width", "viewport height"), parts[:2],
                                                             strict=True))
    if max(len(parts[0]), len(parts[1])) > 12:
        raise HTTPProblem(400, f"viewport {text!r} has implausibly long numbers")
    # A larger box is served at the largest size this server makes, not refused: the aspect ratio is kept.
    width, height = min(width, MAX_SIDE), min(height, MAX_SIDE)
    if len(parts) == 2:
        return Viewport(width, height)
    sx, sy = (_int(n, p, minimum=0) if p.strip() else 0 for n, p in zip(("sx", "sy"), parts[2:4], strict=True))
    sw, sh = (_int(n, p) if p.strip() else None for n, p in zip(("sw", "sh"), parts[4:6], strict=True))
    if sw == 0 or sh == 0:
        raise HTTPProblem(400, "the source region of viewport has a zero width or height")
    return Viewport(width, height, sx, sy, sw, sh)


def parse_window(text: str) -> Window:
    """``center,width[,function]`` with function linear (default), linear-exact or sigmoid (PS3.3 C.11.2.1.2)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise HTTPProblem(400, f"window must be center,width[,function]; got {text!r}")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise HTTPProblem(400, f"window center and width must be numbers; got {text!r}") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise HTTPProblem(400, f"window center and width must be finite numbers; got {text!r}")
    function = WINDOW_FUNCTIONS.get(parts[2].lower()) if len(parts) == 3 else "LINEAR"
    if function is None:
        raise HTTPProblem(400, f"window function {parts[2]!r} is not one of linear, linear-exact, sigmoid")
    if (function == "LINEAR" and width < 1) or width <= 0:
        raise HTTPProblem(400, f"window width {parts[1]} is too small (linear needs at least 1, others above 0)")
    return Window(center, width, function)


def parse_params(query: Mapping[str, str]) -> RenderParams:
    viewport = parse_viewport(query["viewport"]) if query.get("viewport") else None
    window = parse_window(query["window"]) if query.get("window") else None
    quality = None
    if query.get("quality"):
        quality = _int("quality", query["quality"], minimum=1)
        if quality > 100:
            raise HTTPProblem(400, f"quality must be 1 to 100, not {quality}")
    annotation: tuple[str, ...] = ()
    if query.get("annotation"):
        words = tuple(dict.fromkeys(w.strip().lower() for w in query["annotation"].split(",") if w.strip()))
        unknown = [w for w in words if w not in ("patient", "technique")]
        if unknown or not words:
            raise HTTPProblem(400, f"annotation takes patient and/or technique; not {', '.join(unknown) or '(empty)'}")
        annotation = words
    icc = (query.get("iccprofile") or "no").strip().lower()
    if icc not in ICC_CHOICES:
        raise HTTPProblem(400, f"iccprofile {icc!r} is not supported; use no, yes or srgb")
    return RenderParams(viewport, window, quality, annotation, icc)


@dataclass(frozen=True)
class Choice:
    media_type: str
    multipart: bool  # the client asked for multipart/related; type=<media_type>


def choose_media(accept_header: str | None, accept_query: str | None, offers: tuple[str, ...]) -> Choice:
    """The first acceptable offer by the client's preference; the ``accept`` query parameter wins (8.3.3.1)."""
    header = accept_query if accept_query else accept_header
    for media_range in parse_accept(header):
        if media_range.essence == "multipart/related":
            inner = media_range.params.get("type", JPEG)
            try:
                wanted = parse_media_type(inner)
            except ValueError:
                raise HTTPProblem(400, f"malformed type parameter {inner!r} in the Accept header") from None
            for offer in offers:
                if wanted.matches(offer):
                    return Choice(offer, True)
            continue
        for offer in offers:
            if media_range.matches(offer):
                return Choice(offer, False)
    raise HTTPProblem(406, f"rendered resources are given as {', '.join(offers)} "
                           "(or multipart/related of image/jpeg or image/png)")
