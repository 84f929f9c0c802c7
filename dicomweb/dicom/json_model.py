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

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)

BASE_MARKER = "@@DICOMWEB_BASE@@"
BULK_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_DATA_KEYS = {"7FE00010", "7FE00008", "7FE00009"}


def instance_path(study: str, series: str, sop: str) -> str:
    return f"/studies/{study}/series/{series}/instances/{sop}"


def _element_json(elem: DataElement, threshold: int) -> dict[str, Any]:
    try:
        return elem.to_json_dict(None, threshold)
    except (ValueError, TypeError, OverflowError) as exc:
        # Malformed numbers (an IS of "1A", say) are kept as their text rather than lost.
        log.debug("element %s kept as text: %s", elem.tag, exc)
        raw = elem.value
        values = raw if isinstance(raw, list | tuple) else [raw]
        return {"vr": elem.VR, "Value": [str(v) for v in values if v not in (None, "")]} if raw else {"vr": elem.VR}


def _walk(ds: Dataset, uri_prefix: str, path: tuple[str, ...], threshold: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tag in list(ds.keys()):
        key = f"{tag:08X}"
        if tag.group == 0x0002:
            continue  # file meta information is not part of the data set (PS3.18 F.2)
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
                _walk(item, uri_prefix, (*path, key, str(i + 1)), threshold) for i, item in enumerate(elem.value)
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
) -> dict[str, Any]:
    """The instance's DICOM JSON; pixel data (not in ``header``) is added as a BulkDataURI."""
    uri_prefix = f"{BASE_MARKER}{instance_path(study, series, sop)}/bulkdata/"
    out = _walk(header, uri_prefix, (), threshold)
    if pixel_tag is not None:
        key = f"{pixel_tag:08X}"
        out[key] = {"vr": pixel_vr, "BulkDataURI": uri_prefix + key}
    return dict(sorted(out.items()))


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def with_base(text: str, base_url: str) -> str:
    return text.replace(BASE_MARKER, base_url)
