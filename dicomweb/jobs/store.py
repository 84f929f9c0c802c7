"""Job state in the index: what the admin API and ``dicomweb jobs`` show, whichever engine runs the jobs.

The engine only carries job ids; the row holds the state machine (queued -> running -> succeeded, or
-> retrying with a next attempt time, or -> failed once attempts are exhausted), attempts and last error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from ..index.models import Job

ACTIVE = ("queued", "running", "retrying")
STATES = (*ACTIVE, "succeeded", "failed")


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    payload: dict[str, Any]
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    result: dict[str, Any] | None
    worker: str
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    next_attempt_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return _utc(value).isoformat() if value is not None else None

        return {
            "id": self.id, "kind": self.kind, "payload": self.payload, "state": self.state,
            "attempts": self.attempts, "maxAttempts": self.max_attempts, "lastError": self.last_error,
            "result": self.result, "worker": self.worker, "createdAt": stamp(self.created_at),
            "updatedAt": stamp(self.updated_at), "startedAt": stamp(self.started_at),
            "finishedAt": stamp(self.finished_at), "nextAttemptAt": stamp(self.next_attempt_at),
        }


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _table() -> Any:
    return Job.__table__  # type: ignore[attr-defined]


def _view(row: Any) -> JobView:
    m = row._mapping
    return JobView(
        id=m["id"], kind=m["kind"], payload=json.loads(m["payload"]), state=m["state"], attempts=m["attempts"],
        max_attempts=m["max_attempts"], last_error=m["last_error"],
        result=json.loads(m["result"]) if m["result"] else None, worker=m["worker"], created_at=m["created_at"],
        updated_at=m["updated_at"], started_at=m["started_at"], finished_at=m["finished_at"],
        next_attempt_at=m["next_attempt_at"],
    )


class JobStore:
    def __init__(self, engine: Engine, max_attempts: int = 5) -> None:
        self.engine = engine
        self.max_attempts = max(1, max_attempts)

    def enqueue(self, kind: str, payload: dict[str, Any], dedup_key: str | None = None) -> tuple[int, bool]:
        """A new queued job, or the active one with the same ``dedup_key``; returns (id, created)."""
        job = _table()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            if dedup_key is not None:
                existing = conn.execute(select(job.c.id).where(
                    job.c.dedup_key == dedup_key, job.c.state.in_(ACTIVE)).limit(1)).scalar()
                if existing is not None:
                    return int(existing), False
            inserted = conn.execute(job.insert().values(
                kind=kind, payload=json.dumps(payload, sort_keys=True), state="queued", dedup_key=dedup_key,
                attempts=0, max_attempts=self.max_attempts, worker="", created_at=now, updated_at=now,
            )).inserted_primary_key
            assert inserted is not None
        return int(inserted[0]), True

    def claim(self, job_id: int, worker: str) -> JobView | None:
        """Mark the job running for ``worker`` (one more attempt); None when it is finished or unknown."""
        job = _table()
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            # "running" is claimable too: a message redelivered after its worker died resumes the job.
            changed = conn.execute(update(job).where(job.c.id == job_id, job.c.state.in_(ACTIVE)).values(
                state="running", attempts=job.c.attempts + 1, worker=worker, started_at=now, updated_at=now,
                next_attempt_at=None)).rowcount
            if not changed:
                return None
            return _view(conn.execute(select(job).where(job.c.id == job_id)).one())

    def succeed(self, job_id: int, result: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(update(_table()).where(_table().c.id == job_id).values(
                state="succeeded", result=json.dumps(result), last_error=None, updated_at=now, finished_at=now))

    def fail(self, job_id: int, error: str, retry_in: float | None) -> None:
        """Record a failed attempt: retrying after ``retry_in`` seconds, or failed for good when None."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {"last_error": error[:4000], "updated_at": now}
        if retry_in is None:
            values.update(state="failed", finished_at=now, next_attempt_at=None)
        else:
            values.update(state="retrying", next_attempt_at=now + timedelta(seconds=retry_in))
        with self.engine.begin() as conn:
            conn.execute(update(_table()).where(_table().c.id == job_id).values(**values))

    def retry(self, job_id: int) -> bool:
        """Queue a failed job again with fresh attempts (an operator's decision)."""
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            return bool(conn.execute(update(_table()).where(
                _table().c.id == job_id, _table().c.state == "failed").values(
                state="queued", attempts=0, updated_at=now, finished_at=None, next_attempt_at=None)).rowcount)

    def get(self, job_id: int) -> JobView | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_table()).where(_table().c.id == job_id)).first()
        return _view(row) if row is not None else None

    def recent(self, state: str | None = None, limit: int = 100, offset: int = 0) -> list[JobView]:
        job = _table()
        stmt = select(job).order_by(job.c.id.desc()).limit(limit).offset(offset)
        if state is not None:
            stmt = stmt.where(job.c.state == state)
        with self.engine.connect() as conn:
            return [_view(r) for r in conn.execute(stmt)]

    def unfinished(self) -> list[tuple[int, datetime | None]]:
        """Active jobs with their next attempt time (the embedded runner resumes them at start)."""
        job = _table()
        with self.engine.connect() as conn:
            rows = conn.execute(select(job.c.id, job.c.next_attempt_at).where(job.c.state.in_(ACTIVE))
                                .order_by(job.c.id)).all()
        return [(int(r.id), _utc(r.next_attempt_at) if r.next_attempt_at else None) for r in rows]

    def counts(self) -> dict[str, int]:
        job = _table()
        with self.engine.connect() as conn:
            found: dict[str, int] = dict(conn.execute(select(job.c.state, func.count()).group_by(job.c.state)).all())
        return {state: int(found.get(state, 0)) for state in STATES}
