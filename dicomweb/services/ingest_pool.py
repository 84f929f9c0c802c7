"""Ingest in worker processes, several instances at once in each.

Parsing a header and writing its DICOM JSON is Python CPU work that threads cannot spread over cores
(the GIL). Each worker process opens its own archive (engine, tiers) on the same settings and runs the
very same :class:`IngestService`; the web process only reads request bodies and spools parts. A part
travels as its spool file's path (the worker renames it into the tier); a small in-memory one as bytes.

Much of one instance's time is waiting, not computing: for the disk to make its blob durable (fsync),
for the index. So each worker runs several stores at once: while one waits, another parses, and the
instances that finish together share index commits (see :class:`IngestService`).

Calls are multiplexed over pipes: a request carries an id, its answer comes back with it. Each worker has
two pipes. On one, answers for blocking callers (:meth:`ProcessIngest.store`: the importer, the DIMSE
gateway's threads) are read by a thread of ours. On the other, answers for :meth:`ProcessIngest.store_async`
(STOW-RS) are read by the event loop itself when the pipe becomes readable: no thread of ours wakes, takes
the GIL from the loop and wakes the loop again per instance (which cost the web process more than parsing
the multipart body).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from ..dicom.part10 import PROCESSING_FAILURE
from ..settings import Settings
from .ingest import StoreResult
from .staging import StagedBlob

if TYPE_CHECKING:
    from ..archive import Archive

log = logging.getLogger(__name__)
_READY = "ready"
# Stores one worker process runs at once, per pipe. Four keep a core busy while the others wait for fsync
# and the index (on the synthetic CT two or eight per worker did no better).
THREADS_PER_WORKER = 4


def _exit_with_parent(parent: int) -> None:
    # A SIGKILLed server cannot stop its workers; they must not outlive it as orphans.
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _worker_main(pipes: list[Connection], settings: Settings, threads: int) -> None:
    from ..archive import Archive

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    archive: Archive = Archive.open(settings, migrate=False, ingest_processes=0)

    def serve(conn: Connection, receive_lock: threading.Lock, send_lock: threading.Lock,
              stopping: threading.Event) -> None:
        # Each thread takes its next request off the pipe itself: no hand-over to another thread per call.
        while True:
            with receive_lock:
                if stopping.is_set():
                    return
                try:
                    request = conn.recv()
                except (EOFError, OSError):
                    request = None
                if request is None:
                    stopping.set()
                    return
            request_id, blob, expected_study, institutions = request
            result = archive.ingest.store(blob, expected_study, institutions)
            with send_lock:
                try:
                    conn.send((request_id, result))
                except (OSError, ValueError):
                    os._exit(0)  # the server is gone

    servers = []
    for conn in pipes:
        conn.send(_READY)
        locks = (threading.Lock(), threading.Lock(), threading.Event())
        servers += [threading.Thread(target=serve, args=(conn, *locks), daemon=True) for _ in range(threads)]
    for thread in servers:
        thread.start()
    for thread in servers:
        thread.join()


def _died(message: str) -> StoreResult:
    return StoreResult("failed", failure_reason=PROCESSING_FAILURE, message=f"processing failure: {message}")


class _Worker:
    """This process's end of one worker: its pipes, the calls in flight on each."""

    def __init__(self, settings: Settings, threads: int, on_exit: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()  # blocking callers; answers read by a thread
        self.async_conn, async_child = context.Pipe()  # event loop callers; answers read by the loop
        self.process: BaseProcess = context.Process(
            target=_worker_main, args=([child, async_child], settings, threads), name="dicomweb-ingest",
            daemon=True,
        )
        self.process.start()
        child.close()
        async_child.close()
        self.waiting: dict[int, Future[StoreResult]] = {}  # blocking callers' calls in flight
        self.awaiting: dict[int, tuple[asyncio.Future[StoreResult], StagedBlob]] = {}  # the loop's
        self.lock = threading.Lock()  # guards both, and alive
        self.send_lock = threading.Lock()
        self.async_send_lock = threading.Lock()
        self.ready = threading.Event()
        self.started = False  # whether it ever said it was ready
        self.alive = True
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop reading async_conn
        self._on_exit = on_exit
        self._reader = threading.Thread(target=self._read, name="ingest-answers", daemon=True)
        self._reader.start()

    @property
    def load(self) -> int:
        return len(self.waiting) + len(self.awaiting) if self.alive else 1 << 30

    # -- blocking callers ------------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            if self.conn.recv() != _READY or self.async_conn.recv() != _READY:
                raise EOFError("unexpected first message")
            self.started = True
            self.ready.set()
            while True:
                request_id, result = self.conn.recv()
                with self.lock:
                    future = self.waiting.pop(request_id, None)
                if future is not None:
                    future.set_result(result)
        except Exception as exc:  # EOF, a broken pipe, garbage: the worker is gone for this process
            self._fail_all(exc)

    def submit(self, request_id: int, request: tuple[Any, ...]) -> Future[StoreResult]:
        future: Future[StoreResult] = Future()
        with self.lock:
            if not self.alive:
                future.set_result(_died("the ingest worker stopped"))
                return future
            self.waiting[request_id] = future
        try:
            with self.send_lock:
                self.conn.send((request_id, *request))
        except (OSError, ValueError) as exc:
            with self.lock:
                self.waiting.pop(request_id, None)
            future.set_result(_died(f"the ingest worker cannot be reached ({exc.__class__.__name__})"))
        return future

    # -- the event loop ----------------------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Have ``loop`` (the running one) read this worker's async answers from now on."""
        if self.loop is loop:
            return
        loop.add_reader(self.async_conn.fileno(), self._on_async_answer)  # NotImplementedError: not this loop
        previous, self.loop = self.loop, loop
        if previous is not None and not previous.is_closed():
            if previous.is_running():
                previous.call_soon_threadsafe(previous.remove_reader, self.async_conn.fileno())
            else:
                previous.remove_reader(self.async_conn.fileno())

    def _on_async_answer(self) -> None:
        try:
            request_id, result = self.async_conn.recv()  # readable: a whole answer is there (one write)
        except Exception as exc:  # EOF or garbage: the worker is gone
            self.detach()
            self._fail_all(exc)
            return
        with self.lock:
            call = self.awaiting.pop(request_id, None)
        if call is None:
            return
        future = call[0]
        if future.get_loop() is self.loop:
            _settle(future, result)
        elif not future.get_loop().is_closed():  # asked on a loop that has since handed the reading on
            future.get_loop().call_soon_threadsafe(_settle, future, result)

    def detach(self) -> None:
        loop, self.loop = self.loop, None
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self.async_conn.fileno())
            except (OSError, ValueError, RuntimeError):
                pass

    def submit_async(self, request_id: int, request: tuple[Any, ...], blob: StagedBlob,
                     loop: asyncio.AbstractEventLoop) -> asyncio.Future[StoreResult]:
        future: asyncio.Future[StoreResult] = loop.create_future()
        with self.lock:
            if not self.alive:
                future.set_result(_died("the ingest worker stopped"))
                return future
            self.awaiting[request_id] = (future, blob)
        try:
            with self.async_send_lock:
                self.async_conn.send((request_id, *request))
        except (OSError, ValueError) as exc:
            with self.lock:
                self.awaiting.pop(request_id, None)
            blob.discard()
            future.set_result(_died(f"the ingest worker cannot be reached ({exc.__class__.__name__})"))
        return future

    # -- the end -------------------------------------------------------------------------------------------
    def _fail_all(self, exc: BaseException) -> None:
        with self.lock:
            was_alive, self.alive = self.alive, False
            waiting, self.waiting = self.waiting, {}
            awaiting, self.awaiting = self.awaiting, {}
        self.ready.set()  # nobody waits for a start that will not come
        # The worker died mid-store (killed, out of memory): these parts fail alone.
        for future in waiting.values():
            future.set_result(_died("the ingest worker stopped"))
        for awaited, blob in awaiting.values():
            blob.discard()
            if not awaited.get_loop().is_closed():
                awaited.get_loop().call_soon_threadsafe(_settle, awaited, _died("the ingest worker stopped"))
        if was_alive:
            self._on_exit(self, exc)

    def stop(self) -> None:
        with self.lock:
            self.alive = False
        for lock, conn in ((self.send_lock, self.conn), (self.async_send_lock, self.async_conn)):
            try:
                with lock:
                    conn.send(None)
            except (OSError, ValueError):
                pass
        self.reap()

    def reap(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.conn.close()
        if self.loop is None:  # an event loop may still watch it otherwise: closing is then left to the GC
            self.async_conn.close()


def _settle(future: asyncio.Future[StoreResult], result: StoreResult) -> None:
    if not future.done():
        future.set_result(result)


class ProcessIngest:
    """The ``IngestService.store`` interface, run in a set of worker processes."""

    def __init__(self, settings: Settings, processes: int, threads: int = THREADS_PER_WORKER) -> None:
        self.processes = processes
        self.threads = max(1, threads)
        self._settings = settings
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop reading async answers
        self._workers = [self._start() for _ in range(processes)]

    @property
    def parallelism(self) -> int:
        """How many stores may usefully be in flight at once."""
        return self.processes * self.threads

    def _start(self) -> _Worker:
        return _Worker(self._settings, self.threads, self._replace)

    def _replace(self, worker: _Worker, exc: BaseException) -> None:
        """A worker stopped: start another in its place (not for one that never started: it would again)."""
        with self._lock:
            if self._closed or worker not in self._workers:
                return
            if not worker.started:
                log.error("an ingest worker could not start (%s)", exc.__class__.__name__)
                return
            log.error("an ingest worker stopped (%s); starting a new one", exc.__class__.__name__)
            self._workers[self._workers.index(worker)] = self._start()
        if worker.loop is not None and not worker.loop.is_closed():
            worker.loop.call_soon_threadsafe(worker.detach)
        threading.Thread(target=worker.reap, daemon=True).start()

    def warm_up(self) -> None:
        """Wait until every worker has opened its archive, rather than on the first request."""
        for worker in list(self._workers):
            worker.ready.wait()
            if not worker.started:
                raise RuntimeError("an ingest worker did not start")

    def _least_busy(self, started: bool = False) -> _Worker:
        with self._lock:
            workers = [w for w in self._workers if w.started] if started else []
            return min(workers or self._workers, key=lambda w: w.load)

    def store(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        worker = self._least_busy()
        try:
            return worker.submit(next(self._ids), (blob, expected_study, institutions)).result()
        finally:
            blob.discard()  # consumed by the worker as a rule; not when it died on the way

    async def store_async(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        """:meth:`store` for the event loop: the loop itself reads the answer."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop  # tests run several loops, one after another: the latest reads from now on
        worker = self._least_busy(started=True)
        if not worker.started:  # none is (all were just replaced): wait for one, off the loop
            await asyncio.to_thread(worker.ready.wait)
            if not worker.started:
                return _died("the ingest worker did not start")
        try:
            worker.attach(loop)  # a no-op but the first time, or for a worker started since
        except NotImplementedError:  # a loop that cannot watch a pipe: a thread of ours reads the answer
            return await asyncio.wrap_future(worker.submit(next(self._ids), (blob, expected_study, institutions)))
        try:
            return await worker.submit_async(next(self._ids), (blob, expected_study, institutions), blob, loop)
        except BaseException:
            blob.discard()  # cancelled: the worker may still take it, or find it gone (it then fails alone)
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for worker in workers:
            loop = worker.loop
            if loop is not None and (loop is current or not loop.is_running()):
                worker.detach()  # on the loop itself (the server's shutdown), or a loop that has stopped
            worker.stop()
