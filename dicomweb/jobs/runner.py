"""Running one job by id, the same way in every engine: claim, run its handler, record the outcome.

Retries are ours, not the engine's: a failed attempt is recorded with its error and the job is offered
again after an exponential backoff, until ``max_attempts``; so job state reads the same whichever runs it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..backends import lifecycle
from ..backends.tiers import StorageError
from ..services.migration import MigrationError, MigrationService
from .store import JobStore

if TYPE_CHECKING:
    from ..archive import Archive

log = logging.getLogger(__name__)
Handler = Callable[["JobContext", dict[str, Any]], dict[str, Any]]
Submit = Callable[[str, dict[str, Any], str | None], int]


class JobContext:
    """What a handler may use: the archive, a mover, and a way to queue follow-up jobs."""

    def __init__(self, archive: Archive, submit: Submit) -> None:
        self.archive = archive
        self.submit = submit
        self.migration = MigrationService(archive.engine, archive.tiers,
                                          drain_seconds=archive.settings.migration_drain_seconds)


def migrate_study(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    report = ctx.migration.move_study(str(payload["study"]), str(payload["target"]))
    return {"study": report.study_instance_uid, "target": report.target, "instances": report.instances,
            "bytes": report.bytes, "skipped": report.skipped}


def apply_lifecycle(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Plan now and queue one migrate_study job per study (so several workers share the moves)."""
    ctx.migration.recover()
    moves = lifecycle.plan(ctx.archive.engine, ctx.archive.tiers, ctx.archive.settings)
    for move in moves:
        ctx.submit("migrate_study", {"study": move.study_instance_uid, "target": move.target},
                   f"study:{move.study_instance_uid}")
    return {"planned": len(moves), "bytes": sum(m.bytes for m in moves)}


HANDLERS: dict[str, Handler] = {"migrate_study": migrate_study, "apply_lifecycle": apply_lifecycle}
# Errors worth another attempt; anything else (a bug, bad payload) fails at once.
RETRYABLE = (MigrationError, StorageError, OSError)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"


def backoff(attempt: int, base: float, cap: float) -> float:
    return float(min(cap, base * (2 ** max(0, attempt - 1))))


def execute(ctx: JobContext, store: JobStore, job_id: int) -> float | None:
    """Run one attempt of ``job_id``; returns seconds until it should be offered again, or None."""
    job = store.claim(job_id, worker_name())
    if job is None:
        return None
    handler = HANDLERS.get(job.kind)
    if handler is None:
        store.fail(job_id, f"no handler for job kind {job.kind!r}", None)
        return None
    try:
        result = handler(ctx, job.payload)
    except Exception as exc:
        retryable = isinstance(exc, RETRYABLE)
        settings = ctx.archive.settings
        delay = backoff(job.attempts, settings.jobs_backoff_seconds, settings.jobs_max_backoff_seconds)
        again = retryable and job.attempts < job.max_attempts
        log.warning("job %s (%s) attempt %s failed: %s", job_id, job.kind, job.attempts, exc,
                    exc_info=not retryable)
        store.fail(job_id, f"{type(exc).__name__}: {exc}", delay if again else None)
        return delay if again else None
    store.succeed(job_id, result)
    return None
