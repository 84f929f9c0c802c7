"""Remembering pseudonyms and resolving them back, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, inspect, select
from sqlalchemy.engine import Engine

from dicomweb.index.db import make_engine, upgrade
from dicomweb.policies.deid import Deidentifier
from dicomweb.policies.deid.store import TABLE, PseudonymStore

UIDS = ["1.2.3.4.1", "1.2.3.4.2", "1.2.3.4.3"]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


def _inserts(engine: Engine) -> list[str]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    return seen


def test_migration_creates_the_table(engine: Engine) -> None:
    columns = {c["name"]: c for c in inspect(engine).get_columns("uid_pseudonym")}
    assert set(columns) == {"pseudonym", "original", "created_at"}
    assert inspect(engine).get_pk_constraint("uid_pseudonym")["constrained_columns"] == ["pseudonym"]
    assert columns["original"]["nullable"] is False


def test_remember_then_resolve(engine: Engine) -> None:
    deid = Deidentifier(b"store", engine)
    inserts = _inserts(engine)
    deid.remember(UIDS)
    assert len(inserts) == 1  # one batch
    deid.remember(UIDS)
    assert len(inserts) == 1  # already remembered: no write
    assert deid.resolve(deid.pseudonym(UIDS[0])) == UIDS[0]
    assert deid.resolve("2.25.1") is None
    wanted = [deid.pseudonym(u) for u in UIDS] + ["2.25.2"]
    assert deid.resolve_many(wanted) == {deid.pseudonym(u): u for u in UIDS}
    # A restart (a fresh instance, empty cache) writing the same pairs again is ignored, not an error.
    again = Deidentifier(b"store", engine)
    again.remember([*UIDS, "1.2.3.4.4"])
    with engine.connect() as conn:
        assert len(conn.execute(select(TABLE)).all()) == 4
    assert again.resolve(again.pseudonym("1.2.3.4.4")) == "1.2.3.4.4"


def test_answers_are_remembered(engine: Engine) -> None:
    deid = Deidentifier(b"store", engine)
    out = deid.json_dataset({
        "0020000D": {"vr": "UI", "Value": ["1.2.3.9"]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "/dicom-web/studies/1.2.3.9/series/1.2.3.10/instances/1.2.3.11"},
    }, "P1")
    assert deid.resolve(out["0020000D"]["Value"][0]) == "1.2.3.9"
    assert deid.resolve_many(deid.pseudonym(u) for u in ("1.2.3.10", "1.2.3.11")) == {
        deid.pseudonym("1.2.3.10"): "1.2.3.10", deid.pseudonym("1.2.3.11"): "1.2.3.11"}


def test_large_batches(engine: Engine) -> None:
    deid = Deidentifier(b"store", engine)
    many = [f"1.2.3.5.{i}" for i in range(1200)]
    deid.remember(many)
    assert deid.resolve_many(deid.pseudonym(u) for u in many) == {deid.pseudonym(u): u for u in many}


def test_cache_is_bounded(engine: Engine) -> None:
    store = PseudonymStore(engine, cache_size=2)
    store.add({"2.25.1": "1.1", "2.25.2": "1.2", "2.25.3": "1.3"})
    assert len(store._known) == 2
