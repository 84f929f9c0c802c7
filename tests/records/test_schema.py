"""Migration ``policy_records``: the tables the models and the policy engine's SQL expect, on both databases."""

from __future__ import annotations

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
        for clause in (tables.CARE, tables.GRANT, tables.SHARE):
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
    assert indexes["research_share"] == {"ix_research_share_study_instance_uid": ["study_instance_uid"],
                                         "ix_research_share_institution": ["institution"],
                                         "ux_research_share_active": ["study_instance_uid", "institution"]}


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
    assert "policy_records" in heads
