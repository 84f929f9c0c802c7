"""DIMSE status answers: a code with an Error Comment a PACS admin can read in the peer's log."""

from __future__ import annotations

from pydicom.dataset import Dataset

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
PROCESSING_FAILURE = 0x0110
NO_SUCH_OBJECT = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
NO_SUCH_ACTION = 0x0123
INVALID_ATTRIBUTE_VALUE = 0x0106
DUPLICATE_INSTANCE = 0x0111
IDENTIFIER_MISMATCH = 0xA900  # C-FIND/C-GET/C-MOVE: identifier does not match SOP class
UNABLE_TO_PROCESS = 0xC000
OUT_OF_RESOURCES = 0xA700  # C-STORE: refused, out of resources (PS3.4 B.2.3)


def status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]  # LO: 64 characters at most
    return ds
