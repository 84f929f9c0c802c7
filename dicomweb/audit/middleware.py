"""AuditMiddleware: one audit record per HTTP request, written after the answer ended (or broke off)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..index.models import utcnow
from ..policies.principal import SYSTEM
from .classify import classify, strip_secrets
from .event import AuditEvent
from .log import AuditLog

log = logging.getLogger(__name__)

AUDIT_KEY = "dicomweb.audit"
UNAUDITED_PATHS = frozenset({"/health", "/openapi.json"})


def outcome_of(status: int | None, notes: dict[str, Any], complete: bool) -> str:
    if status is None or not complete:
        return "failure"
    if status < 400:
        return "success"
    if status == 401:
        return "login-failure"
    if status == 403 or (status == 404 and notes.get("outcome") == "denied"):
        return "denied"
    return "failure"


class _Watch:
    """What the app sent back: the status, the body bytes, whether the answer ended, whether the client left."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self.status: int | None = None
        self.bytes = 0
        self.complete = False
        self.disconnected = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" and not self.complete:
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        try:
            await self._send(message)
        except BaseException:
            self.disconnected = True
            raise
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body":
            self.bytes += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or scope["path"] in UNAUDITED_PATHS:
            await self.app(scope, receive, send)
            return
        audit: AuditLog | None = getattr(getattr(scope.get("app"), "state", None), "audit", None)
        if audit is None:
            await self.app(scope, receive, send)
            return
        started = utcnow()
        notes: dict[str, Any] = {}
        scope[AUDIT_KEY] = notes
        watch = _Watch(receive, send)
        raised = False
        try:
            await self.app(scope, watch.receive, watch.send)
        except BaseException:
            raised = True
            raise
        finally:
            try:
                audit.record(self._event(scope, notes, watch, raised, started, audit))
            except Exception:
                log.exception("audit: could not record %s %s", scope.get("method"), scope.get("path"))

    @staticmethod
    def _event(scope: Scope, notes: dict[str, Any], watch: _Watch, raised: bool, started: Any,
               audit: AuditLog) -> AuditEvent:
        settings = audit.settings
        base_path = getattr(settings, "base_path", "/dicom-web")
        query_string = bytes(scope.get("query_string", b"")).decode("latin-1")
        found = classify(scope["method"], scope["path"], base_path, query_string)
        principal = scope.get("principal") or notes.get("principal")
        if principal is None and getattr(settings, "auth", "on") == "off":
            principal = SYSTEM
        status = watch.status if watch.status is not None else (500 if raised and not watch.disconnected else None)
        detail = str(notes.get("detail") or found.detail)
        if not watch.complete:
            if watch.disconnected:
                broke = f"client disconnected after {watch.bytes} bytes" if watch.status is not None else \
                    "client disconnected before the answer"
            else:
                broke = "the answer broke off" if watch.status is not None else "the server failed before answering"
            detail = f"{detail}; {broke}" if detail else broke
        client = scope.get("client")
        headers = dict(scope.get("headers") or [])
        count = notes.get("count")
        return AuditEvent(
            action=str(notes.get("action") or found.action),
            outcome=outcome_of(status, notes, watch.complete),
            subject=principal.subject if principal is not None else "",
            roles=principal.role_text if principal is not None else "",
            institution_of_principal=principal.institution if principal is not None else "",
            status=status,
            method=scope["method"],
            path=scope["path"],
            query=strip_secrets(query_string),
            study_uid=str(notes.get("study") or found.study),
            series_uid=str(notes.get("series") or found.series),
            instance_uid=str(notes.get("instance") or found.instance),
            patient_id=str(notes.get("patient") or ""),
            institution=str(notes.get("institution") or ""),
            client_ip=str(scope.get("client_ip") or (client[0] if client else "")),
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
            detail=detail,
            count=count if isinstance(count, int) else None,
            bytes_sent=watch.bytes,
            occurred_at=started,
        )
