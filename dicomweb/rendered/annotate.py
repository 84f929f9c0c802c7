"""Burned-in annotation (PS3.18 8.3.5.1.1): patient identity at the top, technique at the bottom."""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from .params import Window


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _text(header: Dataset, keyword: str) -> str:
    value = header.get(keyword)
    return "" if value is None else str(value).replace("^", " ").strip()


def patient_lines(header: Dataset) -> list[str]:
    born = _text(header, "PatientBirthDate")
    first = " ".join(t for t in (_text(header, "PatientName"), _text(header, "PatientSex")) if t)
    second = " ".join(t for t in (f"ID {_text(header, 'PatientID')}" if _text(header, "PatientID") else "",
                                  f"born {born}" if born else "") if t)
    return [line for line in (first, second) if line]


def technique_lines(header: Dataset, frame: int, frames: int, win: Window | None) -> list[str]:
    first = " ".join(t for t in (_text(header, "Modality"), _text(header, "StudyDate"),
                                 _text(header, "SeriesDescription")) if t)
    second = [f"frame {frame}/{frames}"] if frames > 1 else []
    if win is not None:
        second.append(f"WL {win.center:g} WW {win.width:g}")
    return [line for line in (first, " ".join(second)) if line]


def burn(image: Image.Image, top: list[str], bottom: list[str]) -> Image.Image:
    """Text in white with a dark outline, readable on any image; sized to the image."""
    if not top and not bottom:
        return image
    image = image.copy()
    draw = ImageDraw.Draw(image)
    size = max(8, min(24, image.height // 24))
    font = _font(size)
    fill, stroke = (255 if image.mode == "L" else (255, 255, 255)), (0 if image.mode == "L" else (0, 0, 0))
    for n, line in enumerate(top):
        draw.text((4, 2 + n * (size + 2)), line, font=font, fill=fill, stroke_width=1, stroke_fill=stroke)
    for n, line in enumerate(reversed(bottom)):
        y = image.height - (n + 1) * (size + 2) - 2
        draw.text((4, y), line, font=font, fill=fill, stroke_width=1, stroke_fill=stroke)
    return image
