"""Audit records for DIMSE requests: one per C-STORE, C-FIND, C-GET and C-MOVE, in the same hash chain as
HTTP requests (who by AE title and principal, from which address, which study, with which final status)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from ...audit import AuditEvent, AuditLog
from ...policies.principal import Principal
from .access import AccessRules

Handler = Callable[[Event], Any]


class DimseAudit:
    def __init__(self, log: AuditLog | None, rules: AccessRules) -> None:
        self.log = log
        self.rules = rules

    def record(self, event: Event, action: str, method: str, status: int, study: str = "", detail: str = "",
               count: int | None = None) -> None:
        if self.log is None:
            return
        caller = str(event.assoc.requestor.ae_title).strip()
        principal = self.rules.policy.principal(caller) if self.rules.policy is not None else None
        outcome = "success" if status in (0x0000, 0xB000, 0xB007, 0xB006) else (
            "denied" if status == 0x0124 else "failure")
        self.log.record(AuditEvent.for_principal(
            principal or Principal(subject=f"ae:{caller}", via="dimse"), action, outcome=outcome, status=status,
            method=method, path=f"dimse://{caller}", client_ip=str(event.assoc.requestor.address),
            study_uid=study, detail=detail or f"calling AE {caller}", count=count,
        ))

    def wrap(self, handler: Handler, action: str, method: str) -> Handler:
        """A C-FIND, C-GET or C-MOVE handler (a generator of statuses) recorded once it is done."""
        if self.log is None:
            return handler

        def audited(event: Event) -> Iterator[Any]:
            identifier = _identifier(event)
            study = str(identifier.get("StudyInstanceUID", "")) if identifier is not None else ""
            pending, final = 0, 0x0000  # pynetdicom sends the final success itself; failures are yielded
            for item in handler(event):
                # (status, dataset) pairs; a C-MOVE's destination and a C-GET/C-MOVE's count are not statuses.
                code = _status_code(item[0]) if isinstance(item, tuple) and len(item) == 2 else None
                if code in PENDING:
                    pending += 1
                elif code is not None:
                    final = code
                yield item
            self.record(event, action, method, final, study[:64], count=pending)

        return audited


PENDING = (0xFF00, 0xFF01)


def _status_code(status: Any) -> int | None:
    if isinstance(status, Dataset):
        return int(status.get("Status", 0))
    return status if isinstance(status, int) else None


def _identifier(event: Event) -> Dataset | None:
    try:
        found: Dataset = event.identifier
        return found
    except Exception:  # a malformed identifier: the handler answers it; the record names no study
        return None
