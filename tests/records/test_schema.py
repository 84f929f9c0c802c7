"""Migration ``policy_records``: the tables the models and the policy engine's SQL expect, on both databases."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dicomweb.index import db
from dicomweb.policies import tables
from dicomweb.policies.records.models import AccessGrant, CareRelationship, ResearchShare


@pytest.mark.parametrize("model", [CareRelationship, AccessGrant, ResearchShare])
def test_migrated_columns_match_the_models(engine: Engine, model: type) -> None:
    table = model.__table__  # type: ignore[attr-defined]
    found = {c["name"]: c for c in sa.inspect(engine).get_columns(table.name)}
    assert set(found) == {c.name for c in table.columns}
    assert {name for name, c in found.items() if c["nullable"]} == {c.name for c in table.columns if c.nullable}


def test_the_engine_sql_finds_its_columns(engine: Engine) -> None:
    with engine.connect() as conn:
        for clause in (tables.CARE, tables.CARE_PATIENT, tables.GRANT, tables.SHARE):
            assert conn.execute(sa.select(clause)).all() == []


def test_indexes(engine: Engine) -> None:
    inspector = sa.inspect(engine)
    indexes = {t: {i["name"]: i["column_names"] for i in inspector.get_indexes(t)}
               for t in ("care_relationship", "access_grant", "research_share")}
    assert indexes["care_relationship"] == {"ix_care_relationship_doctor": ["doctor"],
                                            "ix_care_relationship_patient_id": ["patient_id"],
                                            "ix_care_relationship_institution": ["institution", "department"]}
    assert indexes["access_grant"] == {"ix_access_grant_study_instance_uid": ["study_instance_uid"],
                                       "ix_access_grant_grantee": ["grantee"],
                                       "ix_access_grant_institution": ["institution"]}
    # PostgreSQL also reads an institution's active shares from an index alone (migration policy_perf).
    open_shares = {"ix_research_share_open": ["institution"]} if engine.dialect.name == "postgresql" else {}
    assert indexes["research_share"] == {"ix_research_share_study_instance_uid": ["study_instance_uid"],
                                         "ix_research_share_institution": ["institution"],
                                         "ux_research_share_active": ["study_instance_uid", "institution"],
                                         **open_shares}


def test_one_active_share_per_study_and_institution(engine: Engine) -> None:
    insert = sa.text("INSERT INTO research_share (study_instance_uid, institution, shared_by, reason, created_at, "
                     "revoked_at) VALUES ('1.2.3', 'North', 's', '', CURRENT_TIMESTAMP, :revoked)")
    with engine.begin() as conn:
        conn.execute(insert, {"revoked": None})
        conn.execute(sa.text("UPDATE research_share SET revoked_at = CURRENT_TIMESTAMP"))
        conn.execute(insert, {"revoked": None})  # a revoked share does not count
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert, {"revoked": None})


def test_upgrade_again_changes_nothing(engine: Engine) -> None:
    db.upgrade(engine)
    with engine.connect() as conn:
        heads = {row[0] for row in conn.execute(sa.text("SELECT version_num FROM alembic_version"))}
    assert "policy_perf" in heads  # the care_patient revision, after policy_records


COPIED = "doctor, institution, department, valid_from, valid_until, ended_at"


def _pairs(engine: Engine) -> set[tuple[object, ...]]:
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text(f"SELECT care_fk, patient_fk, {COPIED} FROM care_patient"))}


def _pairs_by_definition(engine: Engine) -> set[tuple[object, ...]]:
    """What a care relationship names, resolved afresh: PatientID with its issuer ('' matches any), Other IDs;
    with the relationship's keys and times."""
    with engine.connect() as conn:
        cares = conn.execute(sa.text(f"SELECT id, patient_id, issuer_of_patient_id, {COPIED} "
                                     "FROM care_relationship")).all()
        patients = conn.execute(sa.text("SELECT id, patient_id, issuer_of_patient_id FROM patient")).all()
        others = conn.execute(sa.text("SELECT patient_fk, value, issuer FROM patient_identifier")).all()
    names = [(p.id, p.patient_id, p.issuer_of_patient_id) for p in patients] + [tuple(o) for o in others]
    return {(c[0], fk, *c[3:]) for c in cares for fk, value, issuer in names
            if value == c.patient_id and c.issuer_of_patient_id in ("", issuer)}


def test_care_patient_follows_every_write(engine: Engine) -> None:
    def run(sql: str, **params: object) -> None:
        with engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def care(patient_id: str, issuer: str = "", doctor: str = "d1") -> None:
        run("INSERT INTO care_relationship (doctor, patient_id, issuer_of_patient_id, institution, department, "
            "valid_from, created_by, created_at) VALUES (:d, :p, :i, 'North', 'Cardio', CURRENT_TIMESTAMP, 't', "
            "CURRENT_TIMESTAMP)", d=doctor, p=patient_id, i=issuer)

    def patient(patient_id: str, issuer: str = "") -> None:
        run("INSERT INTO patient (patient_key, patient_id, issuer_of_patient_id, patient_name, patient_birth_date, "
            "patient_sex, created_at, patient_name_alphabetic, patient_name_ideographic, patient_name_phonetic) "
            "VALUES (:k, :p, :i, '', '', '', CURRENT_TIMESTAMP, '', '', '')", k=f"{issuer}|{patient_id}",
            p=patient_id, i=issuer)

    def patient_fk(patient_id: str, issuer: str = "") -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT id FROM patient WHERE patient_key = :k"),
                                    {"k": f"{issuer}|{patient_id}"}).scalar_one())

    def patient_with_other_id() -> None:
        patient("Q9")
        run("INSERT INTO patient_identifier (patient_fk, value, issuer) VALUES (:f, 'P2', 'NAT')", f=patient_fk("Q9"))

    steps: list[tuple[str, Callable[[], None]]] = [
        ("a relationship before its patient exists", lambda: care("P1")),
        ("the patient's first instance", lambda: patient("P1")),
        ("a patient with the same ID from another issuer (an empty issuer matches any)",
         lambda: patient("P1", "OTHER")),
        ("a relationship that names the issuer", lambda: care("P1", "OTHER", "d2")),
        ("a patient known by an Other Patient ID", patient_with_other_id),
        ("a relationship by that other ID", lambda: care("P2", "NAT", "d3")),
        ("a relationship by it with another issuer: none", lambda: care("P2", "ELSE", "d4")),
        ("the relationship changed to another patient",
         lambda: run("UPDATE care_relationship SET patient_id = 'Q9' WHERE doctor = 'd4'")),
        ("a relationship ended", lambda: run("UPDATE care_relationship SET ended_at = CURRENT_TIMESTAMP "
                                             "WHERE doctor = 'd3'")),
        ("the other ID removed", lambda: run("DELETE FROM patient_identifier WHERE value = 'P2'")),
        ("a relationship removed", lambda: run("DELETE FROM care_relationship WHERE doctor = 'd2'")),
        ("a patient removed", lambda: run("DELETE FROM patient WHERE patient_key = '|P1'")),
    ]
    for what, step in steps:
        step()
        assert _pairs(engine) == _pairs_by_definition(engine), what
    assert len(_pairs(engine)) == 1  # d1 with the OTHER issuer's P1 (d4 names Q9 of issuer ELSE: none)


def test_a_relationship_and_its_patients_first_instance_written_together(engine: Engine) -> None:
    """Neither transaction sees the other's row uncommitted; the lock makes the relationship wait and then see
    the patient (without it, both would miss each other and the pair would never exist)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writing transaction at a time")
    patient_sql = sa.text(
        "INSERT INTO patient (patient_key, patient_id, issuer_of_patient_id, patient_name, patient_birth_date, "
        "patient_sex, created_at, patient_name_alphabetic, patient_name_ideographic, patient_name_phonetic) "
        "VALUES ('|R1', 'R1', '', '', '', '', CURRENT_TIMESTAMP, '', '', '')")
    care_sql = sa.text(
        "INSERT INTO care_relationship (doctor, patient_id, issuer_of_patient_id, institution, department, "
        "valid_from, created_by, created_at) VALUES ('d1', 'R1', '', 'North', 'Cardio', CURRENT_TIMESTAMP, 't', "
        "CURRENT_TIMESTAMP)")

    def add_care() -> None:
        with engine.begin() as conn:
            conn.execute(care_sql)

    with engine.connect() as ingest:
        ingest.execute(patient_sql)  # the patient's first instance, not committed yet
        writer = threading.Thread(target=add_care)
        writer.start()
        with engine.connect() as probe:  # until the relationship's insert waits on the lock (or has finished)
            waiting = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            while writer.is_alive() and not probe.execute(waiting).scalar():
                writer.join(0.01)
        ingest.commit()
    writer.join()
    assert len(_pairs(engine)) == 1
