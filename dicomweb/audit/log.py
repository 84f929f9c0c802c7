"""The audit log a process writes through: ``record`` queues, a background thread chains and inserts batches.

An audit record is never dropped: a full queue makes ``record`` wait (and says so in the log), and a batch
the database refuses is retried until it is written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy.engine import Engine

from .chain import append
from .event import AuditEvent

log = logging.getLogger(__name__)

BATCH_SIZE = 500
BATCH_SECONDS = 0.05
QUEUE_SIZE = 10_000
FULL_LOG_SECONDS = 5.0
_STOP = object()


class AuditLog:
    def __init__(self, engine: Engine, settings: Any = None, *, queue_size: int = QUEUE_SIZE,
                 batch_size: int = BATCH_SIZE, batch_seconds: float = BATCH_SECONDS) -> None:
        self.engine = engine
        self.settings = settings
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._done = threading.Condition()
        self._recorded = 0  # events handed to record(), under _done
        self._written = 0  # events committed, under _done
        self._hurry = threading.Event()  # a flush is waiting: write what is queued without the batch delay
        self._closed = False
        self._last_full_log = -FULL_LOG_SECONDS
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)

    @classmethod
    def open(cls, engine: Engine, settings: Any = None) -> AuditLog:
        audit = cls(engine, settings)
        audit._thread.start()
        return audit

    # -- producers -------------------------------------------------------------------------------------------
    def record(self, event: AuditEvent) -> None:
        """Queue ``event``; returns at once unless the queue is full (then waits for the writer)."""
        if self._closed:
            raise RuntimeError("the audit log is closed")
        with self._done:
            self._recorded += 1
        try:
            self._queue.put_nowait(event)
            return
        except queue.Full:
            pass
        started = time.monotonic()
        while True:
            try:
                self._queue.put(event, timeout=5)
                break
            except queue.Full:
                log.error("audit queue full for %.0f s: the database is not keeping up; requests wait",
                          time.monotonic() - started)
        now = time.monotonic()
        if now - self._last_full_log >= FULL_LOG_SECONDS:  # once in a while, not once per request
            self._last_full_log = now
            log.error("audit queue was full: a request waited %.3f s to record its audit event", now - started)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event recorded before this call is committed; False when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            target = self._recorded
            while self._written < target:
                self._hurry.set()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._done.wait(0.1 if remaining is None else min(remaining, 0.1))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._closed:
            return
        if not self.flush(timeout):
            with self._done:
                lost = self._recorded - self._written
            log.error("audit log closed with %d events not written: the database did not accept them", lost)
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=5)
        except queue.Full:
            log.error("audit writer is stuck; it stops with the process")
            return
        self._thread.join(timeout=5)

    # -- the writer ------------------------------------------------------------------------------------------
    def _next_batch(self) -> tuple[list[AuditEvent], bool]:
        """The first event, then whatever else arrives within ``batch_seconds`` (up to ``batch_size``).

        The writer sleeps through the batch window instead of waking for every event: a wake-up per request
        is a thread switch per request, and the event loop then waits for the GIL to come back. A flush cuts
        the window short."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        assert isinstance(first, AuditEvent)
        batch = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._hurry.is_set():
                    break
                self._hurry.wait(min(remaining, self.batch_seconds))
                continue
            if item is _STOP:
                return batch, True
            assert isinstance(item, AuditEvent)
            batch.append(item)
        return batch, False

    def _write(self, batch: list[AuditEvent]) -> None:
        delay = 0.1
        while True:
            try:
                append(self.engine, batch)
                return
            except Exception:
                log.exception("audit: writing %d events failed; retrying in %.1f s", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            with self._done:
                self._written += len(batch)
                if self._written >= self._recorded:
                    self._hurry.clear()
                self._done.notify_all()


def write_now(engine: Engine, event: AuditEvent) -> int:
    """Chain and commit one event at once (the CLI); returns its id."""
    return append(engine, [event])[0]
