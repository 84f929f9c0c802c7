"""Appending to the hash chain under a lock every process shares, and proving the chain."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection, Engine

from .event import EVENT_FIELDS, AuditEvent, format_time, record_hash
from .tables import GENESIS, T_AUDIT, T_HEAD


def _lock_head(conn: Connection) -> tuple[int, str]:
    """Take the chain head for this transaction: other writers, in any process, wait until it commits."""
    if conn.dialect.name == "sqlite":
        # pysqlite opens transactions lazily and deferred; an immediate one takes the write lock first.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        row = conn.execute(select(T_HEAD.c.last_id, T_HEAD.c.last_hash).where(T_HEAD.c.id == 1)).first()
    else:
        row = conn.execute(
            select(T_HEAD.c.last_id, T_HEAD.c.last_hash).where(T_HEAD.c.id == 1).with_for_update()
        ).first()
    if row is None:
        raise RuntimeError("the audit chain head is missing: run the index migrations (dicomweb serve does)")
    return int(row[0]), str(row[1])


def append(engine: Engine, events: Sequence[AuditEvent]) -> list[int]:
    """Chain and insert ``events`` in one transaction; returns their ids."""
    if not events:
        return []
    with engine.connect() as conn, conn.begin():
        last_id, last_hash = _lock_head(conn)
        rows: list[dict[str, Any]] = []
        for event in events:
            row = event.row()
            last_id += 1
            row["id"] = last_id
            row["prev_hash"] = last_hash
            row["hash"] = last_hash = record_hash(row)
            rows.append(row)
        conn.execute(insert(T_AUDIT), rows)
        conn.execute(update(T_HEAD).where(T_HEAD.c.id == 1).values(last_id=last_id, last_hash=last_hash))
    return [row["id"] for row in rows]


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_broken_id: int | None = None
    broken_at: datetime | None = None  # occurred_at of the first broken record, when it exists
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "first_broken_id": self.first_broken_id,
                "broken_at": format_time(self.broken_at) if self.broken_at else None, "reason": self.reason}


def _rows(engine: Engine, up_to: int, batch: int) -> Iterator[dict[str, Any]]:
    """Records in id order, ``batch`` at a time (keyset paging: memory stays flat for any chain length)."""
    after = 0
    columns = [T_AUDIT.c[name] for name in ("id", "prev_hash", "hash", *EVENT_FIELDS)]
    while True:
        with engine.connect() as conn:
            page = [dict(r._mapping) for r in conn.execute(
                select(*columns).where(T_AUDIT.c.id > after, T_AUDIT.c.id <= up_to).order_by(T_AUDIT.c.id)
                .limit(batch))]
        if not page:
            return
        yield from page
        after = page[-1]["id"]


def verify(engine: Engine, batch: int = 2000) -> VerifyReport:
    """Recompute every link up to the head read at the start (records appended meanwhile wait for next time)."""
    with engine.connect() as conn:
        head = conn.execute(select(T_HEAD.c.last_id, T_HEAD.c.last_hash).where(T_HEAD.c.id == 1)).first()
    if head is None:
        return VerifyReport(False, 0, None, None, "the audit chain head is missing")
    head_id, head_hash = int(head[0]), str(head[1])
    expected_id, prev_hash, checked = 1, GENESIS, 0
    for row in _rows(engine, head_id, batch):
        rid, when = row["id"], row["occurred_at"]
        if rid != expected_id:
            missing = f"record {expected_id}" if rid == expected_id + 1 else f"records {expected_id} to {rid - 1}"
            return VerifyReport(False, checked, rid, when, f"{missing} missing: the ids jump from "
                                f"{expected_id - 1} to {rid} (deleted or renumbered)")
        if row["prev_hash"] != prev_hash:
            return VerifyReport(False, checked, rid, when, f"prev_hash {row['prev_hash']} does not match the hash "
                                f"{prev_hash} of the record before it (id {rid - 1})")
        computed = record_hash(row)
        if computed != row["hash"]:
            return VerifyReport(False, checked, rid, when, f"its contents do not match its hash: stored "
                                f"{row['hash']}, computed {computed} (a field was changed)")
        prev_hash, expected_id, checked = row["hash"], rid + 1, checked + 1
    if expected_id - 1 != head_id:
        return VerifyReport(False, checked, expected_id, None, f"the chain head names record {head_id}, but the "
                            f"records end at {expected_id - 1}: the last records were deleted")
    if prev_hash != head_hash:
        return VerifyReport(False, checked, head_id, None, f"record {head_id} has hash {prev_hash}, but the chain "
                            f"head holds {head_hash}")
    return VerifyReport(True, checked)
