"""The admin REST API of the records: exact statuses and bodies, problems naming the field, audit notes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from dicomweb.policies.principal import Principal
from tests.records.conftest import (
    ADMIN,
    CHIEF,
    DOCTOR,
    LAWYER,
    MISSING_STUDY,
    NORTH_ADMIN,
    NORTH_STUDY,
    PATIENT,
    RESEARCHER,
    SOUTH_ADMIN,
    FakePermissions,
    make_app,
)

SOON = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)


class Api:
    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(self, method: str, path: str, who: Principal | None, body: Any = None,
                 raw: bytes | None = None, **params: Any) -> httpx.Response:
        headers = {} if who is None else {"X-Test-Principal": who.subject}
        if raw is not None:
            return self.client.request(method, path, headers=headers, content=raw, params=params)
        return self.client.request(method, path, headers=headers, json=body, params=params)

    @property
    def audits(self) -> list[dict[str, Any]]:
        return self.client.app.state.audits  # type: ignore[attr-defined,no-any-return]


@pytest.fixture
def api(engine: Engine, permissions: FakePermissions) -> Iterator[Api]:
    with TestClient(make_app(engine, permissions)) as client:
        yield Api(client)


def problem(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    return str(body["detail"])


def test_patient_grant_over_http(api: Api) -> None:
    created = api("POST", "/admin/grants", PATIENT, {"kind": "patient", "study": NORTH_STUDY, "grantee": "doc-2",
                                                     "expiresAt": SOON.isoformat()})
    assert created.status_code == 201
    grant = created.json()
    assert created.headers["location"] == f"/admin/grants/{grant['id']}"
    assert {k: grant[k] for k in ("kind", "state", "awaiting", "study", "institution", "grantee", "requestedBy",
                                  "anonymized", "expiresAt", "patientApprovedBy", "revokedAt")} == {
        "kind": "patient", "state": "active", "awaiting": [], "study": NORTH_STUDY, "institution": "North",
        "grantee": "doc-2", "requestedBy": "pat-1", "anonymized": False,
        "expiresAt": SOON.isoformat().replace("+00:00", "Z"), "patientApprovedBy": "pat-1", "revokedAt": None}
    assert grant["activeFrom"] == grant["patientApprovedAt"] == grant["createdAt"]
    assert api.audits[-1] == {"study": NORTH_STUDY, "institution": "North",
                              "detail": f"grant {grant['id']} created: patient for doc-2, active"}
    assert api("GET", f"/admin/grants/{grant['id']}", PATIENT).json() == grant
    assert problem(api("GET", f"/admin/grants/{grant['id']}", DOCTOR), 404) == f"there is no grant {grant['id']}"
    assert [g["id"] for g in api("GET", "/admin/grants", PATIENT).json()] == [grant["id"]]
    assert api.audits[-1] == {"count": 1}
    revoked = api("POST", f"/admin/grants/{grant['id']}/revoke", PATIENT, {"reason": "no longer"})
    assert revoked.status_code == 200
    assert (revoked.json()["state"], revoked.json()["revokedBy"], revoked.json()["revokeReason"]) == (
        "revoked", "pat-1", "no longer")
    assert api.audits[-1] == {"study": NORTH_STUDY, "institution": "North",
                              "detail": f"grant {grant['id']} revoked: no longer"}
    assert problem(api("POST", f"/admin/grants/{grant['id']}/revoke", PATIENT, {"reason": "x"}), 409).startswith(
        f"grant {grant['id']} was revoked at ")


def test_legal_request_over_http(api: Api) -> None:
    body = {"kind": "legal", "study": NORTH_STUDY, "reason": "case 17", "expiresAt": SOON.isoformat()}
    created = api("POST", "/admin/grants", LAWYER, body)
    assert created.status_code == 201
    gid = created.json()["id"]
    assert (created.json()["state"], created.json()["awaiting"]) == ("pending", ["patient", "institution"])
    approve = f"/admin/grants/{gid}/approve"
    assert problem(api("POST", approve, PATIENT, {}), 400) == "as is required: patient, institution or supervisor"
    assert problem(api("POST", approve, PATIENT, {"as": "judge"}), 400) == (
        "as must be one of patient, institution, supervisor, not 'judge'")
    assert problem(api("POST", approve, PATIENT, {"as": 1}), 400) == "as must be a string"
    assert problem(api("POST", approve, NORTH_ADMIN, {"as": "patient"}), 403) == (
        f"this identity may not give the patient approval of grant {gid}")
    assert problem(api("POST", approve, SOUTH_ADMIN, {"as": "institution"}), 404) == f"there is no grant {gid}"
    assert problem(api("POST", approve, NORTH_ADMIN, {"as": "supervisor"}), 409) == (
        "a legal grant needs no supervisor approval")
    first = api("POST", approve, PATIENT, {"as": "patient"})
    assert first.status_code == 200
    assert (first.json()["state"], first.json()["awaiting"]) == ("pending", ["institution"])
    assert api.audits[-1]["detail"] == f"grant {gid} approved as patient, pending"
    assert problem(api("POST", approve, PATIENT, {"as": "patient"}), 409) == (
        f"grant {gid} already has its patient approval")
    second = api("POST", approve, NORTH_ADMIN, {"as": "institution"})
    assert second.status_code == 200
    assert (second.json()["state"], second.json()["awaiting"], second.json()["institutionApprovedBy"]) == (
        "active", [], "ia-north")
    assert second.json()["activeFrom"] == second.json()["institutionApprovedAt"]
    assert api("GET", f"/admin/grants/{gid}", LAWYER).json()["state"] == "active"


def test_grant_creation_problems(api: Api) -> None:
    post = "/admin/grants"
    assert problem(api("POST", post, PATIENT, raw=b"{not json"), 400) == "the body must be a JSON object"
    assert problem(api("POST", post, PATIENT, raw=b"[" * 100_000), 400) == "the body must be a JSON object"
    assert problem(api("POST", post, PATIENT, ["kind"]), 400) == "the body must be a JSON object"
    assert problem(api("POST", post, PATIENT, {"kind": "patient", "color": "red"}), 400) == (
        "unknown field 'color'; the fields are kind, study, grantee, reason, expiresAt, anonymized")
    assert problem(api("POST", post, PATIENT, {"kind": "patient", "study": 7}), 400) == "study must be a string"
    assert problem(api("POST", post, PATIENT, {"kind": None}), 400) == "kind must be a string"
    assert problem(api("POST", post, PATIENT, {"kind": "patient", "grantee": "a\u0000b"}), 400) == (
        "grantee must not contain control characters")
    assert problem(api("POST", post, PATIENT, raw=b'{"kind": "patient", "grantee": "\\ud800"}'), 400) == (
        "grantee must be valid Unicode text")
    for value in ("tomorrow", 5, None, "9999-12-31T23:59:59-05:00"):
        assert problem(api("POST", post, PATIENT, {"kind": "patient", "expiresAt": value}), 400) == (
            "expiresAt must be an ISO 8601 date and time, e.g. 2030-01-31T12:00:00Z")
    assert problem(api("POST", post, PATIENT, {"kind": "patient", "anonymized": "yes"}), 400) == (
        "anonymized must be true or false")
    assert problem(api("POST", post, PATIENT, {"kind": "x", "study": NORTH_STUDY}), 400) == (
        "kind must be one of patient, legal, supervised, not 'x'")
    assert problem(api("POST", post, PATIENT, {"kind": "patient", "study": MISSING_STUDY, "grantee": "d"}), 404) == (
        f"there is no study {MISSING_STUDY}")
    assert problem(api("POST", post, DOCTOR, {"kind": "patient", "study": NORTH_STUDY, "grantee": "d"}), 403) == (
        "only the study's patient may grant access to it")
    assert api.audits[-1] == {"study": NORTH_STUDY}  # the refused attempt names its study
    assert problem(api("POST", post, None, {"kind": "patient"}), 401) == "this request carries no valid bearer token"


def test_grant_reading_problems(api: Api) -> None:
    assert problem(api("GET", "/admin/grants/abc", ADMIN), 400) == "an id is a whole number from 1, not 'abc'"
    assert problem(api("GET", "/admin/grants/\u00b2", ADMIN), 400) == "an id is a whole number from 1, not '\u00b2'"
    assert problem(api("GET", "/admin/grants/00", ADMIN), 400) == "an id is a whole number from 1, not '00'"
    assert problem(api("GET", "/admin/grants/99999999999999999999", ADMIN), 404) == "there is no grant 0"
    assert problem(api("GET", "/admin/grants/5", ADMIN), 404) == "there is no grant 5"
    assert problem(api("GET", "/admin/grants", ADMIN, limit="many"), 400) == "limit must be a whole number, not 'many'"
    assert problem(api("GET", "/admin/grants", ADMIN, limit=0), 400) == "limit must be a whole number from 1 to 1000"
    assert problem(api("GET", "/admin/grants", ADMIN, offset=10**10), 400) == (
        "offset must be a whole number from 0 to 1000000000")
    assert problem(api("GET", "/admin/grants", ADMIN, state="open"), 400) == (
        "state must be one of pending, active, expired, revoked, not 'open'")
    assert problem(api("GET", "/admin/grants", SOUTH_ADMIN, institution="North"), 403) == (
        "this identity may not list the grants of institution 'North'")
    assert problem(api("GET", "/admin/grants", ADMIN, study="1\u0001"), 400) == (
        "study must not contain control characters")
    assert api("GET", "/admin/grants", ADMIN).json() == []
    assert problem(api("POST", "/admin/grants/1/revoke", ADMIN, {}), 404) == "there is no grant 1"


def test_supervised_over_http(api: Api) -> None:
    created = api("POST", "/admin/grants", DOCTOR, {"kind": "supervised", "study": NORTH_STUDY, "reason": "ER"})
    gid = created.json()["id"]
    assert (created.status_code, created.json()["awaiting"], created.json()["grantee"]) == (
        201, ["supervisor"], "doc-1")
    assert [g["id"] for g in api("GET", "/admin/grants", CHIEF, state="pending").json()] == [gid]
    assert problem(api("POST", f"/admin/grants/{gid}/revoke", CHIEF, {}), 400) == "reason is required"
    approved = api("POST", f"/admin/grants/{gid}/approve", CHIEF, {"as": "supervisor"})
    assert (approved.status_code, approved.json()["state"], approved.json()["supervisorApprovedBy"]) == (
        200, "active", "chief-north")
    assert [g["id"] for g in api("GET", "/admin/grants", CHIEF, state="pending").json()] == []


def test_care_relationships_over_http(api: Api) -> None:
    body = {"doctor": "doc-1", "patientId": "P1", "institution": "North", "department": "Cardio"}
    created = api("POST", "/admin/care-relationships", NORTH_ADMIN, body)
    assert created.status_code == 201
    found = created.json()
    rid = found["id"]
    assert created.headers["location"] == f"/admin/care-relationships/{rid}"
    assert {k: found[k] for k in ("active", "doctor", "patientId", "issuerOfPatientId", "institution", "department",
                                  "validUntil", "createdBy", "endedAt", "endedBy")} == {
        "active": True, "doctor": "doc-1", "patientId": "P1", "issuerOfPatientId": "", "institution": "North",
        "department": "Cardio", "validUntil": None, "createdBy": "ia-north", "endedAt": None, "endedBy": None}
    assert api.audits[-1] == {"patient": "P1", "institution": "North",
                              "detail": f"care relationship {rid} created: doc-1 treats P1"}
    duplicate = api("POST", "/admin/care-relationships", NORTH_ADMIN, body)
    assert problem(duplicate, 409) == f"care relationship {rid} already names this doctor and patient there"
    assert duplicate.json()["existing"] == rid
    assert problem(api("POST", "/admin/care-relationships", SOUTH_ADMIN, body), 403) == (
        "this identity may not manage the care relationships of 'North'")
    assert problem(api("POST", "/admin/care-relationships", NORTH_ADMIN, {**body, "patientId": ""}), 400) == (
        "patientId is required")
    assert problem(api("POST", "/admin/care-relationships", NORTH_ADMIN, {**body, "ward": "3"}), 400).startswith(
        "unknown field 'ward'")
    assert problem(api("POST", "/admin/care-relationships", NORTH_ADMIN,
                       {**body, "validFrom": "2030-01-02T00:00:00Z", "validUntil": "2030-01-01T00:00:00Z"}), 400) == (
        "validUntil must be after validFrom")
    assert [c["id"] for c in api("GET", "/admin/care-relationships", DOCTOR).json()] == [rid]
    assert [c["id"] for c in api("GET", "/admin/care-relationships", NORTH_ADMIN, active="true").json()] == [rid]
    assert problem(api("GET", "/admin/care-relationships", NORTH_ADMIN, active="yes"), 400) == (
        "active must be true or false, not 'yes'")
    assert problem(api("GET", "/admin/care-relationships", SOUTH_ADMIN, institution="North"), 403) == (
        "this identity may not list the care relationships of 'North'")
    assert problem(api("POST", f"/admin/care-relationships/{rid}/end", DOCTOR), 403) == (
        f"this identity may not end care relationship {rid}")
    assert problem(api("POST", f"/admin/care-relationships/{rid}/end", SOUTH_ADMIN), 404) == (
        f"there is no care relationship {rid}")
    ended = api("POST", f"/admin/care-relationships/{rid}/end", CHIEF)
    assert (ended.status_code, ended.json()["active"], ended.json()["endedBy"]) == (200, False, "chief-north")
    assert api.audits[-1] == {"patient": "P1", "institution": "North", "detail": f"care relationship {rid} ended"}
    assert problem(api("POST", f"/admin/care-relationships/{rid}/end", CHIEF), 409) == (
        f"care relationship {rid} has already ended")
    assert api("GET", "/admin/care-relationships", NORTH_ADMIN, active="true").json() == []
    assert api("GET", f"/admin/care-relationships/{rid}", DOCTOR).json() == ended.json()
    assert problem(api("GET", f"/admin/care-relationships/{rid}", SOUTH_ADMIN), 404) == (
        f"there is no care relationship {rid}")


def test_research_shares_over_http(api: Api) -> None:
    created = api("POST", "/admin/research-shares", NORTH_ADMIN, {"study": NORTH_STUDY, "reason": "project A"})
    assert created.status_code == 201
    sid = created.json()["id"]
    assert created.headers["location"] == f"/admin/research-shares/{sid}"
    assert {k: created.json()[k] for k in ("active", "study", "institution", "sharedBy", "reason", "revokedAt")} == {
        "active": True, "study": NORTH_STUDY, "institution": "North", "sharedBy": "ia-north", "reason": "project A",
        "revokedAt": None}
    assert api.audits[-1] == {"study": NORTH_STUDY, "institution": "North",
                              "detail": f"research share {sid} created for North"}
    assert problem(api("POST", "/admin/research-shares", NORTH_ADMIN, {"study": NORTH_STUDY}), 409) == (
        f"research share {sid} already shares this study with 'North'")
    assert problem(api("POST", "/admin/research-shares", SOUTH_ADMIN, {"study": NORTH_STUDY}), 403) == (
        "this identity may not share the studies of 'North' for research")
    assert problem(api("POST", "/admin/research-shares", NORTH_ADMIN, {"study": MISSING_STUDY}), 404) == (
        f"there is no study {MISSING_STUDY}")
    assert problem(api("POST", "/admin/research-shares", NORTH_ADMIN, {}), 400) == (
        "study must be a valid Study Instance UID, not ''")
    assert [s["id"] for s in api("GET", "/admin/research-shares", NORTH_ADMIN).json()] == [sid]
    assert problem(api("GET", "/admin/research-shares", RESEARCHER), 403) == (
        "this identity may not list research shares")
    assert problem(api("POST", f"/admin/research-shares/{sid}/revoke", SOUTH_ADMIN, {}), 404) == (
        f"there is no research share {sid}")
    revoked = api("POST", f"/admin/research-shares/{sid}/revoke", NORTH_ADMIN, {"reason": "done"})
    assert (revoked.status_code, revoked.json()["active"], revoked.json()["revokeReason"]) == (200, False, "done")
    assert api.audits[-1] == {"study": NORTH_STUDY, "institution": "North",
                              "detail": f"research share {sid} revoked: done"}
    assert problem(api("POST", f"/admin/research-shares/{sid}/revoke", NORTH_ADMIN, {}), 409) == (
        f"research share {sid} was already revoked")
    assert api("GET", "/admin/research-shares", ADMIN, active="false").json()[0]["id"] == sid
    assert api("GET", f"/admin/research-shares/{sid}", NORTH_ADMIN).json() == revoked.json()
    assert problem(api("GET", f"/admin/research-shares/{sid}", RESEARCHER), 404) == f"there is no research share {sid}"


def test_auth_off_acts_as_the_system(engine: Engine, permissions: FakePermissions) -> None:
    with TestClient(make_app(engine, permissions, auth="off")) as client:
        created = client.post("/admin/grants", json={"kind": "patient", "study": NORTH_STUDY, "grantee": "doc-9"})
        assert (created.status_code, created.json()["requestedBy"]) == (201, "system")
        assert client.get("/admin/grants").json()[0]["grantee"] == "doc-9"
