"""DICOM JSON values straight from the bytes pydicom read but has not yet converted.

Ingest writes every stored header as DICOM JSON. Going through pydicom's element conversion and then
``DataElement.to_json_dict`` costs about 15 µs per element, most of an instance's encoding time; reading the
common VRs directly from the raw bytes is several times faster. The result must equal pydicom's exactly
(tests/dicom compares both over every file of the shared data), so anything unusual is declined with
``None`` and left to pydicom: implicit VR (the VR comes from the dictionary, some are ambiguous), private
tags, VR UN (pydicom may replace it with the dictionary VR), character sets other than the default,
Latin-1 and UTF-8, and values that do not parse cleanly (an IS of "1.0", a PN with component groups).
"""

from __future__ import annotations

import re
import struct
from functools import cache, lru_cache
from typing import Any

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

# Specific Character Set (0008,0005) values whose decoding is one Python codec (as pydicom maps them).
CODECS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}

_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_SPLIT_STRIPPED = {"CS", "AS", "DA", "TM", "DT"}  # the whole value stripped of trailing padding, then split
_TEXT_SPLIT = {"SH", "LO", "UC"}  # charset-decoded, split, each value stripped
_TEXT_SINGLE = {"ST", "LT", "UT"}  # charset-decoded, one value
_CHARSET_VRS = _TEXT_SPLIT | _TEXT_SINGLE | {"PN"}
_IS = re.compile(r"[ ]*[+-]?[0-9]+[ ]*\Z")
_DS = re.compile(r"[ ]*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[ ]*\Z")


def codec_of(specific_character_set: object) -> str | None:
    """The Python codec for a Specific Character Set value, or None when pydicom must decode."""
    if specific_character_set is None:
        return CODECS[""]
    if isinstance(specific_character_set, str):
        return CODECS.get(specific_character_set.strip())
    return None


def _strings(items: list[str]) -> dict[str, Any]:
    return {"Value": items} if items != [""] else {}


def _numbers(raw: bytes, code: str, little: bool) -> list[Any] | None:
    size = struct.calcsize("=" + code)  # standard sizes: native "L" is 8 bytes
    if len(raw) % size:
        return None
    return list(struct.unpack(f"{'<' if little else '>'}{len(raw) // size}{code}", raw))


def raw_value_json(elem: RawDataElement, codec: str | None) -> dict[str, Any] | None:
    """The element's DICOM JSON value keys ("Value", or nothing when empty) without "vr"; None: ask pydicom.

    ``codec``: the data set's character set as a Python codec (None: one pydicom must handle).
    Binary VRs (OB, OW, ...) and SQ are not handled here: the caller treats them as bulk data or items.
    """
    vr = elem.VR
    raw = elem.value
    if elem.is_implicit_VR or vr is None or raw is None or elem.tag >> 16 & 1:
        return None
    if not raw:
        return {}
    if vr in _NUMBERS:
        values = _numbers(raw, _NUMBERS[vr], elem.is_little_endian)
        if values is None:
            return None
        return {"Value": [float(v) for v in values] if vr in ("FL", "FD") else values} if values else {}
    try:
        if vr in _SPLIT_STRIPPED:
            return _strings(raw.decode("latin_1").rstrip(" \0").split("\\"))
        if vr == "UI":
            return _strings([v.strip() for v in raw.decode("latin_1").rstrip("\0 ").split("\\")])  # as UID() does
        if vr == "AE":
            return _strings([v.strip() for v in raw.decode("latin_1").split("\\")])
        if vr in _CHARSET_VRS:
            return None if codec is None else _text(raw, vr, codec)
        if vr == "IS":
            return _parsed(raw, _IS, int)
        if vr == "DS":
            return _parsed(raw, _DS, float)
    except UnicodeDecodeError:
        return None
    return None


def _text(raw: bytes, vr: str, codec: str) -> dict[str, Any] | None:
    if vr in _TEXT_SPLIT:
        return _strings([v.rstrip("\0 ") for v in raw.decode(codec).split("\\")])
    if vr in _TEXT_SINGLE:
        text = raw.decode(codec).rstrip("\0 ")
        return {"Value": [text]} if text else {}
    return _person_names(raw, codec)


def _parsed(raw: bytes, pattern: re.Pattern[str], kind: type) -> dict[str, Any] | None:
    text = raw.decode("latin_1").strip(" ")
    if not text:
        return None
    values = text.split("\\")
    if not all(pattern.match(v) for v in values):
        return None  # empty components, numbers pydicom reads its own way: pydicom decides
    return {"Value": [kind(v.strip()) for v in values]}


def _person_names(raw: bytes, codec: str) -> dict[str, Any] | None:
    stripped = raw.rstrip(b"\0 ")
    if not stripped:
        return {}
    if b"=" in stripped:
        return None  # ideographic and phonetic groups: pydicom's component rules apply
    names = stripped.decode(codec).split("\\")
    if not all(names):
        return None
    return {"Value": [{"Alphabetic": name} for name in names]}


# VRs whose converted pydicom value is the string (or the list of strings) raw_value_json reads, and those
# whose value is an int: what raw_values may answer for (a PN, a DS or a date object is pydicom's).
STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"})
INTEGER_VRS = frozenset({"IS", "US", "SS", "UL", "SL", "SV", "UV"})


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag


def raw_values(ds: Dataset, keyword: str, kinds: frozenset[str]) -> list[Any] | None:
    """An element's values read off its unconverted bytes, exactly as pydicom converts them (``[]`` for an
    absent or empty element), without converting it; None when only pydicom can tell: an element already
    converted, of a VR outside ``kinds``, or one :func:`raw_value_json` declines.

    Reading ~20 index columns through pydicom's conversion cost more than the rest of indexing.
    """
    elem = ds.get_item(_tag(keyword), keep_deferred=True)
    if elem is None:
        return []
    if not isinstance(elem, RawDataElement) or elem.VR not in kinds or elem.value is None:
        return None
    found = raw_value_json(elem, dataset_codec(ds) if elem.VR in _CHARSET_VRS else None)
    return None if found is None else list(found.get("Value", ()))


def dataset_codec(ds: Dataset) -> str | None:
    """``codec_of`` the data set's Specific Character Set, read off its bytes once per distinct value."""
    elem = ds.get_item(0x00080005, keep_deferred=True)
    if elem is None:
        return codec_of(None)
    if isinstance(elem, RawDataElement) and elem.VR == "CS" and isinstance(elem.value, bytes):
        return _codec_of_bytes(elem.value)
    return codec_of(ds.get("SpecificCharacterSet"))


@lru_cache(maxsize=64)
def _codec_of_bytes(raw: bytes) -> str | None:
    values = raw.decode("latin_1").rstrip(" \0").split("\\")  # as pydicom reads a CS (see raw_value_json)
    return codec_of(values[0]) if len(values) == 1 else None


def raw_single(ds: Dataset, keyword: str, kinds: frozenset[str]) -> Any:
    """The value of a present, single-valued element (what ``ds.get(keyword)`` gives), read as raw_values
    does; None whenever pydicom must be asked (absent, empty, several values, or not read off the bytes)."""
    values = raw_values(ds, keyword, kinds)
    return values[0] if values is not None and len(values) == 1 else None
