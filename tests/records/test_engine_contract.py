"""The records as the policy engine reads them: the real PolicyEngine is the Permissions, and its decisions
follow each record's life (care relationship, patient grant, legal request, research share)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine

from dicomweb.index.models import utcnow
from dicomweb.policies.engine import PolicyEngine
from dicomweb.policies.principal import NationalId, Principal
from dicomweb.policies.records import PolicyRecords, RecordError
from tests.records.conftest import add_study

STUDY, OTHER = "1.2.826.0.1.1", "1.2.826.0.1.2"
PATIENT = Principal("pat-1", frozenset({"patient"}), national_ids=(NationalId("P1"),))
DOCTOR = Principal("doc-1", frozenset({"doctor"}), institution="North", department="Cardio")
LAWYER = Principal("law-1", frozenset({"lawyer"}))
NORTH_ADMIN = Principal("ia-north", frozenset({"institution_admin"}), institution="North")
RESEARCHER = Principal("res-1", frozenset({"researcher"}), institution="North")


@pytest.fixture
def policy(engine: Engine) -> PolicyEngine:
    add_study(engine, STUDY, "P1", "North")
    add_study(engine, OTHER, "P2", "South")
    return PolicyEngine.open(engine, "")


def seen(policy: PolicyEngine, who: Principal) -> set[str]:
    return {uid for uid in (STUDY, OTHER) if policy.decide(who, uid).allowed}


def test_care_relationship_opens_the_patients_studies(engine: Engine, policy: PolicyEngine) -> None:
    records = PolicyRecords(engine, policy)
    assert seen(policy, DOCTOR) == set()
    rid = records.care.add(NORTH_ADMIN, doctor="doc-1", patient_id="P1", institution="North",
                           department="Cardio").id or 0
    assert seen(policy, DOCTOR) == {STUDY}
    with pytest.raises(RecordError) as caught:
        records.care.add(NORTH_ADMIN, doctor="doc-1", patient_id="P2", institution="South")
    assert caught.value.status == 403
    records.care.end(NORTH_ADMIN, rid)
    assert seen(policy, DOCTOR) == set()


def test_patient_grant_and_legal_request(engine: Engine, policy: PolicyEngine) -> None:
    records = PolicyRecords(engine, policy)
    gid = records.grants.create(PATIENT, "patient", STUDY, grantee="doc-1").id or 0
    assert seen(policy, DOCTOR) == {STUDY}
    records.grants.revoke(PATIENT, gid, "enough")
    assert seen(policy, DOCTOR) == set()
    legal = records.grants.create(LAWYER, "legal", STUDY, reason="case", expires_at=utcnow() + timedelta(days=5))
    assert seen(policy, LAWYER) == set()
    records.grants.approve(PATIENT, legal.id or 0, "patient")
    assert seen(policy, LAWYER) == set()
    records.grants.approve(NORTH_ADMIN, legal.id or 0, "institution")
    assert seen(policy, LAWYER) == {STUDY}
    assert policy.decide(LAWYER, STUDY).anonymized is False


def test_research_share_opens_anonymized(engine: Engine, policy: PolicyEngine) -> None:
    records = PolicyRecords(engine, policy)
    assert seen(policy, RESEARCHER) == set()
    share = records.shares.share(NORTH_ADMIN, STUDY)
    decision = policy.decide(RESEARCHER, STUDY)
    assert (decision.allowed, decision.anonymized) == (True, True)
    assert seen(policy, RESEARCHER) == {STUDY}
    with pytest.raises(RecordError) as caught:
        records.shares.share(NORTH_ADMIN, OTHER)
    assert caught.value.status == 403
    records.shares.revoke(NORTH_ADMIN, share.id or 0)
    assert seen(policy, RESEARCHER) == set()
