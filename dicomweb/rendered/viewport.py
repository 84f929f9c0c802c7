"""Source region and viewport (PS3.18 8.3.5.1.3), applied after the presentation transforms."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..http.problems import HTTPProblem
from .params import Viewport


def region(pixels: np.ndarray, vp: Viewport) -> np.ndarray:
    """The source rectangle (clipped to the image), flipped where its width or height is negative."""
    rows, cols = pixels.shape[:2]
    if vp.sx >= cols or vp.sy >= rows:
        raise HTTPProblem(400, f"the viewport's source region starts at ({vp.sx},{vp.sy}), outside the "
                               f"{cols}x{rows} image")
    sw = vp.sw if vp.sw is not None else cols - vp.sx
    sh = vp.sh if vp.sh is not None else rows - vp.sy
    out = pixels[vp.sy:vp.sy + abs(sh), vp.sx:vp.sx + abs(sw)]
    if sw < 0:
        out = out[:, ::-1]
    if sh < 0:
        out = out[::-1]
    return out


def fit(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest size with the image's aspect ratio inside the box."""
    scale = min(box_w / width, box_h / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def apply(pixels: np.ndarray, vp: Viewport | None) -> Image.Image:
    """Display values (uint8) to a Pillow image of the viewport's size (aspect ratio kept)."""
    if vp is not None and (vp.sx or vp.sy or vp.sw is not None or vp.sh is not None):
        pixels = region(pixels, vp)
    image = Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB")
    if vp is None:
        return image
    size = fit(image.width, image.height, vp.width, vp.height)
    if size == image.size:
        return image
    # Lanczos keeps edges crisp; the reducing gap makes large reductions (thumbnails) cheap.
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0 if size[0] < image.width else None)
