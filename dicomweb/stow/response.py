"""The STOW-RS response dataset (PS3.18 10.5.3) and the status code it implies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..services.ingest import StoreResult

# Warning reason for an instance stored beside others that failed (PS3.18 Table 10.5.3-3 lists B000...).
COERCION_OF_DATA_ELEMENTS = 0xB000


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


@dataclass
class StowOutcome:
    status: int
    dataset: dict[str, Any]


def build_response(results: list[StoreResult], base_url: str) -> StowOutcome:
    """The response dataset in DICOM JSON and its HTTP status.

    200: every instance stored; 202: some stored, some failed (or warnings); 409: none stored.
    """
    referenced: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    studies: list[str] = []
    for result in results:
        if result.ok:
            url = (
                f"{base_url}/studies/{result.study_instance_uid}/series/{result.series_instance_uid}"
                f"/instances/{result.sop_instance_uid}"
            )
            referenced.append(
                {
                    "00081150": _uid(result.sop_class_uid),
                    "00081155": _uid(result.sop_instance_uid),
                    "00081190": {"vr": "UR", "Value": [url]},
                }
            )
            if result.study_instance_uid not in studies:
                studies.append(result.study_instance_uid)
        else:
            item: dict[str, Any] = {
                "00081150": _uid(result.sop_class_uid),
                "00081155": _uid(result.sop_instance_uid),
                "00081197": {"vr": "US", "Value": [result.failure_reason or 0x0110]},
            }
            if result.message:
                # Text Value: the reason in words, for the administrator reading the response.
                item["0040A160"] = {"vr": "UT", "Value": [result.message]}
            failed.append(item)

    dataset: dict[str, Any] = {}
    if len(studies) == 1:
        dataset["00081190"] = {"vr": "UR", "Value": [f"{base_url}/studies/{studies[0]}"]}
    dataset["00081198"] = {"vr": "SQ", "Value": failed} if failed else {"vr": "SQ"}
    dataset["00081199"] = {"vr": "SQ", "Value": referenced} if referenced else {"vr": "SQ"}

    if not results or not referenced:
        status = 409
    elif failed:
        status = 202
    else:
        status = 200
    return StowOutcome(status, dict(sorted(dataset.items())))
