"""What the three record services share: time in UTC, field checks, who counts as an administrator."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from ...dicom.uids import is_valid_uid
from ...index.models import utcnow
from ..principal import Principal
from .errors import RecordError

ID_MAX = 2**31 - 1  # beyond any id the index hands out (and its integer column)
LIST_MAX = 1000
OFFSET_MAX = 10**9


def as_utc(value: datetime) -> datetime:
    """Aware UTC: SQLite hands back naive datetimes, which the records always store in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 date and time (one without offset is UTC), as aware UTC."""
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # OverflowError: an offset that takes year 9999 past the calendar
        raise RecordError(400, f"{name} must be an ISO 8601 date and time, e.g. 2030-01-31T12:00:00Z") from None


def opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def now_utc(now: datetime | None) -> datetime:
    return utcnow() if now is None else as_utc(now)


def session(engine: Engine) -> Session:
    # Rows stay readable after the commit: the services hand them out.
    return Session(engine, expire_on_commit=False)


def is_admin(principal: Principal) -> bool:
    """The system (CLI, authentication off) and the admin role see and may end every record."""
    return principal.is_system or "admin" in principal.roles


def printable(name: str, value: str) -> str:
    """Refuse what no column can hold: NUL and other control characters (but line breaks and tabs), and lone
    surrogates, which have no UTF-8 form."""
    if any((ord(c) < 32 and c not in "\t\n\r") or c == "\x7f" for c in value):
        raise RecordError(400, f"{name} must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RecordError(400, f"{name} must be valid Unicode text") from None
    return value


def text(name: str, value: str, high: int, *, required: bool = False) -> str:
    value = printable(name, value).strip()
    if required and not value:
        raise RecordError(400, f"{name} is required")
    if len(value) > high:
        raise RecordError(400, f"{name} is at most {high} characters long")
    return value


def study_uid(name: str, value: str) -> str:
    if not is_valid_uid(value):
        raise RecordError(400, f"{name} must be a valid Study Instance UID, not {value!r}")
    return value


def paging(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= LIST_MAX:
        raise RecordError(400, f"limit must be a whole number from 1 to {LIST_MAX}")
    if not 0 <= offset <= OFFSET_MAX:
        raise RecordError(400, f"offset must be a whole number from 0 to {OFFSET_MAX}")
    return limit, offset


def institutions_asked(principal: Principal, institution: str | None) -> list[str]:
    """The institutions whose records a listing considers: the one asked for, else the principal's own."""
    if institution is not None:
        return [institution]
    return [principal.institution] if principal.institution else []
