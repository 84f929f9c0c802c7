"""The audit log (issue 6): hash-chained records of every access, their verification, reading and export."""

from __future__ import annotations

from .chain import VerifyReport, verify
from .event import AuditEvent
from .log import AuditLog, write_now
from .middleware import AuditMiddleware
from .routes import AuditScope, audit_routes

__all__ = ["AuditEvent", "AuditLog", "AuditMiddleware", "AuditScope", "VerifyReport", "audit_routes", "verify",
           "write_now"]
