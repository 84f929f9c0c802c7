"""QIDO study searches under the policy predicate, on SQLite and PostgreSQL (whose statement picks the page's
study ids first): each principal's answer is exactly its visible studies, newest first with ties by id,
limit/offset pages cover that list once, with and without other matching keys, and each study's decision
agrees."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dicomweb.policies.engine import PolicyEngine
from dicomweb.policies.principal import Principal
from dicomweb.policies.records import PolicyRecords
from dicomweb.services.query import Query, parse_key, search
from tests.records.conftest import CHIEF, DOCTOR, NORTH_ADMIN, RESEARCHER, add_study

RADIOLOGIST = Principal("rad-1", frozenset({"radiologist"}), institution="North")
STUDIES = [(f"1.2.826.0.2.{i}", f"P{i % 8}", "North" if i % 3 == 0 else "South", f"2020{1 + i % 4:02d}01")
           for i in range(24)]  # (uid, patient, institution, date): four dates, so the id breaks most ties
SHARED = {uid for uid, _, institution, _ in STUDIES[::2] if institution == "North"}


@pytest.fixture
def policy(engine: Engine) -> PolicyEngine:
    for uid, patient, institution, date in STUDIES:
        add_study(engine, uid, patient, institution)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE study SET study_date = :d WHERE study_instance_uid = :u"),
                         {"d": date, "u": uid})
    policy = PolicyEngine.open(engine, "")
    records = PolicyRecords(engine, policy)
    records.care.add(NORTH_ADMIN, doctor="doc-1", patient_id="P1", institution="North", department="Cardio")
    records.care.add(NORTH_ADMIN, doctor="doc-2", patient_id="P2", institution="North", department="Cardio")
    ended = records.care.add(NORTH_ADMIN, doctor="doc-2", patient_id="P3", institution="North", department="Cardio")
    records.care.end(NORTH_ADMIN, ended.id or 0)
    for uid in sorted(SHARED):
        records.shares.share(NORTH_ADMIN, uid)
    return policy


def expected(who: Principal, patient: str | None = None) -> list[str]:
    """The visible studies, newest first and, on the same date, the later stored first."""
    def visible(patient_id: str, institution: str, uid: str) -> bool:
        if who is DOCTOR:
            return patient_id == "P1"
        if who is CHIEF:
            return patient_id in ("P1", "P2")  # the department's relationships in force (P3's has ended)
        if who is RADIOLOGIST:
            return institution == "North"
        return uid in SHARED

    rows = [(date, i, uid) for i, (uid, patient_id, institution, date) in enumerate(STUDIES)
            if visible(patient_id, institution, uid) and patient in (None, patient_id)]
    return [uid for _, _, uid in sorted(rows, reverse=True)]


def found(engine: Engine, policy: PolicyEngine, who: Principal, query: Query) -> tuple[list[str], bool]:
    view = policy.search_view(who, query.keys)
    result = search(engine, query, view.visible, None, view.anonymized)
    if who is RESEARCHER:  # sees research shares only, each de-identified
        assert result.anonymized == [True] * len(result.datasets)
    return [d["0020000D"]["Value"][0] for d in result.datasets], result.more


@pytest.mark.parametrize("who", [DOCTOR, CHIEF, RADIOLOGIST, RESEARCHER], ids=lambda p: p.subject)
def test_answers_and_pages_are_exactly_the_visible_studies(engine: Engine, policy: PolicyEngine,
                                                           who: Principal) -> None:
    everything = expected(who)
    assert everything, "each principal sees some studies here"
    assert found(engine, policy, who, Query(level="study", limit=100)) == (everything, False)
    paged: list[str] = []
    for offset in range(0, len(everything) + 3, 3):
        page, more = found(engine, policy, who, Query(level="study", limit=3, offset=offset))
        assert more == (offset + 3 < len(everything))
        paged += page
    assert paged == everything
    # One study's decision (its predicates as probes on the row) agrees with the search.
    assert [uid for uid, _, _, _ in STUDIES if policy.decide(who, uid).allowed] == sorted(
        everything, key=lambda uid: int(uid.rsplit(".", 1)[1]))


@pytest.mark.parametrize("who", [CHIEF, RADIOLOGIST], ids=lambda p: p.subject)
def test_other_keys_narrow_within_the_visible_studies(engine: Engine, policy: PolicyEngine, who: Principal) -> None:
    by_patient = Query(level="study", keys=[parse_key(0x00100020, "P2")], limit=100)  # a key on the patient
    assert found(engine, policy, who, by_patient)[0] == expected(who, patient="P2")
    by_date = Query(level="study", keys=[parse_key(0x00080020, "20200201-20200301")], limit=2, offset=1)
    dated = [uid for uid in expected(who) if "20200201" <= STUDIES[int(uid.rsplit(".", 1)[1])][3] <= "20200301"]
    assert found(engine, policy, who, by_date) == (dated[1:3], len(dated) > 3)
