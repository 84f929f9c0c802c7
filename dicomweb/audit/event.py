"""An audit event as recorded, its normalization to what the columns hold, and the hash that chains it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from ..index.models import utcnow
from ..policies.principal import Principal

ACTIONS = ("query", "retrieve", "store", "delete", "login", "policy-change", "policy-read", "audit-read",
           "admin", "other")
OUTCOMES = ("success", "denied", "failure", "login-failure")

# Column limits: values are cut before hashing, so what is hashed is exactly what the database keeps.
LIMITS = {
    "subject": 256, "roles": 512, "institution_of_principal": 128, "action": 32, "outcome": 16, "method": 16,
    "path": 4000, "query": 2000, "study_uid": 64, "series_uid": 64, "instance_uid": 64, "patient_id": 64,
    "institution": 128, "client_ip": 64, "user_agent": 512, "detail": 2000,
}


@dataclass(frozen=True)
class AuditEvent:
    """What happened: who (subject, roles, institution_of_principal), what (action, outcome, status, method,
    path, query), to what (UIDs, patient, the study's institution), from where (client_ip, user_agent)."""

    action: str
    outcome: str = "success"
    subject: str = ""
    roles: str = ""  # comma-separated, sorted
    institution_of_principal: str = ""
    status: int | None = None  # HTTP status or DIMSE status
    method: str = ""
    path: str = ""
    query: str = ""
    study_uid: str = ""
    series_uid: str = ""
    instance_uid: str = ""
    patient_id: str = ""
    institution: str = ""
    client_ip: str = ""
    user_agent: str = ""
    detail: str = ""
    count: int | None = None
    bytes_sent: int | None = None  # body bytes sent to the client (downloads)
    occurred_at: datetime = field(default_factory=utcnow)

    @classmethod
    def for_principal(cls, principal: Principal | None, action: str, **values: Any) -> AuditEvent:
        """An event done by ``principal`` (the DIMSE gateway and the CLI use this)."""
        if principal is None:
            return cls(action=action, **values)
        return cls(action=action, subject=principal.subject, roles=principal.role_text,
                   institution_of_principal=principal.institution, **values)

    def row(self) -> dict[str, Any]:
        """The record's column values: strings cut to their column, without NUL or unencodable characters;
        the time in UTC. (Called for every request: plain ASCII that fits, nearly every value, is kept as is.)"""
        values = dict(self.__dict__)
        for name, limit in _LIMITED:
            value = values[name]
            if value.__class__ is str and len(value) <= limit and value.isascii() and "\x00" not in value:
                continue
            values[name] = str(value or "").replace("\x00", "").encode("utf-8", "replace").decode("utf-8")[:limit]
        when = self.occurred_at if self.occurred_at.tzinfo else self.occurred_at.replace(tzinfo=UTC)
        values["occurred_at"] = when.astimezone(UTC)
        return values


_LIMITED = tuple(LIMITS.items())
EVENT_FIELDS = tuple(f.name for f in fields(AuditEvent))
# The hashed fields, fixed: every column of the record except the hash itself.
HASHED_FIELDS = ("id", "prev_hash", *sorted(EVENT_FIELDS))


def format_time(when: datetime) -> str:
    """UTC with microseconds; a naive time (SQLite hands them back so) is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(row: dict[str, Any]) -> str:
    """sha256 over canonical JSON (sorted keys, no spaces, UTF-8) of the hashed fields of one record."""
    canonical = {}
    for name in HASHED_FIELDS:
        value = row.get(name)
        canonical[name] = format_time(value) if isinstance(value, datetime) else value
    return hashlib.sha256(_CANONICAL.encode(canonical).encode("utf-8")).hexdigest()
