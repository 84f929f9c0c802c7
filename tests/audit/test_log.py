"""AuditLog: record returns at once, flush makes everything recorded durable, a full queue waits, never drops."""

from __future__ import annotations

import logging
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dicomweb.audit.chain import verify
from dicomweb.audit.log import AuditLog, write_now

from .conftest import sample


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one())


def test_flush_makes_recorded_events_durable(engine: Engine) -> None:
    log = AuditLog.open(engine, None)
    for i in range(1200):  # more than two batches
        log.record(sample(i))
    assert log.flush(30) is True
    assert _count(engine) == 1200
    log.record(sample(1200))
    log.close()
    assert (verify(engine).ok, _count(engine)) == (True, 1201)
    with pytest.raises(RuntimeError, match="closed"):
        log.record(sample(0))


def test_a_full_queue_waits_instead_of_dropping(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    log = AuditLog(engine, None, queue_size=3, batch_size=2)
    for i in range(3):
        log.record(sample(i))
    # The writer is not started yet: the fourth record must wait until it drains the queue.
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="dicomweb.audit.log"):
        threading.Timer(0.3, log._thread.start).start()
        log.record(sample(3))
    assert time.monotonic() - started >= 0.25
    assert "audit queue was full" in caplog.text
    log.close()
    assert _count(engine) == 4


def test_a_failing_database_is_retried_until_written(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    from dicomweb.audit import log as log_module

    real, failures = log_module.append, [0]

    def flaky(engine: Engine, events: list) -> list[int]:  # type: ignore[type-arg]
        if failures[0] < 2:
            failures[0] += 1
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is down"))
        return real(engine, events)

    monkeypatch.setattr(log_module, "append", flaky)
    log = AuditLog.open(engine, None)
    log.record(sample(0))
    assert log.flush(10) is True
    log.close()
    assert (failures[0], _count(engine)) == (2, 1)


def test_write_now_returns_the_id(engine: Engine) -> None:
    assert [write_now(engine, sample(i)) for i in range(3)] == [1, 2, 3]
