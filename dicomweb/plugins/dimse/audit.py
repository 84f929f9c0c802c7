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
            pending, final = 0, 0x0000
            for item in handler(event):
                status = item[0] if isinstance(item, tuple) else item
                if isinstance(status, Dataset):
                    code = int(status.get("Status", 0))
                    pending += code in (0xFF00, 0xFF01)
                    final = code if code not in (0xFF00, 0xFF01) else final
                elif isinstance(status, int) and status not in (0xFF00, 0xFF01) and isinstance(item, tuple):
                    final = status
                elif isinstance(status, int) and isinstance(item, tuple):
                    pending += 1
                yield item
            self.record(event, action, method, final, study[:64], count=pending)

        return audited


def _identifier(event: Event) -> Dataset | None:
    try:
        found: Dataset = event.identifier
        return found
    except Exception:  # a malformed identifier: the handler answers it; the record names no study
        return None
