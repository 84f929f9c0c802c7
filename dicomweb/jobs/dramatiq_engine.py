"""The worker engine: Dramatiq on Redis (or RabbitMQ), with ``dicomweb worker`` processes consuming.

Why Dramatiq: messages are acknowledged only after the job returns, and the Redis broker hands a dead
worker's unacknowledged messages to a live one (heartbeats), so a killed worker loses no job; delayed
messages give retries with backoff without a scheduler of our own; and it is small, with no result backend
to run. Messages carry only a job id; the job's state lives in the index (see ``store.py``).
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, ShutdownNotifications

from .runner import JobContext, execute
from .store import JobStore

log = logging.getLogger(__name__)
ACTOR = "dicomweb_job"
QUEUE = "dicomweb-jobs"
DAY_MS = 24 * 3600 * 1000

# Set in worker processes: what the actor runs jobs with.
_worker: tuple[JobContext, JobStore] | None = None


def make_broker(url: str, namespace: str) -> dramatiq.Broker:
    # No Retries/TimeLimit middleware: retries are recorded in the job table, and a migration of a large
    # study may rightly take longer than Dramatiq's default ten minutes.
    middleware = [AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines()]
    if url.startswith(("amqp://", "amqps://")):
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=url, middleware=middleware)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBroker(url=url, namespace=namespace, middleware=middleware, heartbeat_timeout=15000)
    raise ValueError(f"jobs_broker_url must be a redis:// or amqp:// URL, not {url!r}")


def _run_job(job_id: int) -> None:
    if _worker is None:
        raise RuntimeError("a dicomweb job reached a process that is not a dicomweb worker")
    ctx, store = _worker
    delay = execute(ctx, store, job_id)
    if delay is not None:
        _actor_of(ctx.archive.settings.jobs_broker_url).send_with_options(args=(job_id,), delay=int(delay * 1000))


_actors: dict[str, Any] = {}
_brokers: dict[str, dramatiq.Broker] = {}


def _actor_of(url: str) -> Any:
    return _actors[url]


def declare(url: str, namespace: str) -> Any:
    """The broker and actor for ``url`` (one per process)."""
    if url not in _actors:
        broker = make_broker(url, namespace)
        _brokers[url] = broker
        _actors[url] = dramatiq.actor(actor_name=ACTOR, queue_name=QUEUE, broker=broker,
                                      max_age=30 * DAY_MS)(_run_job)
    return _actors[url]


class DramatiqEngine:
    """The server's side: it only sends job ids; workers run them."""

    name = "dramatiq"

    def __init__(self, url: str, namespace: str) -> None:
        self.actor = declare(url, namespace)

    def start(self) -> None:
        pass

    def submit(self, job_id: int, delay: float = 0.0) -> None:
        self.actor.send_with_options(args=(job_id,), delay=int(delay * 1000) or None)

    def close(self) -> None:
        pass


def run_worker(ctx: JobContext, store: JobStore, threads: int = 1) -> None:
    """Consume jobs until SIGTERM or SIGINT (``dicomweb worker``)."""
    global _worker
    settings = ctx.archive.settings
    declare(settings.jobs_broker_url, settings.jobs_namespace)
    _worker = (ctx, store)
    worker = dramatiq.Worker(_brokers[settings.jobs_broker_url], queues={QUEUE}, worker_threads=max(1, threads))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    log.info("worker consuming %s on %s", QUEUE, settings.jobs_broker_url)
    try:
        stop.wait()
    finally:
        worker.stop(timeout=30000)
        _brokers[settings.jobs_broker_url].close()
