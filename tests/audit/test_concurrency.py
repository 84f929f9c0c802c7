"""Several writers at once (processes with their own AuditLog, the CLI's write_now) keep one linear chain."""

from __future__ import annotations

import multiprocessing
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dicomweb.audit.chain import verify
from dicomweb.audit.log import AuditLog, write_now
from dicomweb.index import db

from .conftest import sample

PER_PROCESS = 400


def _writer(url: str, tag: str, start: multiprocessing.synchronize.Event) -> None:
    engine = db.make_engine(url)
    log = AuditLog.open(engine, None)
    start.wait(30)
    for i in range(PER_PROCESS):
        log.record(sample(i, subject=tag))
        if i % 50 == 0:
            write_now(engine, sample(i, subject=f"{tag}-cli"))
    log.close()
    engine.dispose()


def test_two_processes_keep_one_valid_chain(engine: Engine, database_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_writer, args=(database_url, tag, start)) for tag in ("a", "b")]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    report = verify(engine)
    per_process = PER_PROCESS + PER_PROCESS // 50
    assert (report.ok, report.checked) == (True, 2 * per_process)
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text(  # type: ignore[arg-type]
            "SELECT subject, count(*) FROM audit_event GROUP BY subject")).all())
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM audit_event ORDER BY id"))]
    assert counts == {"a": PER_PROCESS, "b": PER_PROCESS, "a-cli": 8, "b-cli": 8}
    assert ids == list(range(1, 2 * per_process + 1))


def test_threads_of_one_process_share_a_log(engine: Engine) -> None:
    log = AuditLog.open(engine, None)

    def produce(tag: str) -> None:
        for i in range(200):
            log.record(sample(i, subject=tag))

    threads = [threading.Thread(target=produce, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert log.flush(30)
    assert (verify(engine).ok, verify(engine).checked) == (True, 800)
    log.close()
