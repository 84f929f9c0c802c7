"""Uniform, re-openable access to pack inputs (paths or binary file objects)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

import pydicom

Source = BinaryIO | str | os.PathLike[str]


class SeriesSource:
    """One input file; ``open()`` yields ``(file, start, size)`` positioned at the file's start.

    A non-seekable stream is spooled to an anonymous temporary file once, so it can be read twice
    (codec sampling, then packing) without holding it in memory.
    """

    def __init__(self, src: Source) -> None:
        self.path: str | None = None
        self.file: BinaryIO | None = None
        self.start = 0
        if isinstance(src, str | os.PathLike):
            self.path = os.fspath(src)
        elif _seekable(src):
            self.file, self.start = src, src.tell()
        else:
            spool: BinaryIO = tempfile.TemporaryFile()
            shutil.copyfileobj(src, spool, 1 << 20)
            self.file = spool

    @contextmanager
    def open(self) -> Iterator[tuple[BinaryIO, int, int]]:
        if self.path is not None:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                yield f, 0, size
            return
        assert self.file is not None
        size = self.file.seek(0, os.SEEK_END) - self.start
        self.file.seek(self.start)
        yield self.file, self.start, size

    def __repr__(self) -> str:
        return f"SeriesSource({self.path or self.file!r})"


def _seekable(f: BinaryIO) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, OSError):
        return False


def slice_order(sources: list[SeriesSource]) -> list[SeriesSource]:
    """Sort by position along the slice normal, then Instance Number; unknowns keep input order.

    Only the interslice codec cares (neighbours should be spatial neighbours); reading three tags per
    file costs about a millisecond.
    """
    keys: list[tuple[float, float, int]] = []
    for i, src in enumerate(sources):
        pos, number = math.inf, math.inf
        try:
            with src.open() as (f, _start, _size):
                ds = pydicom.dcmread(
                    f,
                    stop_before_pixels=True,
                    force=True,
                    specific_tags=["ImagePositionPatient", "ImageOrientationPatient", "InstanceNumber"],
                )
            if "InstanceNumber" in ds and ds.InstanceNumber is not None:
                number = float(ds.InstanceNumber)
            ipp, iop = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
            if ipp is not None and iop is not None and len(ipp) == 3 and len(iop) == 6:
                r, c = [float(v) for v in iop[:3]], [float(v) for v in iop[3:]]
                normal = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
                pos = sum(float(p) * n for p, n in zip(ipp, normal, strict=True))
        except Exception:  # an unreadable header just keeps its place; packing will judge the file
            pass
        keys.append((pos, number, i))
    return [sources[k[2]] for k in sorted(keys)]
