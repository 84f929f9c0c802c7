"""The profile applied to a pydicom Dataset in place (the caller passes a copy); Pixel Data is not touched."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from .json_walk import method_text
from .profile import (
    BASIC_CODE,
    MEDIA_STORAGE_SOP_INSTANCE,
    MODIFIED_DATES_CODE,
    Op,
    dictionary_vr,
    dummy_value,
    operation,
    shift,
)
from .replacer import Replacer

# File meta attributes naming the sending system or carrying private data.
_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)


def _texts(value: Any) -> list[str] | None:
    """The values of a string element as a list, or None when it holds something else (bytes, numbers)."""
    if value is None or value == "":
        return []
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    return [str(v) for v in items] if all(isinstance(v, (str, PersonName)) for v in items) else None


def _set(elem: DataElement, values: list[str]) -> None:
    elem.value = values[0] if len(values) == 1 else (values or None)


def _apply(ds: Dataset, tag: int, elem: DataElement, r: Replacer) -> None:
    vr = elem.VR
    op = operation(tag, dictionary_vr(tag) if vr == "UN" or " or " in vr else vr, r.dates)
    if op is Op.KEEP:
        if vr == "UR" and isinstance(elem.value, str):
            elem.value = r.url(elem.value)
        return
    if op is Op.EMPTY:
        elem.value = Sequence() if vr == "SQ" else None
        return
    if op is Op.RECURSE and vr == "SQ":
        for item in elem.value:
            walk(item, r)
        return
    texts = _texts(elem.value) if vr not in ("UN", "SQ") else None
    if op is Op.REMOVE or texts is None or op is Op.RECURSE:
        del ds[tag]
    elif op is Op.RESEARCH_ID:
        elem.value = r.research_id
    elif op is Op.UID:
        _set(elem, [r.uid(v) for v in texts])
    elif op is Op.SHIFT:
        _set(elem, [m for m in (shift(v, vr, r.days) for v in texts) if m is not None])
    else:  # Op.DUMMY
        dummy = dummy_value(vr)
        if dummy is None:
            del ds[tag]
        else:
            elem.value = dummy


def walk(ds: Dataset, r: Replacer) -> None:
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot convert cannot be checked either: drop it
            del ds[tag]
            continue
        _apply(ds, int(tag), elem, r)


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def mark(ds: Dataset, dates: str) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = method_text(dates)
    codes = [BASIC_CODE] + ([MODIFIED_DATES_CODE] if dates == "modified" else [])
    ds.DeidentificationMethodCodeSequence = Sequence([_code(v, m) for v, m in codes])
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates == "modified" else "REMOVED"


def walk_file_meta(ds: Dataset, r: Replacer) -> None:
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in _META_REMOVED:
        if tag in meta:
            del meta[tag]
    if MEDIA_STORAGE_SOP_INSTANCE in meta:
        meta[MEDIA_STORAGE_SOP_INSTANCE].value = r.uid(str(meta[MEDIA_STORAGE_SOP_INSTANCE].value))
