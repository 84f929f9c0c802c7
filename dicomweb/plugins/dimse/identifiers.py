"""Identifiers: a received C-FIND/C-GET/C-MOVE key as query syntax, and answers cut to the keys asked for."""

from __future__ import annotations

from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

# Keys that steer a query rather than match (PS3.4 C.4.1.1.3.1 and C.3.4).
CONTROL_TAGS = {0x00080005, 0x00080052, 0x00080054, 0x00080056, 0x00081190}


def raw_value(element: DataElement) -> str:
    """The element's value as PS3.4 C.2.2.2 matching syntax (multiple values joined with backslashes)."""
    value: Any = element.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)


def uid_list(identifier: Dataset, keyword: str) -> list[str]:
    """The UIDs a retrieve identifier names for ``keyword`` (list matching), or [] when universal."""
    element = identifier.get(keyword)
    if element is None:
        return []
    return [u.strip() for u in raw_value(identifier[keyword]).replace(",", "\\").split("\\") if u.strip()]


def project(stored: Dataset, identifier: Dataset) -> Dataset:
    """``stored`` cut to the keys of ``identifier``: asked-for attributes not stored come back empty, and a
    sequence key with an item returns every stored item cut to that item's keys (PS3.4 C.2.2.1)."""
    out = Dataset()
    for element in identifier:
        if element.tag in (0x00080005, 0x00080052):
            continue
        found = stored.get(element.tag)
        if element.VR == "SQ":
            template = element.value[0] if element.value else None
            items = found.value if found is not None and found.VR == "SQ" else []
            out.add_new(element.tag, "SQ", Sequence(
                [project(item, template) if template is not None else item for item in items]))
        elif found is not None:
            out.add(found)
        else:
            out.add_new(element.tag, element.VR, None)
    return out
