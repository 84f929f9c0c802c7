"""Checks shared by the de-identification tests: walking DICOM JSON for what must not survive."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from typing import Any

import pydicom

from dicomweb.policies.deid import Deidentifier
from dicomweb.policies.deid.profile import DICOM_ROOT, MARKERS, Op, is_overlay_or_curve, operation

from ..conftest import data_index, data_path

BASE = "http://archive.example:8080/dicom-web"
_SPLIT = re.compile(r"[/?&=]")


def readable_entries() -> list[dict[str, Any]]:
    """Every valid file of ../shared/data whose whole data set pydicom reads (broken ones skipped)."""
    out = []
    for entry in data_index():
        if not entry.get("valid"):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pydicom.dcmread(data_path(entry))
        except Exception:  # a file pydicom cannot read is not a case for these tests
            continue
        out.append(entry)
    return out


def bulk_handler(entry: dict[str, Any]) -> Any:
    def url(elem: Any) -> str:
        return (f"{BASE}/studies/{entry['study_uid']}/series/{entry['series_uid']}/instances/"
                f"{entry['sop_instance_uid']}/bulkdata/{elem.tag:08X}")

    return url


def elements(obj: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Every (tag, element) of a DICOM JSON object, nested sequence items included."""
    for key, element in obj.items():
        yield int(key, 16), element
        if element.get("vr") == "SQ":
            for item in element.get("Value", []):
                yield from elements(item)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def tokens(obj: Any) -> set[str]:
    """Every string in the object, and every part of it between URL separators."""
    out: set[str] = set()
    for text in strings(obj):
        out.add(text)
        out.update(_SPLIT.split(text))
    return out


def original_uids(original: dict[str, Any], entry: dict[str, Any]) -> set[str]:
    """The instance UIDs of the original: the values of every UI attribute the profile replaces."""
    uids = {entry["study_uid"], entry["series_uid"], entry["sop_instance_uid"]}
    for tag, element in elements(original):
        if element.get("vr") == "UI" and operation(tag, "UI", "modified") is Op.UID:
            uids.update(v for v in element.get("Value", []) if isinstance(v, str))
    return {u for u in uids if u and not u.startswith(DICOM_ROOT)}


def assert_deidentified(deid: Deidentifier, original: dict[str, Any], out: dict[str, Any],
                        entry: dict[str, Any], patient_key: str) -> None:
    # Nothing the profile removes, empties or replaces keeps its original value, at any depth.
    replaced = {(tag, repr(e["Value"])) for tag, e in elements(original)
                if deid.removes(tag) and tag not in MARKERS and e.get("Value") and e.get("vr") != "SQ"}
    survived = {(tag, repr(e.get("Value"))) for tag, e in elements(out)} & replaced
    assert not survived, survived
    # No private attribute, curve or overlay data anywhere.
    assert not [t for t, _ in elements(out) if t >> 16 & 1 or is_overlay_or_curve(t)]
    # No original instance UID in any value, URL or URL part.
    assert not original_uids(original, entry) & tokens(out)
    # The patient: research ID for name and ID, no birth date, the original name and ID nowhere.
    research = deid.research_patient_id(patient_key)
    if "00100010" in out:
        assert out["00100010"]["Value"] == [{"Alphabetic": research}]
    if "00100020" in out:
        assert out["00100020"]["Value"] == [research]
    assert "Value" not in out.get("00100030", {})
    identity = {v for key in ("00100010", "00100020") for v in strings(original.get(key, {}).get("Value", []))}
    assert not {v for v in identity if len(v) > 3 and v != research} & tokens(out)
    assert out["00120062"] == {"vr": "CS", "Value": ["YES"]}
