"""Reading audit records: the filters the API and the CLI share, in chain (id) order."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.engine import Engine

from .event import EVENT_FIELDS, format_time
from .tables import T_AUDIT

MAX_LIMIT = 1000
COLUMNS = ("id", *EVENT_FIELDS, "prev_hash", "hash")


def parse_time(text: str, name: str) -> datetime:
    """ISO 8601 (a date, or a date and time; without an offset: UTC). ValueError names the parameter."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be an ISO 8601 date or date-time, not {text!r}") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class AuditFilter:
    """Which records: all fields are optional; ``since`` is inclusive, ``until`` exclusive. ``institution``
    limits to records about that institution's studies or made by its people (an institution-scoped reader)."""

    study: str = ""
    patient: str = ""
    user: str = ""
    action: str = ""
    outcome: str = ""
    since: datetime | None = None
    until: datetime | None = None
    institution: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        c = T_AUDIT.c
        found: list[ColumnElement[bool]] = []
        for column, value in ((c.study_uid, self.study), (c.patient_id, self.patient), (c.subject, self.user),
                              (c.action, self.action), (c.outcome, self.outcome)):
            if value:
                found.append(column == value)
        # SQLite keeps times as UTC text without an offset: compare with UTC values.
        if self.since is not None:
            found.append(c.occurred_at >= self.since.astimezone(UTC))
        if self.until is not None:
            found.append(c.occurred_at < self.until.astimezone(UTC))
        if self.institution is not None:
            found.append(or_(c.institution == self.institution, c.institution_of_principal == self.institution))
        return found


def _row(mapping: Any) -> dict[str, Any]:
    row = dict(mapping)
    when = row["occurred_at"]
    row["occurred_at"] = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return row


def search(engine: Engine, where: AuditFilter, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Matching records, oldest first: id order stays stable while new records are appended, so paging
    with offset neither skips nor repeats."""
    statement = (select(*[T_AUDIT.c[name] for name in COLUMNS]).where(*where.conditions())
                 .order_by(T_AUDIT.c.id).limit(limit).offset(offset))
    with engine.connect() as conn:
        return [_row(r._mapping) for r in conn.execute(statement)]


def iterate(engine: Engine, where: AuditFilter, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every matching record, ``batch`` at a time (for exports of any size)."""
    after = 0
    while True:
        statement = (select(*[T_AUDIT.c[name] for name in COLUMNS]).where(T_AUDIT.c.id > after, *where.conditions())
                     .order_by(T_AUDIT.c.id).limit(batch))
        with engine.connect() as conn:
            page = [_row(r._mapping) for r in conn.execute(statement)]
        if not page:
            return
        yield from page
        after = page[-1]["id"]


def as_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "occurred_at": format_time(row["occurred_at"])}
