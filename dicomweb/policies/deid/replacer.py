"""One de-identification pass: the patient's research ID and date offset, and the UIDs it pseudonymized."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from .profile import DICOM_ROOT

_UID_SEGMENT = re.compile(r"^[0-9]+(\.[0-9]+)+$")
# DICOMweb resource paths: whatever follows these names is a UID, even one that breaks the UID syntax.
_UID_PARENTS = frozenset({"studies", "series", "instances"})
_UID_IN_QUERY = re.compile(r"(?<=[=/])[0-9]+(?:\.[0-9]+)+(?=[&/;]|$)")


@dataclass
class Replacer:
    pseudonym: Callable[[str], str]
    research_id: str
    days: int
    dates: str  # "modified" or "remove"
    seen: dict[str, str] = field(default_factory=dict)  # pseudonym -> original, for remembering

    def uid(self, value: str) -> str:
        """The pseudonym of a UI value; DICOM-defined UIDs and empty values stay as they are."""
        text = value.strip("\0 ")
        if not text or text.startswith(DICOM_ROOT):
            return text
        replaced = self.pseudonym(text)
        self.seen[replaced] = text
        return replaced

    def url(self, value: str) -> str:
        """A retrieve or bulk data URL with every UID in its path and query replaced (the host left alone)."""
        parts = urlsplit(value)
        segments = parts.path.split("/")
        path = "/".join(
            self.uid(s) if _UID_SEGMENT.match(s) or (i and segments[i - 1] in _UID_PARENTS) else s
            for i, s in enumerate(segments)
        )
        query = _UID_IN_QUERY.sub(lambda m: self.uid(m.group(0)), parts.query)
        return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))
