"""The hash chain: 1,000 records verify; any edit, deletion or reordering breaks it exactly where it happened."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dicomweb.audit.chain import append, verify
from dicomweb.audit.event import AuditEvent, record_hash
from dicomweb.audit.tables import GENESIS

from .conftest import fill, sample

# A changed value for every column of a record (id is covered by the reordering test).
EDITS: dict[str, Any] = {
    "occurred_at": "2024-05-01 08:08:21.123457", "subject": "mallory", "roles": "admin",
    "institution_of_principal": "Elsewhere", "action": "delete", "outcome": "denied", "status": 404,
    "method": "POST", "path": "/x", "query": "", "study_uid": "9.9", "series_uid": "9.9.1", "instance_uid": "9.9.1.1",
    "patient_id": "P99", "institution": "Nowhere", "client_ip": "10.9.9.9", "user_agent": "curl", "detail": "",
    "count": 7, "bytes_sent": 0, "prev_hash": "f" * 64, "hash": "e" * 64,
}


def _one(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.begin() as conn:
        result = conn.execute(sa.text(sql), params)
        return result.scalar() if result.returns_rows else None


def test_empty_chain_verifies(engine: Engine) -> None:
    report = verify(engine)
    assert (report.ok, report.checked, report.first_broken_id) == (True, 0, None)


def test_thousand_records_verify_and_link(engine: Engine) -> None:
    fill(engine, 1000)
    report = verify(engine, batch=128)  # several pages
    assert (report.ok, report.checked, report.first_broken_id, report.reason) == (True, 1000, None, "")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT id, prev_hash, hash FROM audit_event ORDER BY id")).all()
        head = conn.execute(sa.text("SELECT last_id, last_hash FROM audit_head")).one()
    assert [r[0] for r in rows] == list(range(1, 1001))
    assert rows[0][1] == GENESIS
    assert all(rows[i][1] == rows[i - 1][2] for i in range(1, 1000))
    assert tuple(head) == (1000, rows[-1][2])


def test_hash_is_over_the_canonical_record(engine: Engine) -> None:
    [first] = append(engine, [sample(0)])
    with engine.connect() as conn:
        row = dict(conn.execute(sa.text("SELECT * FROM audit_event WHERE id = :id"), {"id": first}).one()._mapping)
    assert first == 1
    assert record_hash({**row, "occurred_at": sample(0).occurred_at}) == row["hash"]


def test_editing_any_column_breaks_the_chain_at_that_row(engine: Engine) -> None:
    fill(engine, 1000)
    for column, value in EDITS.items():
        original = _one(engine, f"SELECT {column} FROM audit_event WHERE id = 500")
        _one(engine, f"UPDATE audit_event SET {column} = :v WHERE id = 500", v=value)
        report = verify(engine)
        assert (report.ok, report.first_broken_id, report.checked) == (False, 500, 499), column
        expected = "prev_hash" if column == "prev_hash" else "its contents do not match its hash"
        assert expected in report.reason, (column, report.reason)
        _one(engine, f"UPDATE audit_event SET {column} = :v WHERE id = 500", v=original)
        assert verify(engine).ok, column


def test_deleting_a_row_breaks_the_chain_at_the_next(engine: Engine) -> None:
    fill(engine, 1000)
    _one(engine, "DELETE FROM audit_event WHERE id = 500")
    report = verify(engine)
    assert (report.ok, report.first_broken_id, report.checked) == (False, 501, 499)
    assert report.reason.startswith("record 500 missing")


def test_deleting_the_first_and_the_last_rows(engine: Engine) -> None:
    fill(engine, 10)
    _one(engine, "DELETE FROM audit_event WHERE id = 10")
    report = verify(engine)
    assert (report.ok, report.first_broken_id, report.checked) == (False, 10, 9)
    assert "the last records were deleted" in report.reason
    _one(engine, "DELETE FROM audit_event WHERE id = 1")
    assert (verify(engine).ok, verify(engine).first_broken_id) == (False, 2)


def test_reordering_breaks_the_chain_at_the_first_moved_row(engine: Engine) -> None:
    fill(engine, 100)
    _one(engine, "UPDATE audit_event SET id = -1 WHERE id = 50")
    _one(engine, "UPDATE audit_event SET id = 50 WHERE id = 51")
    _one(engine, "UPDATE audit_event SET id = 51 WHERE id = -1")
    report = verify(engine)
    assert (report.ok, report.first_broken_id) == (False, 50)


def test_appending_after_a_verify_continues_the_chain(engine: Engine) -> None:
    fill(engine, 5)
    assert append(engine, [AuditEvent(action="login", outcome="login-failure", status=401)]) == [6]
    assert verify(engine).checked == 6


@pytest.mark.parametrize("text", ["a\x00b", "é" * 3000])
def test_values_are_normalized_before_hashing(engine: Engine, text: str) -> None:
    append(engine, [AuditEvent(action="query", detail=text, user_agent=text, study_uid=text)])
    assert verify(engine).ok
    with engine.connect() as conn:
        detail, agent, study = conn.execute(sa.text("SELECT detail, user_agent, study_uid FROM audit_event")).one()
    clean = text.replace("\x00", "")
    assert (detail, agent, study) == (clean[:2000], clean[:512], clean[:64])
