"""Grants: who may create, approve, revoke and see each kind; when each is active; explicit ``now``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dicomweb.policies.principal import SYSTEM, Principal
from dicomweb.policies.records import AccessGrant, PolicyRecords, RecordError
from dicomweb.policies.records.grants import state
from tests.records.conftest import (
    ADMIN,
    CHIEF,
    COURT,
    DOCTOR,
    DOCTOR2,
    LAWYER,
    MISSING_STUDY,
    NORTH_ADMIN,
    NORTH_STUDY,
    NOW,
    OTHER_PATIENT,
    PATIENT,
    SOUTH_ADMIN,
    SOUTH_STUDY,
)

DAY = timedelta(days=1)


def refused(status: int, call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(RecordError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.status == status, caught.value.detail
    return caught.value.detail


def legal(records: PolicyRecords, by: Principal = LAWYER, study: str = NORTH_STUDY) -> AccessGrant:
    return records.grants.create(by, "legal", study, reason="case 17/2030", expires_at=NOW + 30 * DAY, now=NOW)


def supervised(records: PolicyRecords, by: Principal = DOCTOR) -> AccessGrant:
    return records.grants.create(by, "supervised", NORTH_STUDY, reason="second opinion", now=NOW)


# -- patient grants -------------------------------------------------------------------------------------------------
def test_patient_grant_is_active_at_once(records: PolicyRecords) -> None:
    grant = records.grants.create(PATIENT, "patient", NORTH_STUDY, grantee="doc-2", now=NOW)
    assert (grant.kind, grant.grantee, grant.requested_by, grant.institution) == ("patient", "doc-2", "pat-1", "North")
    assert (grant.patient_approved_by, grant.patient_approved_at, grant.active_from) == ("pat-1", NOW, NOW)
    assert grant.anonymized is False and grant.expires_at is None
    assert state(records.grants.get(PATIENT, grant.id or 0), NOW) == "active"
    assert state(records.grants.get(DOCTOR2, grant.id or 0), NOW + 1000 * DAY) == "active"


def test_patient_grant_refusals(records: PolicyRecords) -> None:
    create = records.grants.create
    assert refused(403, create, OTHER_PATIENT, "patient", NORTH_STUDY, grantee="doc-2") == (
        "only the study's patient may grant access to it")
    refused(403, create, DOCTOR, "patient", NORTH_STUDY, grantee="doc-1")
    refused(403, create, NORTH_ADMIN, "patient", NORTH_STUDY, grantee="doc-1")
    assert refused(404, create, PATIENT, "patient", MISSING_STUDY, grantee="doc-2") == (
        f"there is no study {MISSING_STUDY}")
    assert refused(400, create, PATIENT, "patient", "1.2.x", grantee="doc-2") == (
        "study must be a valid Study Instance UID, not '1.2.x'")
    assert refused(400, create, PATIENT, "friend", NORTH_STUDY, grantee="doc-2") == (
        "kind must be one of patient, legal, supervised, not 'friend'")
    assert refused(400, create, PATIENT, "patient", NORTH_STUDY) == "grantee is required"
    assert refused(400, create, PATIENT, "patient", NORTH_STUDY, grantee="d" * 201) == (
        "grantee is at most 200 characters long")
    assert refused(400, create, PATIENT, "patient", NORTH_STUDY, grantee="doc\x00") == (
        "grantee must not contain control characters")
    assert refused(400, create, PATIENT, "patient", NORTH_STUDY, grantee="doc-2", expires_at=NOW, now=NOW) == (
        "expiresAt must be in the future")
    assert refused(400, create, PATIENT, "patient", NORTH_STUDY, grantee="doc-2", anonymized=True) == (
        "anonymized: a patient grant opens the study in full")
    assert records.grants.list(SYSTEM) == []


def test_patient_grant_expires(records: PolicyRecords) -> None:
    grant = records.grants.create(PATIENT, "patient", NORTH_STUDY, grantee="doc-2", expires_at=NOW + DAY, now=NOW)
    assert grant.expires_at == NOW + DAY
    assert state(grant, NOW + DAY - timedelta(microseconds=1)) == "active"
    assert state(grant, NOW + DAY) == "expired"
    assert [g.id for g in records.grants.list(SYSTEM, state="active", now=NOW)] == [grant.id]
    assert [g.id for g in records.grants.list(SYSTEM, state="expired", now=NOW + DAY)] == [grant.id]
    assert records.grants.list(SYSTEM, state="active", now=NOW + DAY) == []
    assert refused(409, records.grants.revoke, PATIENT, grant.id, "too late", now=NOW + DAY).startswith(
        f"grant {grant.id} expired at 2030-06-02T12:00:00")


def test_patient_grant_revocation(records: PolicyRecords) -> None:
    grant = records.grants.create(PATIENT, "patient", NORTH_STUDY, grantee="doc-2", now=NOW)
    gid = grant.id or 0
    assert refused(404, records.grants.revoke, DOCTOR, gid, "no") == f"there is no grant {gid}"
    assert refused(403, records.grants.revoke, NORTH_ADMIN, gid, "no") == f"this identity may not revoke grant {gid}"
    assert refused(400, records.grants.revoke, PATIENT, gid, "  ") == "reason is required"
    revoked = records.grants.revoke(PATIENT, gid, "changed my mind", now=NOW + DAY)
    assert (revoked.revoked_at, revoked.revoked_by, revoked.revoke_reason) == (NOW + DAY, "pat-1", "changed my mind")
    assert state(revoked, NOW + DAY) == "revoked"
    assert refused(409, records.grants.revoke, ADMIN, gid, "again") == (
        f"grant {gid} was revoked at 2030-06-02T12:00:00+00:00")
    assert refused(409, records.grants.approve, PATIENT, gid, "patient") == "a patient grant needs no patient approval"
    # Revocation is permanent: a new grant is a new record.
    again = records.grants.create(PATIENT, "patient", NORTH_STUDY, grantee="doc-2", now=NOW + 2 * DAY)
    assert again.id != gid and state(again, NOW + 2 * DAY) == "active"


@pytest.mark.parametrize("who", [DOCTOR2, ADMIN, SYSTEM], ids=["grantee", "admin", "system"])
def test_patient_grant_revocable_by_grantee_and_admins(records: PolicyRecords, who: Principal) -> None:
    grant = records.grants.create(PATIENT, "patient", NORTH_STUDY, grantee="doc-2", now=NOW)
    assert records.grants.revoke(who, grant.id or 0, "done", now=NOW).revoked_by == who.subject


# -- legal requests -------------------------------------------------------------------------------------------------
def test_legal_request_needs_patient_and_institution(records: PolicyRecords) -> None:
    grant = legal(records)
    gid = grant.id or 0
    assert (grant.grantee, grant.requested_by, grant.active_from, grant.anonymized) == ("law-1", "law-1", None, False)
    assert state(grant, NOW) == "pending"
    after_patient = records.grants.approve(PATIENT, gid, "patient", now=NOW + DAY)
    assert (after_patient.patient_approved_by, after_patient.patient_approved_at) == ("pat-1", NOW + DAY)
    assert after_patient.active_from is None and state(after_patient, NOW + DAY) == "pending"
    assert refused(409, records.grants.approve, PATIENT, gid, "patient") == (
        f"grant {gid} already has its patient approval")
    active = records.grants.approve(NORTH_ADMIN, gid, "institution", now=NOW + 2 * DAY)
    assert (active.institution_approved_by, active.institution_approved_at) == ("ia-north", NOW + 2 * DAY)
    assert active.active_from == NOW + 2 * DAY and state(active, NOW + 2 * DAY) == "active"
    assert refused(409, records.grants.approve, NORTH_ADMIN, gid, "institution", now=NOW + 3 * DAY) == (
        f"grant {gid} already has its institution approval")
    assert state(active, NOW + 30 * DAY) == "expired"


def test_legal_approvals_in_either_order(records: PolicyRecords) -> None:
    gid = legal(records, COURT).id or 0
    assert records.grants.approve(ADMIN, gid, "institution", now=NOW).active_from is None
    assert records.grants.approve(PATIENT, gid, "patient", now=NOW + DAY).active_from == NOW + DAY


def test_legal_request_refusals(records: PolicyRecords) -> None:
    create = records.grants.create
    ok: dict[str, Any] = {"reason": "case", "expires_at": NOW + 30 * DAY, "now": NOW}
    assert refused(403, create, DOCTOR, "legal", NORTH_STUDY, **ok) == (
        "a legal request is made by the roles court, lawyer")
    refused(403, create, PATIENT, "legal", NORTH_STUDY, **ok)
    assert refused(403, create, LAWYER, "legal", NORTH_STUDY, grantee="law-2", **ok) == (
        "an identity may request access for itself only")
    assert refused(404, create, LAWYER, "legal", MISSING_STUDY, **ok) == f"there is no study {MISSING_STUDY}"
    assert refused(400, create, LAWYER, "legal", NORTH_STUDY, expires_at=NOW + DAY, now=NOW) == "reason is required"
    assert refused(400, create, LAWYER, "legal", NORTH_STUDY, reason="case", now=NOW) == (
        "expiresAt is required: legal access is temporary")
    assert refused(400, create, LAWYER, "legal", NORTH_STUDY, reason="case", expires_at=NOW - DAY, now=NOW) == (
        "expiresAt must be in the future")
    assert refused(400, create, LAWYER, "legal", NORTH_STUDY, reason="case", expires_at=NOW + 366 * DAY, now=NOW) == (
        "expiresAt is at most 365 days ahead for legal access")
    assert refused(400, create, LAWYER, "legal", NORTH_STUDY, anonymized=True, **ok) == (
        "anonymized: a legal grant opens the study in full")
    assert refused(400, create, SYSTEM, "legal", NORTH_STUDY, **ok) == "grantee is required"
    longest = create(LAWYER, "legal", NORTH_STUDY, reason="case", expires_at=NOW + 365 * DAY, now=NOW)
    assert longest.expires_at == NOW + 365 * DAY
    by_system = create(SYSTEM, "legal", NORTH_STUDY, grantee="court-9", **ok)
    assert (by_system.grantee, by_system.requested_by) == ("court-9", "system")


def test_legal_approval_refusals(records: PolicyRecords) -> None:
    gid = legal(records).id or 0
    approve = records.grants.approve
    assert refused(404, approve, SOUTH_ADMIN, gid, "institution") == f"there is no grant {gid}"
    assert refused(404, approve, DOCTOR, gid, "institution") == f"there is no grant {gid}"
    assert refused(404, approve, OTHER_PATIENT, gid, "patient") == f"there is no grant {gid}"
    assert refused(403, approve, NORTH_ADMIN, gid, "patient") == (
        f"this identity may not give the patient approval of grant {gid}")
    assert refused(403, approve, PATIENT, gid, "institution") == (
        f"this identity may not give the institution approval of grant {gid}")
    assert refused(403, approve, LAWYER, gid, "patient") == (
        f"this identity may not give the patient approval of grant {gid}")
    assert refused(409, approve, NORTH_ADMIN, gid, "supervisor") == "a legal grant needs no supervisor approval"
    assert refused(400, approve, NORTH_ADMIN, gid, "judge") == (
        "as must be one of patient, institution, supervisor, not 'judge'")
    assert refused(404, approve, SYSTEM, 999, "patient") == "there is no grant 999"
    assert refused(404, approve, SYSTEM, 2**40, "patient") == f"there is no grant {2**40}"


def test_legal_refused_by_either_side(records: PolicyRecords) -> None:
    by_patient = legal(records).id or 0
    refusal = records.grants.revoke(PATIENT, by_patient, "I do not consent", now=NOW)
    assert (refusal.revoked_by, refusal.revoke_reason, refusal.active_from) == ("pat-1", "I do not consent", None)
    assert refused(409, records.grants.approve, NORTH_ADMIN, by_patient, "institution").startswith(
        f"grant {by_patient} was revoked at")
    by_institution = legal(records).id or 0
    records.grants.approve(PATIENT, by_institution, "patient", now=NOW)
    assert records.grants.revoke(NORTH_ADMIN, by_institution, "no court order", now=NOW).revoked_by == "ia-north"
    south = legal(records, study=SOUTH_STUDY).id
    assert refused(404, records.grants.revoke, NORTH_ADMIN, south, "x") == f"there is no grant {south}"
    assert refused(404, records.grants.revoke, DOCTOR, by_patient, "x") == f"there is no grant {by_patient}"


def test_legal_request_expired_before_approval(records: PolicyRecords) -> None:
    gid = legal(records).id or 0
    records.grants.approve(PATIENT, gid, "patient", now=NOW)
    assert refused(409, records.grants.approve, NORTH_ADMIN, gid, "institution", now=NOW + 30 * DAY) == (
        f"grant {gid} expired at 2030-07-01T12:00:00+00:00")
    grant = records.grants.get(LAWYER, gid)
    assert grant.active_from is None and state(grant, NOW + 30 * DAY) == "expired"


def test_requester_follows_its_request(records: PolicyRecords) -> None:
    gid = legal(records).id or 0
    assert records.grants.get(LAWYER, gid).id == gid
    assert refused(404, records.grants.get, COURT, gid) == f"there is no grant {gid}"
    # The requester may withdraw its request.
    assert records.grants.revoke(LAWYER, gid, "settled", now=NOW).revoked_by == "law-1"


# -- supervised access ----------------------------------------------------------------------------------------------
def test_supervised_access(records: PolicyRecords) -> None:
    grant = supervised(records)
    gid = grant.id or 0
    assert (grant.grantee, state(grant, NOW)) == ("doc-1", "pending")
    assert refused(403, records.grants.approve, DOCTOR, gid, "supervisor") == (
        f"this identity may not give the supervisor approval of grant {gid}")
    assert refused(404, records.grants.approve, SOUTH_ADMIN, gid, "supervisor") == f"there is no grant {gid}"
    assert refused(409, records.grants.approve, CHIEF, gid, "patient") == "a supervised grant needs no patient approval"
    active = records.grants.approve(CHIEF, gid, "supervisor", now=NOW + DAY)
    assert (active.supervisor_approved_by, active.active_from) == ("chief-north", NOW + DAY)
    assert refused(409, records.grants.approve, NORTH_ADMIN, gid, "supervisor") == (
        f"grant {gid} already has its supervisor approval")
    assert refused(403, records.grants.revoke, PATIENT, gid, "mine") == f"this identity may not revoke grant {gid}"
    assert records.grants.revoke(CHIEF, gid, "done", now=NOW + 2 * DAY).revoked_by == "chief-north"


def test_supervised_requests(records: PolicyRecords) -> None:
    create = records.grants.create
    assert refused(403, create, LAWYER, "supervised", NORTH_STUDY, reason="x") == (
        "a supervised request is made by the roles chief, doctor, radiologist")
    assert refused(400, create, DOCTOR, "supervised", NORTH_STUDY) == "reason is required"
    own = create(CHIEF, "supervised", NORTH_STUDY, reason="teaching", anonymized=True, expires_at=NOW + DAY, now=NOW)
    assert own.anonymized is True
    assert refused(403, records.grants.approve, CHIEF, own.id, "supervisor") == (
        "a supervised request is approved by someone other than its requester")
    assert records.grants.approve(NORTH_ADMIN, own.id or 0, "supervisor", now=NOW).active_from == NOW
    assert records.grants.approve(SYSTEM, supervised(records).id or 0, "supervisor", now=NOW).active_from == NOW


# -- listing ----------------------------------------------------------------------------------------------------------
def test_who_lists_which_grants(records: PolicyRecords) -> None:
    g1 = records.grants.create(PATIENT, "patient", NORTH_STUDY, grantee="doc-2", now=NOW).id
    g2 = legal(records).id
    g3 = supervised(records).id
    g4 = records.grants.create(OTHER_PATIENT, "patient", SOUTH_STUDY, grantee="doc-1", now=NOW).id
    g5 = legal(records, COURT, SOUTH_STUDY).id

    def ids(who: Principal, **filters: object) -> list[int | None]:
        return [g.id for g in records.grants.list(who, now=NOW, **filters)]  # type: ignore[arg-type]

    assert ids(SYSTEM) == ids(ADMIN) == [g5, g4, g3, g2, g1]
    assert ids(PATIENT) == [g1]
    assert ids(PATIENT, study=NORTH_STUDY) == [g3, g2, g1]
    assert ids(PATIENT, study=SOUTH_STUDY) == []
    assert ids(DOCTOR) == [g4, g3]
    assert ids(DOCTOR2) == [g1]
    assert ids(LAWYER) == [g2]
    assert ids(NORTH_ADMIN) == [g3, g2, g1]
    assert ids(SOUTH_ADMIN) == [g5, g4]
    assert ids(CHIEF) == [g3]
    assert ids(NORTH_ADMIN, institution="North", kind="legal") == [g2]
    assert ids(SYSTEM, grantee="doc-1") == [g4, g3]
    assert ids(SYSTEM, study=SOUTH_STUDY) == [g5, g4]
    assert ids(SYSTEM, state="pending") == [g5, g3, g2]
    assert ids(SYSTEM, state="active") == [g4, g1]
    assert ids(SYSTEM, limit=2) == [g5, g4]
    assert ids(SYSTEM, limit=2, offset=3) == [g2, g1]
    assert refused(403, records.grants.list, SOUTH_ADMIN, institution="North") == (
        "this identity may not list the grants of institution 'North'")
    assert refused(400, records.grants.list, SYSTEM, state="open") == (
        "state must be one of pending, active, expired, revoked, not 'open'")
    assert refused(400, records.grants.list, SYSTEM, kind="x") == (
        "kind must be one of patient, legal, supervised, not 'x'")
    assert refused(400, records.grants.list, SYSTEM, limit=0) == "limit must be a whole number from 1 to 1000"
    assert refused(400, records.grants.list, SYSTEM, offset=-1) == "offset must be a whole number from 0 to 1000000000"
    records.grants.revoke(SYSTEM, g1 or 0, "x", now=NOW)
    assert ids(SYSTEM, state="revoked") == [g1]
    assert ids(SYSTEM, state="expired") == []
    assert [g.id for g in records.grants.list(SYSTEM, state="expired", now=NOW + 30 * DAY)] == [g5, g2]
