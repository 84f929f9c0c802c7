"""UID validation (PS3.5 9.1). Storage keys are derived from UIDs, so nothing else may pass."""

from __future__ import annotations

import re

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# Real-world UIDs sometimes carry leading zeros in a component; they are still safe as path parts.
_UID_LENIENT = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_valid_uid(value: str, *, strict: bool = False) -> bool:
    if not value or len(value) > 64:
        return False
    return bool((_UID if strict else _UID_LENIENT).match(value))


class InvalidUID(ValueError):
    def __init__(self, what: str, value: str) -> None:
        super().__init__(f"{what} {value!r} is not a valid DICOM UID (digits and dots, at most 64 characters)")
        self.what = what
        self.value = value


def require_uid(what: str, value: str) -> str:
    if not is_valid_uid(value):
        raise InvalidUID(what, value)
    return value
