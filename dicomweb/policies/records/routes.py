"""Admin REST API of the policy records: grants and their approvals, care relationships, research shares.

Bodies are JSON objects whose fields are checked here (a 400 problem names the field); the services decide
403 (not permitted), 404 (unknown, or not visible to the caller) and 409 (the record's state forbids it).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...index.models import utcnow
from ..http import audit_note, principal_of
from . import PolicyRecords
from .common import ID_MAX, parse_time, printable
from .errors import RecordError
from .views import care_json, grant_json, share_json


def _records(request: Request) -> PolicyRecords:
    archive = request.app.state.archive
    max_days = int(getattr(archive.settings, "legal_grant_max_days", 365))
    return PolicyRecords(archive.engine, request.app.state.policy, legal_max_days=max_days)


async def _body(request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise RecordError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RecordError(400, "the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise RecordError(400, f"unknown field {unknown[0]!r}; the fields are {', '.join(allowed)}")
    return body


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        raise RecordError(400, f"{name} must be a string")
    return printable(name, value)


def _time(body: dict[str, Any], name: str) -> datetime | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str):
        raise RecordError(400, f"{name} must be an ISO 8601 date and time, e.g. 2030-01-31T12:00:00Z")
    return parse_time(name, value)


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise RecordError(400, f"{name} must be true or false")
    return value


def _digits(raw: str) -> bool:
    return raw.isascii() and raw.isdigit()


def _id(request: Request) -> int:
    raw = request.path_params["id"]
    if not _digits(raw) or not raw.strip("0"):
        raise RecordError(400, f"an id is a whole number from 1, not {raw!r}")
    return int(raw) if len(raw) <= 10 and int(raw) <= ID_MAX else 0  # 0: an id no record has (404)


def _query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _digits(raw) or len(raw) > 12:
        raise RecordError(400, f"{name} must be a whole number, not {raw!r}")
    return int(raw)


def _query(request: Request, name: str) -> str | None:
    raw = request.query_params.get(name)
    return None if raw is None else printable(name, raw)


def _query_bool(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise RecordError(400, f"{name} must be true or false, not {raw!r}")
    return raw == "true"


def _created(payload: dict[str, Any], path: str) -> Response:
    return JSONResponse(payload, status_code=201, headers={"Location": f"{path}/{payload['id']}"})


# -- grants ------------------------------------------------------------------------------------------------------
async def create_grant(request: Request) -> Response:
    principal, records = principal_of(request), _records(request)
    body = await _body(request, ("kind", "study", "grantee", "reason", "expiresAt", "anonymized"))
    kind, study = _str(body, "kind"), _str(body, "study")
    grantee, reason, expires, anonymized = (_str(body, "grantee"), _str(body, "reason"), _time(body, "expiresAt"),
                                            _bool(body, "anonymized"))
    audit_note(request, study=study)

    def create() -> dict[str, Any]:
        grant = records.grants.create(principal, kind, study, grantee=grantee, reason=reason, expires_at=expires,
                                      anonymized=anonymized)
        return grant_json(grant, utcnow())

    found = await anyio.to_thread.run_sync(create)
    audit_note(request, institution=found["institution"],
               detail=f"grant {found['id']} created: {found['kind']} for {found['grantee']}, {found['state']}")
    return _created(found, "/admin/grants")


async def list_grants(request: Request) -> Response:
    principal, records = principal_of(request), _records(request)
    limit, offset = _query_int(request, "limit", 100), _query_int(request, "offset", 0)
    study, grantee, kind, state, institution = (_query(request, name) for name in (
        "study", "grantee", "kind", "state", "institution"))

    def read() -> list[dict[str, Any]]:
        now = utcnow()
        found = records.grants.list(principal, study=study, grantee=grantee, kind=kind, state=state,
                                    institution=institution, limit=limit, offset=offset, now=now)
        return [grant_json(g, now) for g in found]

    found = await anyio.to_thread.run_sync(read)
    audit_note(request, study=study, count=len(found))
    return JSONResponse(found)


async def get_grant(request: Request) -> Response:
    principal, records, grant_id = principal_of(request), _records(request), _id(request)
    found = await anyio.to_thread.run_sync(lambda: grant_json(records.grants.get(principal, grant_id), utcnow()))
    audit_note(request, study=found["study"], detail=f"grant {grant_id}")
    return JSONResponse(found)


async def approve_grant(request: Request) -> Response:
    principal, records, grant_id = principal_of(request), _records(request), _id(request)
    side = _str(await _body(request, ("as",)), "as")
    if not side:
        raise RecordError(400, "as is required: patient, institution or supervisor")
    found = await anyio.to_thread.run_sync(
        lambda: grant_json(records.grants.approve(principal, grant_id, side), utcnow()))
    audit_note(request, study=found["study"], institution=found["institution"],
               detail=f"grant {grant_id} approved as {side}, {found['state']}")
    return JSONResponse(found)


async def revoke_grant(request: Request) -> Response:
    principal, records, grant_id = principal_of(request), _records(request), _id(request)
    reason = _str(await _body(request, ("reason",)), "reason")
    found = await anyio.to_thread.run_sync(
        lambda: grant_json(records.grants.revoke(principal, grant_id, reason), utcnow()))
    audit_note(request, study=found["study"], institution=found["institution"],
               detail=f"grant {grant_id} revoked: {reason}")
    return JSONResponse(found)


# -- care relationships -------------------------------------------------------------------------------------------
async def create_care(request: Request) -> Response:
    principal, records = principal_of(request), _records(request)
    body = await _body(request, ("doctor", "patientId", "issuerOfPatientId", "institution", "department",
                                 "validFrom", "validUntil"))
    doctor, patient_id, issuer = _str(body, "doctor"), _str(body, "patientId"), _str(body, "issuerOfPatientId")
    institution, department = _str(body, "institution"), _str(body, "department")
    valid_from, valid_until = _time(body, "validFrom"), _time(body, "validUntil")
    found = await anyio.to_thread.run_sync(lambda: care_json(records.care.add(
        principal, doctor=doctor, patient_id=patient_id, institution=institution, department=department,
        issuer=issuer, valid_from=valid_from, valid_until=valid_until), utcnow()))
    audit_note(request, patient=found["patientId"], institution=found["institution"],
               detail=f"care relationship {found['id']} created: {found['doctor']} treats {found['patientId']}")
    return _created(found, "/admin/care-relationships")


async def list_care(request: Request) -> Response:
    principal, records = principal_of(request), _records(request)
    limit, offset, active = _query_int(request, "limit", 100), _query_int(request, "offset", 0), _query_bool(
        request, "active")
    doctor, patient_id, institution, department = (_query(request, name) for name in (
        "doctor", "patientId", "institution", "department"))

    def read() -> list[dict[str, Any]]:
        now = utcnow()
        found = records.care.list(principal, doctor=doctor, patient_id=patient_id, institution=institution,
                                  department=department, active=active, limit=limit, offset=offset, now=now)
        return [care_json(c, now) for c in found]

    found = await anyio.to_thread.run_sync(read)
    audit_note(request, patient=patient_id, count=len(found))
    return JSONResponse(found)


async def get_care(request: Request) -> Response:
    principal, records, relationship_id = principal_of(request), _records(request), _id(request)
    found = await anyio.to_thread.run_sync(
        lambda: care_json(records.care.get(principal, relationship_id), utcnow()))
    audit_note(request, patient=found["patientId"], detail=f"care relationship {relationship_id}")
    return JSONResponse(found)


async def end_care(request: Request) -> Response:
    principal, records, relationship_id = principal_of(request), _records(request), _id(request)
    await _body(request, ())
    found = await anyio.to_thread.run_sync(
        lambda: care_json(records.care.end(principal, relationship_id), utcnow()))
    audit_note(request, patient=found["patientId"], institution=found["institution"],
               detail=f"care relationship {relationship_id} ended")
    return JSONResponse(found)


# -- research shares ----------------------------------------------------------------------------------------------
async def create_share(request: Request) -> Response:
    principal, records = principal_of(request), _records(request)
    body = await _body(request, ("study", "institution", "reason"))
    study, institution, reason = _str(body, "study"), _str(body, "institution"), _str(body, "reason")
    audit_note(request, study=study)
    found = await anyio.to_thread.run_sync(
        lambda: share_json(records.shares.share(principal, study, institution=institution, reason=reason)))
    audit_note(request, institution=found["institution"],
               detail=f"research share {found['id']} created for {found['institution']}")
    return _created(found, "/admin/research-shares")


async def list_shares(request: Request) -> Response:
    principal, records = principal_of(request), _records(request)
    limit, offset, active = _query_int(request, "limit", 100), _query_int(request, "offset", 0), _query_bool(
        request, "active")
    study, institution = _query(request, "study"), _query(request, "institution")
    found = await anyio.to_thread.run_sync(lambda: [share_json(s) for s in records.shares.list(
        principal, study=study, institution=institution, active=active, limit=limit, offset=offset)])
    audit_note(request, study=study, count=len(found))
    return JSONResponse(found)


async def get_share(request: Request) -> Response:
    principal, records, share_id = principal_of(request), _records(request), _id(request)
    found = await anyio.to_thread.run_sync(lambda: share_json(records.shares.get(principal, share_id)))
    audit_note(request, study=found["study"], detail=f"research share {share_id}")
    return JSONResponse(found)


async def revoke_share(request: Request) -> Response:
    principal, records, share_id = principal_of(request), _records(request), _id(request)
    reason = _str(await _body(request, ("reason",)), "reason")
    found = await anyio.to_thread.run_sync(
        lambda: share_json(records.shares.revoke(principal, share_id, reason=reason)))
    audit_note(request, study=found["study"], institution=found["institution"],
               detail=f"research share {share_id} revoked" + (f": {reason}" if reason else ""))
    return JSONResponse(found)


def policy_routes() -> list[Route]:
    return [
        Route("/admin/grants", create_grant, methods=["POST"]),
        Route("/admin/grants", list_grants, methods=["GET"]),
        Route("/admin/grants/{id}", get_grant, methods=["GET"]),
        Route("/admin/grants/{id}/approve", approve_grant, methods=["POST"]),
        Route("/admin/grants/{id}/revoke", revoke_grant, methods=["POST"]),
        Route("/admin/care-relationships", create_care, methods=["POST"]),
        Route("/admin/care-relationships", list_care, methods=["GET"]),
        Route("/admin/care-relationships/{id}", get_care, methods=["GET"]),
        Route("/admin/care-relationships/{id}/end", end_care, methods=["POST"]),
        Route("/admin/research-shares", create_share, methods=["POST"]),
        Route("/admin/research-shares", list_shares, methods=["GET"]),
        Route("/admin/research-shares/{id}", get_share, methods=["GET"]),
        Route("/admin/research-shares/{id}/revoke", revoke_share, methods=["POST"]),
    ]
