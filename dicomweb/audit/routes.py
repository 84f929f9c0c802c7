"""The audit read API: ``GET /audit`` (filtered records as JSON, FHIR or DICOM XML) and ``GET /audit/verify``."""

from __future__ import annotations

import json
from typing import Any, Protocol

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http.problems import HTTPProblem
from ..policies.http import audit_note, principal_of
from ..policies.principal import Principal
from .chain import verify
from .dicom_xml import audit_messages_xml
from .event import ACTIONS, OUTCOMES
from .fhir import audit_bundle
from .query import MAX_LIMIT, AuditFilter, as_json, parse_time, search

FORMATS = {"json": "application/json", "fhir": "application/fhir+json", "dicom": "application/xml"}


class AuditScope(Protocol):
    """What the audit API asks the policy engine: "*" (every record), an institution name (that institution's
    records), or None (no audit records at all)."""

    def audit_scope(self, principal: Principal) -> str | None: ...


def _scope(request: Request) -> str | None:
    """The reader's institution limit (None: every record); 403 when it may read no audit records."""
    policy: AuditScope = request.app.state.policy
    scope = policy.audit_scope(principal_of(request))
    if scope is None:
        raise HTTPProblem(403, "this identity may not read the audit log (auditors and privileged roles may)")
    return None if scope == "*" else scope


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPProblem(400, f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise HTTPProblem(400, f"{name} must be between {low} and {high}, not {value}")
    return value


def _filter(request: Request, institution: str | None) -> AuditFilter:
    params = request.query_params
    if any("\x00" in value for value in params.values()):
        raise HTTPProblem(400, "query parameters must not contain NUL characters")
    action, outcome = params.get("action", ""), params.get("outcome", "")
    if action and action not in ACTIONS:
        raise HTTPProblem(400, f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if outcome and outcome not in OUTCOMES:
        raise HTTPProblem(400, f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    try:
        since = parse_time(params["since"], "since") if params.get("since") else None
        until = parse_time(params["until"], "until") if params.get("until") else None
    except ValueError as exc:
        raise HTTPProblem(400, str(exc)) from None
    return AuditFilter(study=params.get("study", ""), patient=params.get("patient", ""), user=params.get("user", ""),
                       action=action, outcome=outcome, since=since, until=until, institution=institution)


def _source(request: Request) -> str:
    return str(getattr(request.app.state.archive.settings, "dimse_ae_title", "") or "dicomweb")


async def list_audit(request: Request) -> Response:
    institution = _scope(request)
    fmt = request.query_params.get("format", "json") or "json"
    if fmt not in FORMATS:
        raise HTTPProblem(400, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    where = _filter(request, institution)
    limit = _int(request, "limit", 100, 1, MAX_LIMIT)
    offset = _int(request, "offset", 0, 0, 2**31 - 1)
    engine = request.app.state.archive.engine
    rows = await anyio.to_thread.run_sync(lambda: search(engine, where, limit, offset))
    audit_note(request, count=len(rows))
    body: bytes
    if fmt == "dicom":
        body = await anyio.to_thread.run_sync(lambda: audit_messages_xml(rows, _source(request)))
    else:
        document: Any = audit_bundle(rows, _source(request), search=True) if fmt == "fhir" else \
            [as_json(row) for row in rows]
        body = json.dumps(document, ensure_ascii=False).encode("utf-8")
    return Response(body, media_type=FORMATS[fmt])


async def verify_audit(request: Request) -> Response:
    _scope(request)
    engine = request.app.state.archive.engine
    report = await anyio.to_thread.run_sync(lambda: verify(engine))
    return Response(json.dumps(report.as_dict()), media_type="application/json")


def audit_routes() -> list[Route]:
    return [
        Route("/audit", list_audit, methods=["GET"]),
        Route("/audit/verify", verify_audit, methods=["GET"]),
    ]
