"""The embedded engine: jobs run in a few threads of the server itself (no broker to install).

Jobs left unfinished by a previous run (the state is in the index) are offered again at start.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from datetime import UTC, datetime

from .runner import JobContext, execute
from .store import JobStore

log = logging.getLogger(__name__)


class InProcessEngine:
    name = "in-process"

    def __init__(self, ctx: JobContext, store: JobStore, threads: int = 1) -> None:
        self.ctx = ctx
        self.store = store
        self._due: list[tuple[float, int]] = []  # (monotonic time, job id), a heap
        self._cond = threading.Condition()
        self._stopping = False
        self._threads = [threading.Thread(target=self._run, name=f"dicomweb-job-{i}", daemon=True)
                         for i in range(max(1, threads))]
        self._busy = 0

    def start(self) -> None:
        now = datetime.now(UTC)
        for job_id, next_at in self.store.unfinished():
            self.submit(job_id, max(0.0, (next_at - now).total_seconds()) if next_at else 0.0)
        for thread in self._threads:
            thread.start()

    def submit(self, job_id: int, delay: float = 0.0) -> None:
        with self._cond:
            heapq.heappush(self._due, (time.monotonic() + delay, job_id))
            self._cond.notify()

    def _next(self) -> int | None:
        with self._cond:
            while not self._stopping:
                if self._due and self._due[0][0] <= time.monotonic():
                    self._busy += 1
                    return heapq.heappop(self._due)[1]
                timeout = self._due[0][0] - time.monotonic() if self._due else None
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while (job_id := self._next()) is not None:
            try:
                delay = execute(self.ctx, self.store, job_id)
                if delay is not None:
                    self.submit(job_id, delay)
            except Exception:
                log.exception("job %s could not be run", job_id)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is due now or running (tests and the CLI use it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._busy or (self._due and self._due[0][0] <= time.monotonic()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=30)
