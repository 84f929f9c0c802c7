"""Care relationships and research shares: who may create, end, revoke and list them; validity in time."""

from __future__ import annotations

from datetime import timedelta

from dicomweb.policies.principal import SYSTEM, Principal
from dicomweb.policies.records import PolicyRecords
from dicomweb.policies.records.care import in_force
from tests.records.conftest import (
    ADMIN,
    BARE_STUDY,
    CHIEF,
    DOCTOR,
    DOCTOR2,
    MISSING_STUDY,
    NORTH_ADMIN,
    NORTH_STUDY,
    NOW,
    PATIENT,
    RESEARCHER,
    SOUTH_ADMIN,
    SOUTH_STUDY,
)
from tests.records.test_grants import refused

DAY = timedelta(days=1)


def care(records: PolicyRecords, by: Principal = NORTH_ADMIN, doctor: str = "doc-1", patient: str = "P1",
         institution: str = "North", **extra: object) -> int:
    relationship = records.care.add(by, doctor=doctor, patient_id=patient, institution=institution,
                                    department="Cardio", now=NOW, **extra)  # type: ignore[arg-type]
    assert relationship.id is not None
    return relationship.id


def test_care_relationship_created_by_the_institutions_care_managers(records: PolicyRecords) -> None:
    rid = care(records, issuer="NATIONAL")
    found = records.care.get(DOCTOR, rid)
    assert (found.doctor, found.patient_id, found.issuer_of_patient_id, found.institution, found.department) == (
        "doc-1", "P1", "NATIONAL", "North", "Cardio")
    assert (found.valid_from, found.valid_until, found.created_by, found.created_at, found.ended_at) == (
        NOW, None, "ia-north", NOW, None)
    assert in_force(found, NOW) and not in_force(found, NOW - timedelta(microseconds=1))
    assert care(records, CHIEF, patient="P2") > rid
    assert care(records, SYSTEM, patient="P3", institution="Anywhere") > rid
    assert care(records, ADMIN, patient="P4", institution="South") > rid


def test_care_relationship_refusals(records: PolicyRecords) -> None:
    add = records.care.add
    assert refused(403, add, SOUTH_ADMIN, doctor="doc-1", patient_id="P1", institution="North") == (
        "this identity may not manage the care relationships of 'North'")
    refused(403, add, DOCTOR, doctor="doc-1", patient_id="P1", institution="North")
    refused(403, add, CHIEF, doctor="doc-1", patient_id="P1", institution="South")
    assert refused(400, add, NORTH_ADMIN, doctor=" ", patient_id="P1", institution="North") == "doctor is required"
    assert refused(400, add, NORTH_ADMIN, doctor="d", patient_id="", institution="North") == "patientId is required"
    assert refused(400, add, NORTH_ADMIN, doctor="d", patient_id="P" * 65, institution="North") == (
        "patientId is at most 64 characters long")
    assert refused(400, add, NORTH_ADMIN, doctor="d", patient_id="P1", institution="") == "institution is required"
    assert refused(400, add, NORTH_ADMIN, doctor="d", patient_id="P1", institution="North", valid_from=NOW,
                   valid_until=NOW) == "validUntil must be after validFrom"
    rid = care(records)
    detail = refused(409, records.care.add, NORTH_ADMIN, doctor="doc-1", patient_id="P1", institution="North",
                     department="Cardio", now=NOW)
    assert detail == f"care relationship {rid} already names this doctor and patient there"
    # Another department, another doctor or another issuer is another relationship.
    assert care(records, doctor="doc-2") != rid
    assert care(records, issuer="OTHER") != rid


def test_care_relationship_validity_and_end(records: PolicyRecords) -> None:
    later = care(records, valid_from=NOW + DAY, valid_until=NOW + 10 * DAY)
    found = records.care.get(SYSTEM, later)
    assert not in_force(found, NOW) and in_force(found, NOW + DAY) and not in_force(found, NOW + 10 * DAY)
    rid = care(records, patient="P2")
    assert refused(403, records.care.end, DOCTOR, rid) == f"this identity may not end care relationship {rid}"
    assert refused(404, records.care.end, SOUTH_ADMIN, rid) == f"there is no care relationship {rid}"
    assert refused(404, records.care.end, DOCTOR2, rid) == f"there is no care relationship {rid}"
    assert refused(404, records.care.end, SYSTEM, 999) == "there is no care relationship 999"
    ended = records.care.end(CHIEF, rid, now=NOW + DAY)
    assert (ended.ended_at, ended.ended_by) == (NOW + DAY, "chief-north")
    assert not in_force(ended, NOW + DAY) and not in_force(ended, NOW)
    assert refused(409, records.care.end, NORTH_ADMIN, rid) == f"care relationship {rid} has already ended"
    # Once ended, the same relationship can be recorded again (a new record).
    assert care(records, patient="P2") > rid


def test_who_lists_which_care_relationships(records: PolicyRecords) -> None:
    north1 = care(records)
    north2 = care(records, doctor="doc-2", patient="P2", valid_from=NOW + DAY)
    south = care(records, SOUTH_ADMIN, doctor="doc-1", patient="P3", institution="South")
    records.care.end(SYSTEM, north1, now=NOW)

    def ids(who: Principal, **filters: object) -> list[int | None]:
        return [c.id for c in records.care.list(who, now=NOW, **filters)]  # type: ignore[arg-type]

    assert ids(SYSTEM) == ids(ADMIN) == [south, north2, north1]
    assert ids(NORTH_ADMIN) == ids(CHIEF) == [north2, north1]
    assert ids(SOUTH_ADMIN) == [south]
    assert ids(DOCTOR) == [south, north1]
    assert ids(DOCTOR2) == [north2]
    assert ids(PATIENT) == []
    assert ids(SYSTEM, active=True) == [south]
    assert ids(SYSTEM, active=False) == [north2, north1]
    assert [c.id for c in records.care.list(SYSTEM, active=True, now=NOW + DAY)] == [south, north2]
    assert ids(SYSTEM, doctor="doc-1") == [south, north1]
    assert ids(SYSTEM, patient_id="P2") == [north2]
    assert ids(SYSTEM, institution="South", department="Cardio") == [south]
    assert ids(SYSTEM, limit=1, offset=1) == [north2]
    assert refused(403, records.care.list, SOUTH_ADMIN, institution="North") == (
        "this identity may not list the care relationships of 'North'")
    refused(403, records.care.list, DOCTOR, institution="North")  # its own ones it lists without the filter


# -- research shares --------------------------------------------------------------------------------------------------
def test_research_share_by_the_studys_institution(records: PolicyRecords) -> None:
    share = records.shares.share(NORTH_ADMIN, NORTH_STUDY, reason="project A", now=NOW)
    assert (share.study_instance_uid, share.institution, share.shared_by, share.reason, share.created_at) == (
        NORTH_STUDY, "North", "ia-north", "project A", NOW)
    assert share.revoked_at is None
    assert refused(409, records.shares.share, NORTH_ADMIN, NORTH_STUDY, institution="North") == (
        f"research share {share.id} already shares this study with 'North'")
    assert refused(403, records.shares.share, SOUTH_ADMIN, NORTH_STUDY) == (
        "this identity may not share the studies of 'North' for research")
    refused(403, records.shares.share, RESEARCHER, NORTH_STUDY)
    refused(403, records.shares.share, CHIEF, NORTH_STUDY)
    assert refused(404, records.shares.share, NORTH_ADMIN, MISSING_STUDY) == f"there is no study {MISSING_STUDY}"
    assert refused(400, records.shares.share, NORTH_ADMIN, "abc") == (
        "study must be a valid Study Instance UID, not 'abc'")
    assert refused(400, records.shares.share, NORTH_ADMIN, NORTH_STUDY, institution="South") == (
        "institution must be the study's institution 'North', not 'South'")
    south = records.shares.share(ADMIN, SOUTH_STUDY, now=NOW)
    assert (south.institution, south.shared_by) == ("South", "root")


def test_research_share_by_the_system(records: PolicyRecords) -> None:
    partner = records.shares.share(SYSTEM, NORTH_STUDY, institution="Partner", now=NOW)
    assert (partner.institution, partner.shared_by) == ("Partner", "system")
    own = records.shares.share(SYSTEM, NORTH_STUDY, now=NOW)
    assert own.institution == "North" and own.id != partner.id
    assert refused(400, records.shares.share, SYSTEM, BARE_STUDY) == (
        "institution is required: the study names no institution")
    assert records.shares.share(SYSTEM, BARE_STUDY, institution="Lab").institution == "Lab"


def test_research_share_revocation(records: PolicyRecords) -> None:
    sid = records.shares.share(NORTH_ADMIN, NORTH_STUDY, now=NOW).id or 0
    assert refused(404, records.shares.revoke, SOUTH_ADMIN, sid) == f"there is no research share {sid}"
    assert refused(404, records.shares.revoke, RESEARCHER, sid) == f"there is no research share {sid}"
    assert refused(404, records.shares.revoke, SYSTEM, 12345) == "there is no research share 12345"
    revoked = records.shares.revoke(NORTH_ADMIN, sid, reason="project over", now=NOW + DAY)
    assert (revoked.revoked_at, revoked.revoked_by, revoked.revoke_reason) == (NOW + DAY, "ia-north", "project over")
    assert refused(409, records.shares.revoke, ADMIN, sid) == f"research share {sid} was already revoked"
    again = records.shares.share(NORTH_ADMIN, NORTH_STUDY, now=NOW + 2 * DAY)
    assert again.id != sid and again.revoked_at is None


def test_who_lists_which_research_shares(records: PolicyRecords) -> None:
    north = records.shares.share(NORTH_ADMIN, NORTH_STUDY).id
    south = records.shares.share(SOUTH_ADMIN, SOUTH_STUDY).id
    lab = records.shares.share(SYSTEM, BARE_STUDY, institution="Lab").id
    records.shares.revoke(SYSTEM, north or 0)

    def ids(who: Principal, **filters: object) -> list[int | None]:
        return [s.id for s in records.shares.list(who, **filters)]  # type: ignore[arg-type]

    assert ids(SYSTEM) == ids(ADMIN) == [lab, south, north]
    assert ids(NORTH_ADMIN) == [north]
    assert ids(SOUTH_ADMIN, institution="South") == [south]
    assert ids(SYSTEM, active=True) == [lab, south]
    assert ids(SYSTEM, active=False) == [north]
    assert ids(SYSTEM, study=SOUTH_STUDY) == [south]
    assert ids(SYSTEM, institution="Lab") == [lab]
    assert refused(403, records.shares.list, RESEARCHER) == "this identity may not list research shares"
    assert refused(403, records.shares.list, SOUTH_ADMIN, institution="North") == (
        "this identity may not list research shares of 'North'")
    refused(403, records.shares.list, DOCTOR)
