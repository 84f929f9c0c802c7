"""Background jobs (tier migration now; packing, forwarding and pre-rendering later).

``Jobs`` is what the server, the CLI and the admin API use: it records a job in the index and hands its id
to the engine, the in-process one by default or Dramatiq when ``jobs_broker_url`` is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .store import JobStore, JobView

if TYPE_CHECKING:
    from ..archive import Archive
    from .runner import JobContext


class Engine(Protocol):
    name: str

    def start(self) -> None: ...

    def submit(self, job_id: int, delay: float = 0.0) -> None: ...

    def close(self) -> None: ...


class Jobs:
    def __init__(self, archive: Archive, *, threads: int = 1) -> None:
        from .runner import JobContext

        settings = archive.settings
        self.store = JobStore(archive.engine, settings.jobs_max_attempts)
        self.context: JobContext = JobContext(archive, self._submit_from_handler)
        self.engine: Engine
        if settings.jobs_broker_url:
            from .dramatiq_engine import DramatiqEngine

            self.engine = DramatiqEngine(settings.jobs_broker_url, settings.jobs_namespace)
        else:
            from .inprocess import InProcessEngine

            self.engine = InProcessEngine(self.context, self.store, threads)

    def start(self) -> None:
        self.engine.start()

    def submit(self, kind: str, payload: dict[str, Any], dedup_key: str | None = None) -> tuple[int, bool]:
        """Record the job and offer it to the engine; an active duplicate is returned instead."""
        job_id, created = self.store.enqueue(kind, payload, dedup_key)
        if created:
            self.engine.submit(job_id)
        return job_id, created

    def _submit_from_handler(self, kind: str, payload: dict[str, Any], dedup_key: str | None) -> int:
        return self.submit(kind, payload, dedup_key)[0]

    def retry(self, job_id: int) -> bool:
        if self.store.retry(job_id):
            self.engine.submit(job_id)
            return True
        return False

    def close(self) -> None:
        self.engine.close()


__all__ = ["Engine", "JobStore", "JobView", "Jobs"]
