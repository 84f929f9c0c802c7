"""Ingest in worker processes, so parsing and encoding of many parts use every core.

Parsing a header and writing its DICOM JSON is Python CPU work that threads cannot spread over cores
(the GIL). Each worker process opens its own archive (engine, tiers) on the same settings and runs the
very same :class:`IngestService`; the web process only reads request bodies and spools parts. A spooled
part travels as its file path (the worker renames it into the tier), a small one as its bytes.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

from ..settings import Settings
from .ingest import StoreResult
from .staging import StagedBlob

if TYPE_CHECKING:
    from ..archive import Archive

_archive: Archive | None = None


def _exit_with_parent(parent: int) -> None:
    # A SIGKILLed server cannot stop its pool; workers must not outlive it as orphans.
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _open_worker_archive(settings: Settings) -> None:
    global _archive
    from ..archive import Archive

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()

    _archive = Archive.open(settings, migrate=False, ingest_processes=0)


def _store_in_worker(
    blob: StagedBlob, expected_study: str | None, institutions: frozenset[str] | None
) -> StoreResult:
    assert _archive is not None, "worker not initialised"
    return _archive.ingest.store(blob, expected_study, institutions)


def _ready() -> bool:
    return _archive is not None


class ProcessIngest:
    """The ``IngestService.store`` interface, run in a pool of worker processes."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.processes = processes
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_open_worker_archive,
            initargs=(settings,),
        )

    def warm_up(self) -> None:
        """Start every worker now rather than on the first request."""
        for future in [self._pool.submit(_ready) for _ in range(self.processes)]:
            future.result()

    def store(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult:
        try:
            return self._pool.submit(_store_in_worker, blob, expected_study, institutions).result()
        finally:
            blob.discard()  # the worker consumed the spooled file; drop what is left here

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
