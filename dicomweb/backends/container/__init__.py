"""Lossless series archive container: one file per series, random access to frames and headers.

>>> report = pack_series(paths, open("series.dcms", "wb"))
>>> c = SeriesContainer.open(open("series.dcms", "rb"))
>>> c.read_instance(uid) == original_bytes

See :mod:`.format` for the on-disk layout and checksum choice.
"""

from .errors import ContainerCorruptError, ContainerError, InstanceNotFoundError
from .reader import SeriesContainer, VerifyReport
from .writer import PackReport, pack_series

__all__ = [
    "ContainerCorruptError",
    "ContainerError",
    "InstanceNotFoundError",
    "PackReport",
    "SeriesContainer",
    "VerifyReport",
    "pack_series",
]
