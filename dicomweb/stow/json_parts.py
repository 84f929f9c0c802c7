"""STOW-RS with ``type="application/dicom+json"``: metadata parts plus bulk data parts, made Part 10.

PS3.18 10.5.1.2: the first part(s) carry a DICOM JSON array of data sets; bulk data (Pixel Data included)
arrives in later parts named by Content-Location and referenced by BulkDataURI. Each data set becomes a
Part 10 file with file meta information, then goes through the same ingest as any other instance.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from ..dicom.part10 import CANNOT_UNDERSTAND
from ..services.staging import StagedBlob
from .reader import ReceivedPart

# Compressed pixel media types and the transfer syntax each implies when the part names none (PS3.18 8.7.3).
PIXEL_MEDIA_SYNTAX = {
    "image/jpeg": "1.2.840.10008.1.2.4.50",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jphc": "1.2.840.10008.1.2.4.201",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
}
JSON_TYPES = {"application/dicom+json", "application/json"}


@dataclass
class JsonInstance:
    """A data set rebuilt from JSON: either Part 10 bytes ready for ingest, or why it could not be."""

    blob: StagedBlob | None
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    error: str = ""
    status: int = CANNOT_UNDERSTAND


def _read(part: ReceivedPart) -> bytes:
    with part.blob.open() as fp:
        return fp.read()


def _build(item: dict[str, Any], bulk: dict[str, ReceivedPart]) -> JsonInstance:
    sop_class = str((item.get("00080016", {}).get("Value") or [""])[0])
    sop_instance = str((item.get("00080018", {}).get("Value") or [""])[0])
    used: dict[str, ReceivedPart] = {}

    def resolve(tag: str, vr: str, uri: str) -> bytes:
        part = bulk.get(uri)
        if part is None:
            raise KeyError(f"BulkDataURI {uri!r} of ({tag}) names no part of the request")
        used[tag] = part
        return _read(part)

    try:
        ds = Dataset.from_json(item, bulk_data_uri_handler=resolve)
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        return JsonInstance(None, sop_class, sop_instance, f"the JSON data set cannot be read: {exc}")

    syntax: UID = ExplicitVRLittleEndian
    pixel_part = used.get("7FE00010") or used.get("7fe00010")
    if pixel_part is not None and pixel_part.media_type != "application/octet-stream":
        named = pixel_part.params.get("transfer-syntax") or PIXEL_MEDIA_SYNTAX.get(pixel_part.media_type)
        if not named:
            return JsonInstance(
                None, sop_class, sop_instance, f"pixel data part has unsupported type {pixel_part.media_type!r}"
            )
        syntax = UID(named)
        ds.PixelData = encapsulate([bytes(ds.PixelData)])
        ds["PixelData"].VR = "OB"
    elif pixel_part is not None and pixel_part.params.get("transfer-syntax"):
        syntax = UID(pixel_part.params["transfer-syntax"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    out = io.BytesIO()
    try:
        dcmwrite(out, ds, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        return JsonInstance(None, sop_class, sop_instance, f"the data set cannot be encoded: {exc}")
    return JsonInstance(StagedBlob.from_bytes(out.getvalue()), sop_class, sop_instance)


def rebuild_instances(parts: list[ReceivedPart]) -> list[JsonInstance]:
    """Blocking: turn the received JSON and bulk parts into Part 10 instances (run in a thread)."""
    metadata = [p for p in parts if p.media_type in JSON_TYPES]
    bulk = {p.content_location: p for p in parts if p.media_type not in JSON_TYPES and p.content_location}
    if not metadata:
        return [JsonInstance(None, error="the request has no application/dicom+json part")]
    results: list[JsonInstance] = []
    for part in metadata:
        try:
            document = json.loads(_read(part))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            results.append(JsonInstance(None, error=f"part {part.index} is not valid JSON: {exc}"))
            continue
        items = document if isinstance(document, list) else [document]
        for item in items:
            if not isinstance(item, dict):
                results.append(JsonInstance(None, error=f"part {part.index} holds a JSON value that is no data set"))
                continue
            results.append(_build(item, bulk))
    return results
