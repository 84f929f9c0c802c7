"""What the profile does to one attribute, and the value transforms shared by the JSON and pydicom walkers.

Combined action codes are resolved without knowing the IOD's attribute types: zero length where the table
allows it (valid for Type 2 and 3), else removal, else a dummy value; a sequence marked U* keeps its items
with their instance UIDs replaced, and a sequence marked D alone is emptied (a "dummy" item would keep the
coded identifiers inside it).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from enum import Enum

from pydicom.datadict import dictionary_VR, keyword_for_tag

from .table import BASIC, MODIFIED_DATES

PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
MEDIA_STORAGE_SOP_INSTANCE = 0x00020003
PATIENT_IDENTITY_REMOVED = 0x00120062
DEIDENTIFICATION_METHOD = 0x00120063
DEIDENTIFICATION_METHOD_CODES = 0x00120064
LONGITUDINAL_TEMPORAL_MODIFIED = 0x00280303
# Attributes this module writes itself; their stored values are replaced, never passed through.
MARKERS = frozenset({PATIENT_IDENTITY_REMOVED, DEIDENTIFICATION_METHOD, DEIDENTIFICATION_METHOD_CODES,
                     LONGITUDINAL_TEMPORAL_MODIFIED})

BASIC_CODE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES_CODE = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")

# DICOM-defined UIDs (classes, transfer syntaxes, well-known instances) identify nobody.
DICOM_ROOT = "1.2.840.10008."
# UI attributes the table does not name that hold class, syntax or scheme identifiers, not instance ones;
# every other UI attribute outside the table is replaced, so a new kind of instance UID cannot leak.
_CLASS_UID_KEYWORD = re.compile(r"SOPClass|TransferSyntax|CodingScheme|^(Context|MappingResource|CreatorVersion"
                                r"|ImplementationClass|RepositoryUnique|HomeCommunity|RetrieveLocation)")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)+$")


class Op(Enum):
    KEEP = "keep"
    REMOVE = "remove"
    EMPTY = "empty"
    DUMMY = "dummy"
    UID = "uid"
    SHIFT = "shift"  # dates moved by the patient's offset (Retain Longitudinal ... Modified Dates)
    RECURSE = "recurse"  # a sequence kept, its items de-identified
    RESEARCH_ID = "research-id"  # PatientName, PatientID: the stable research ID


def dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def is_overlay_or_curve(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return 0x5000 <= group <= 0x50FF or (0x6000 <= group <= 0x60FF and element in (0x3000, 0x4000))


def _class_uid(tag: int) -> bool:
    return bool(_CLASS_UID_KEYWORD.search(keyword_for_tag(tag) or ""))


def _resolve(code: str, vr: str) -> Op:
    options = set(code.split("/"))
    if vr == "SQ":
        if "U*" in options or options == {"K"}:
            return Op.RECURSE
        if "Z" in options or options == {"D"}:
            return Op.EMPTY
        return Op.REMOVE
    if "U" in options or "U*" in options:
        return Op.UID if vr == "UI" else Op.REMOVE
    if options == {"K"}:
        return Op.KEEP
    if "Z" in options:
        return Op.EMPTY
    if "X" in options:
        return Op.REMOVE
    return Op.DUMMY


def operation(tag: int, vr: str, dates: str) -> Op:
    """The operation for one attribute of VR ``vr`` (UN/ambiguous: pass the dictionary VR) under ``dates``."""
    if tag >> 16 & 1 or is_overlay_or_curve(tag):
        return Op.REMOVE  # private attributes (Basic Profile default), curves, overlay data and comments
    if tag in (PATIENT_NAME, PATIENT_ID):
        return Op.RESEARCH_ID
    if tag in MARKERS:
        return Op.REMOVE  # written afresh by the caller
    if dates == "modified" and tag in MODIFIED_DATES:
        return Op.KEEP if vr == "TM" else Op.SHIFT  # times of day identify no one without their date
    code = BASIC.get(tag)
    if code is not None:
        return _resolve(code, vr)
    if vr == "SQ":
        return Op.RECURSE
    if vr == "UI" and not _class_uid(tag):
        return Op.UID
    return Op.KEEP


def replaceable_uid(value: str) -> bool:
    """Whether a UI value is an instance identifier to pseudonymize (not empty, not DICOM-defined)."""
    return bool(_UID.match(value)) and not value.startswith(DICOM_ROOT)


_DUMMY = {"DA": "19000101", "DT": "19000101000000", "TM": "000000", "IS": "0", "DS": "0", "AS": "000D"}
_DUMMY_TEXT = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})


def dummy_value(vr: str) -> str | None:
    """A harmless non-empty value of this VR, or None where only removal is safe (binary, numbers)."""
    if vr in _DUMMY:
        return _DUMMY[vr]
    if vr in _DUMMY_TEXT:
        return "ANONYMIZED"
    return None


def shift_date(value: str, days: int) -> str | None:
    """A DA value (YYYYMMDD) moved by ``days``; None when it is not a date (the caller empties it)."""
    text = value.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:])) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return moved.strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str | None:
    """A DT value with its date part moved; time and UTC offset kept. None when it has no full date."""
    text = value.strip()
    moved = shift_date(text[:8], days)
    return None if moved is None else moved + text[8:]


def shift(value: str, vr: str, days: int) -> str | None:
    if vr == "DA":
        return shift_date(value, days)
    if vr == "DT":
        return shift_datetime(value, days)
    return value
