"""Stored values to display values (PS3.4 N.2): Modality LUT, VOI LUT or window, MONOCHROME1 inversion,
palette colour, colour depth; the result is always 8 bits per sample, grayscale (rows, cols) or RGB."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

from .params import Window
from .pixels import Frame


def _first(value: Any) -> float:
    """Window Center/Width may be multi-valued; the first pair is the one the modality meant as default."""
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)


def modality(pixels: np.ndarray, header: Dataset) -> np.ndarray:
    if "ModalityLUTSequence" in header:
        return np.asarray(apply_modality_lut(pixels, header))
    slope = float(header.get("RescaleSlope") or 1.0)
    intercept = float(header.get("RescaleIntercept") or 0.0)
    if slope == 1.0 and intercept == 0.0:
        return pixels
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def window(values: np.ndarray, win: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2 onto 0..1 (float32)."""
    x = values.astype(np.float32, copy=False)
    c, w = np.float32(win.center), np.float32(win.width)
    if win.function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflows to inf far below the center: the value is then 0
            return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if win.function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0.0, 1.0)
    return np.clip((x - (c - 0.5)) / (w - 1.0) + 0.5, 0.0, 1.0) if w > 1 else (x > c - 0.5).astype(np.float32)


def dataset_window(header: Dataset) -> Window | None:
    center, width = header.get("WindowCenter"), header.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    try:
        win = Window(_first(center), _first(width), str(header.get("VOILUTFunction") or "LINEAR").upper())
    except (TypeError, ValueError, IndexError):
        return None
    return win if win.width > 0 else None


def _to_u8(unit: np.ndarray) -> np.ndarray:
    return np.rint(unit * 255.0).astype(np.uint8)


def grayscale(frame: Frame, asked: Window | None) -> tuple[np.ndarray, Window | None]:
    """8-bit display values of a grayscale frame, and the window used (for annotation)."""
    header = frame.header
    values = modality(frame.pixels, header)
    used: Window | None = asked
    if asked is not None:
        unit = window(values, asked)
    elif "VOILUTSequence" in header and len(header.VOILUTSequence) > 0:
        # pydicom prefers the VOI LUT to a window when a dataset has both; so do we, to match references.
        out_bits = int(header.VOILUTSequence[0].LUTDescriptor[2])
        lut_out = apply_voi_lut(values, header, index=0, prefer_lut=True)
        unit = np.clip(lut_out.astype(np.float32) / np.float32((1 << out_bits) - 1), 0.0, 1.0)
    elif (used := dataset_window(header)) is not None:
        unit = window(values, used)
    else:
        low, high = float(values.min()), float(values.max())
        if high > low:
            unit = (values.astype(np.float32) - np.float32(low)) / np.float32(high - low)
        else:
            unit = np.zeros(values.shape, dtype=np.float32)
    out = _to_u8(unit)
    if frame.photometric == "MONOCHROME1":
        out = 255 - out
    return out, used


def _depth_to_u8(rgb: np.ndarray, bits: int) -> np.ndarray:
    if rgb.dtype == np.uint8 or bits <= 8:
        return rgb.astype(np.uint8)
    return (rgb.astype(np.uint64) >> np.uint64(bits - 8)).astype(np.uint8)


def colour(frame: Frame) -> np.ndarray:
    header = frame.header
    if frame.photometric == "PALETTE COLOR":
        rgb = np.asarray(apply_color_lut(frame.pixels, header))
        bits = int(header.RedPaletteColorLookupTableDescriptor[2])
        return _depth_to_u8(rgb, 8 if rgb.dtype == np.uint8 else bits)
    bits = int(header.get("BitsStored") or header.get("BitsAllocated") or 8)
    if frame.pixels.dtype.kind == "f":
        low, high = float(frame.pixels.min()), float(frame.pixels.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return np.rint((frame.pixels - low) * scale).astype(np.uint8)
    return _depth_to_u8(frame.pixels, bits)


def display(frame: Frame, asked: Window | None) -> tuple[np.ndarray, Window | None]:
    """Display values: (rows, cols) uint8 grayscale or (rows, cols, 3) uint8 RGB; a window only applies to gray."""
    if frame.photometric == "PALETTE COLOR" or frame.pixels.ndim == 3:
        return colour(frame), None
    return grayscale(frame, asked)
