"""The profile applied to DICOM JSON (PS3.18 F.2) as QIDO and WADO metadata answer it; the input is not mutated."""

from __future__ import annotations

import re
from typing import Any

from .profile import BASIC_CODE, MODIFIED_DATES_CODE, Op, dictionary_vr, dummy_value, operation, shift
from .replacer import Replacer

_URL_VRS = frozenset({"UR"})
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")


def _person(text: str) -> dict[str, str]:
    return {"Alphabetic": text}


def _copy_values(values: list[Any]) -> list[Any]:
    return [dict(v) if isinstance(v, dict) else v for v in values]


def _kept(vr: str, element: dict[str, Any], r: Replacer) -> dict[str, Any]:
    out: dict[str, Any] = {"vr": vr}
    if "Value" in element:
        values = _copy_values(list(element["Value"]))
        if vr in _URL_VRS:
            values = [r.url(v) if isinstance(v, str) else v for v in values]
        out["Value"] = values
    if "InlineBinary" in element:
        out["InlineBinary"] = element["InlineBinary"]
    if isinstance(element.get("BulkDataURI"), str):
        out["BulkDataURI"] = r.url(element["BulkDataURI"])
    return out


def _element(tag: int, element: dict[str, Any], r: Replacer) -> dict[str, Any] | None:
    vr = str(element.get("vr") or dictionary_vr(tag))
    op = operation(tag, dictionary_vr(tag) if vr == "UN" else vr, r.dates)
    binary = "Value" not in element and ("InlineBinary" in element or "BulkDataURI" in element)
    if op is Op.REMOVE or (op not in (Op.KEEP, Op.EMPTY) and (vr == "UN" or binary)):
        return None  # values the profile changes cannot be changed inside opaque bytes: drop them
    if op is Op.KEEP:
        return _kept(vr, element, r)
    if op is Op.EMPTY:
        return {"vr": vr}
    values = list(element.get("Value", []))
    if op is Op.RECURSE:
        return {"vr": vr, "Value": [walk(item, r) for item in values if isinstance(item, dict)]}
    if op is Op.RESEARCH_ID:
        return {"vr": vr, "Value": [_person(r.research_id) if vr == "PN" else r.research_id]}
    if op is Op.UID:
        return {"vr": vr, "Value": [r.uid(v) for v in values if isinstance(v, str)]}
    if op is Op.SHIFT:
        moved = [shift(v, vr, r.days) for v in values if isinstance(v, str)]
        kept = [v for v in moved if v is not None]
        return {"vr": vr, "Value": kept} if kept else {"vr": vr}
    dummy = dummy_value(vr)  # Op.DUMMY
    if dummy is None:
        return None
    return {"vr": vr, "Value": [_person(dummy) if vr == "PN" else dummy]}


def walk(obj: dict[str, Any], r: Replacer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, element in obj.items():
        if not isinstance(key, str) or not _TAG.match(key) or not isinstance(element, dict):
            continue  # not an attribute: nothing a client could rely on, and it might carry anything
        new = _element(int(key, 16), element, r)
        if new is not None:
            out[key.upper()] = new
    return out


def markers(dates: str) -> dict[str, Any]:
    """Patient Identity Removed, the method and its codes, Longitudinal Temporal Information Modified."""
    codes = [BASIC_CODE] + ([MODIFIED_DATES_CODE] if dates == "modified" else [])
    items = [
        {"00080100": {"vr": "SH", "Value": [value]}, "00080102": {"vr": "SH", "Value": ["DCM"]},
         "00080104": {"vr": "LO", "Value": [meaning]}}
        for value, meaning in codes
    ]
    return {
        "00120062": {"vr": "CS", "Value": ["YES"]},
        "00120063": {"vr": "LO", "Value": [method_text(dates)]},
        "00120064": {"vr": "SQ", "Value": items},
        "00280303": {"vr": "CS", "Value": ["MODIFIED" if dates == "modified" else "REMOVED"]},
    }


def method_text(dates: str) -> str:
    return "PS3.15 E.1 Basic Profile" + (" with Retain Long. Modified Dates" if dates == "modified" else "")
