"""DICOM JSON (PS3.18 Annex F) of a stored header, with BulkDataURIs for large binary values.

BulkDataURIs are written with a placeholder base (``BASE_MARKER``) and the instance's path, so the stored
text is independent of the host a client used; the response substitutes the request's base URL with one
string replacement over the whole answer instead of re-serialising per request.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from .raw_json import codec_of, raw_value_json

log = logging.getLogger(__name__)

BASE_MARKER = "@@DICOMWEB_BASE@@"
BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_DATA_KEYS = {"7FE00010", "7FE00008", "7FE00009"}


def instance_path(study: str, series: str, sop: str) -> str:
    return f"/studies/{study}/series/{series}/instances/{sop}"


def _element_json(elem: DataElement, threshold: int) -> dict[str, Any]:
    try:
        return elem.to_json_dict(None, threshold)
    except (ValueError, TypeError, OverflowError, IndexError) as exc:
        # Malformed numbers (an IS of "1A", say) are kept as their text rather than lost; so are person names
        # pydicom cannot split (an empty name among several raises IndexError there): empty ones become null.
        log.debug("element %s kept as text: %s", elem.tag, exc)
        raw = elem.value
        values = raw if isinstance(raw, list | tuple) else [raw]
        if elem.VR == "PN":
            return {"vr": "PN", "Value": [{"Alphabetic": str(v)} if str(v) else None for v in values]}
        return {"vr": elem.VR, "Value": [str(v) for v in values if v not in (None, "")]} if raw else {"vr": elem.VR}


def _raw_json(raw: RawDataElement, uri: str, threshold: int, codec: str | None) -> dict[str, Any] | None:
    """An unconverted element's DICOM JSON read off its bytes, or None when pydicom must convert it."""
    vr = raw.VR
    if raw.is_implicit_VR or vr is None or vr == "UN" or vr == "SQ" or raw.tag >> 16 & 1:
        return None
    if vr in BULK_VRS:
        value = raw.value
        if not isinstance(value, bytes):
            return None
        if len(value) > threshold:
            return {"vr": vr, "BulkDataURI": uri}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")} if value else {"vr": vr}
    found = raw_value_json(raw, codec)
    return None if found is None else {"vr": vr, **found}


def _walk(
    ds: Dataset, uri_prefix: str, path: tuple[str, ...], threshold: int, codec: str | None, fast: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if 0x00080005 in ds:
        codec = codec_of(ds.get("SpecificCharacterSet"))
    for tag in list(ds.keys()):
        key = f"{tag:08X}"
        if tag.group == 0x0002:
            continue  # file meta information is not part of the data set (PS3.18 F.2)
        stored = ds.get_item(tag)
        if fast and isinstance(stored, RawDataElement):
            found = _raw_json(stored, uri_prefix + "/".join((*path, key)), threshold, codec)
            if found is not None:
                out[key] = found
                continue
        try:
            elem = ds[tag]
        except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
            # A value pydicom cannot convert (a bad VR, say) must not cost the whole instance its metadata.
            log.debug("element %s not converted: %s", key, exc)
            raw = ds.get_item(tag)
            vr = str(getattr(raw, "VR", None) or "UN")
            out[key] = {"vr": vr}
            continue
        if elem.VR == "SQ":
            items = [
                _walk(item, uri_prefix, (*path, key, str(i + 1)), threshold, codec, fast)
                for i, item in enumerate(elem.value)
            ]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
            continue
        if elem.VR in BULK_VRS and elem.value is not None:
            length = len(elem.value) if isinstance(elem.value, bytes | bytearray) else 0
            if length > threshold:
                out[key] = {"vr": elem.VR, "BulkDataURI": uri_prefix + "/".join((*path, key))}
                continue
            if isinstance(elem.value, bytes | bytearray):
                encoded = base64.b64encode(bytes(elem.value)).decode("ascii")
                out[key] = {"vr": elem.VR, "InlineBinary": encoded} if elem.value else {"vr": elem.VR}
                continue
        out[key] = _element_json(elem, threshold)
    return out


def header_to_json(
    header: Dataset,
    study: str,
    series: str,
    sop: str,
    *,
    pixel_tag: int | None,
    pixel_vr: str,
    threshold: int,
    fast: bool = True,
) -> dict[str, Any]:
    """The instance's DICOM JSON; pixel data (not in ``header``) is added as a BulkDataURI.

    ``fast``: read common values straight from their bytes (raw_json); False converts every element through
    pydicom, the reference the fast path is tested against.
    """
    uri_prefix = f"{BASE_MARKER}{instance_path(study, series, sop)}/bulkdata/"
    out = _walk(header, uri_prefix, (), threshold, codec_of(None), fast)
    if pixel_tag is not None:
        key = f"{pixel_tag:08X}"
        out[key] = {"vr": pixel_vr, "BulkDataURI": uri_prefix + key}
    return dict(sorted(out.items()))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def with_base(text: str, base_url: str) -> str:
    return text.replace(BASE_MARKER, base_url)
