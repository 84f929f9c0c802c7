"""Answer on durable receipt, index right after: the inbox journal of received instances.

A DIMSE peer sends its next instance only after the C-STORE response, so a gateway that answers after the
whole ingest (DICOM JSON, tier, index) stores one instance at a time at the speed of one ingest. With the
inbox the gateway answers once the instance is checked (parsed, authorized, not a conflicting duplicate:
:meth:`IngestService.check`) and durable on disk: fsynced, renamed into the inbox folder, folder fsynced.
Publishing into the tier and indexing follow in background threads (on the ingest worker processes), while
the peer already sends the next instance.

An inbox file is removed only once the index holds its instance, so a crash at any point loses nothing that
was acknowledged: :meth:`Inbox.recover` (at start, then periodically) ingests whatever is left; an instance
ingested twice is an identical duplicate, which is a success. A file the index still refuses (a series
already stored in another study, say) moves to ``failed/`` with its reason beside it and an error in the
log; one that failed for want of resources (the index or the tier unavailable) stays for the next pass.
Storage commitment waits (:meth:`Inbox.settle`) until what was received is indexed before it verifies.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from ..dicom.part10 import OUT_OF_RESOURCES, PROCESSING_FAILURE
from .ingest import StoreResult
from .staging import SPOOL_SUFFIX, StagedBlob

log = logging.getLogger(__name__)
SUFFIX = ".dcm"
RETRY_SECONDS = 60.0


class Ingest(Protocol):
    def store(
        self, blob: StagedBlob, expected_study: str | None = None, institutions: frozenset[str] | None = None
    ) -> StoreResult: ...


def _writeback_starter() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


_SYNC_FILE_RANGE = _writeback_starter()
_SYNC_FILE_RANGE_WRITE = 2  # start writing the dirty pages out; do not wait


def _start_writeback(fd: int) -> None:
    """Have the kernel start writing the file's pages now, so the fsync that makes it durable (after the
    checks) mostly finds them written: the disk works while the CPU checks. No effect where unsupported."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)


def _named_digest(path: Path) -> str | None:
    """The sha256 an entry's name carries (``<uuid>-<sha256>.dcm``); None for names without one."""
    _, _, digest = path.stem.rpartition("-")
    return digest if len(digest) == 64 else None


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Inbox:
    def __init__(self, directory: Path, ingest: Ingest, staging_dir: Path, workers: int, fsync: bool = True) -> None:
        """``directory`` must be on the staging folder's filesystem (entries are renamed and linked across)."""
        self.directory = directory
        self.failed_dir = directory / "failed"
        self._ingest = ingest
        self._staging = staging_dir
        self._fsync = fsync
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="inbox")
        self._changed = threading.Condition()
        self._in_flight: set[str] = set()
        self._stopped = threading.Event()
        self._retry: threading.Thread | None = None
        directory.mkdir(parents=True, exist_ok=True)

    # -- receiving ---------------------------------------------------------------------------------------
    def arrive(self, parts: Sequence[bytes | memoryview]) -> StagedBlob:
        """Write a received instance (``parts`` in order) into the inbox under a temporary name, hashing it,
        and start its writeback; the blob to check, then to :meth:`accept` or discard.

        One copy of the bytes (into the page cache, by ``writev``), none through a spool buffer. A temporary
        name is never recovered after a crash: until :meth:`accept`, the instance is not received."""
        digest = hashlib.sha256()
        size = 0
        for part in parts:
            digest.update(part)
            size += len(part)
        temp = self.directory / f"{uuid.uuid4().hex}{SPOOL_SUFFIX}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            pending = [memoryview(part) for part in parts]
            while pending:
                written = os.writev(fd, pending)
                while pending and written >= len(pending[0]):
                    written -= len(pending[0])
                    pending.pop(0)
                if pending:
                    pending[0] = pending[0][written:]
            if self._fsync:
                _start_writeback(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        return StagedBlob(sha256=digest.hexdigest(), size=size, path=temp)

    def accept(self, blob: StagedBlob, institutions: frozenset[str] | None = None) -> None:
        """Make the received instance durable in the inbox (consuming ``blob``), then ingest it in the background.

        Returns once the bytes would survive a crash: the caller may acknowledge the instance.
        """
        path = self.directory / f"{uuid.uuid4().hex}-{blob.sha256}{SUFFIX}"
        if blob.path is not None and blob.path.parent == self.directory:
            temp = blob.path  # from arrive(): already here, its writeback under way
            blob.path = None
        elif blob.path is not None:
            temp = path.with_suffix(SPOOL_SUFFIX)
            os.replace(blob.path, temp)
            blob.path = None
        else:
            assert blob.data is not None
            temp = path.with_suffix(SPOOL_SUFFIX)
            temp.write_bytes(blob.data)
        # Named first, synced after: one fsync then makes the bytes and the name durable in one journal
        # commit (ext4, XFS), and the folder's fsync that POSIX asks for finds nothing left to do. A crash in
        # between may leave a name whose bytes are not all there: the hash in the name tells (recover()).
        os.replace(temp, path)
        if self._fsync:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            _sync_dir(self.directory)
        self._submit(path, blob.sha256, blob.size, institutions)
        blob.discard()

    def _submit(self, path: Path, sha256: str, size: int, institutions: frozenset[str] | None) -> None:
        with self._changed:
            if path.name in self._in_flight:
                return
            self._in_flight.add(path.name)
        self._executor.submit(self._ingest_one, path, sha256, size, institutions)

    def _ingest_one(self, path: Path, sha256: str, size: int, institutions: frozenset[str] | None) -> None:
        try:
            # A link in the staging folder is what the ingest consumes (renames into the tier); the inbox
            # entry itself stays until the index holds the instance.
            link = self._staging / f"{uuid.uuid4().hex}{SPOOL_SUFFIX}"
            try:
                os.link(path, link)
            except FileNotFoundError:
                return  # a concurrent pass already finished it
            blob = StagedBlob(sha256=sha256, size=size, path=link, durable=self._fsync)  # fsynced on receipt
            result = self._ingest.store(blob, None, institutions)
            if result.ok:
                path.unlink(missing_ok=True)
            elif result.failure_reason in (OUT_OF_RESOURCES, PROCESSING_FAILURE):
                log.warning("inbox %s: %s; kept for another try", path.name, result.message)
            else:
                self._quarantine(path, result)
        except Exception:
            log.exception("inbox %s: ingest failed; kept for another try", path.name)
        finally:
            with self._changed:
                self._in_flight.discard(path.name)
                self._changed.notify_all()

    def _quarantine(self, path: Path, result: StoreResult) -> None:
        log.error("inbox %s: acknowledged instance %s could not be indexed: %s; moved to %s",
                  path.name, result.sop_instance_uid, result.message, self.failed_dir)
        self.failed_dir.mkdir(exist_ok=True)
        (self.failed_dir / f"{path.stem}.txt").write_text(
            f"{result.sop_instance_uid}\nfailure reason 0x{result.failure_reason or 0:04X}\n{result.message}\n")
        os.replace(path, self.failed_dir / path.name)

    # -- recovery ----------------------------------------------------------------------------------------
    def recover(self) -> int:
        """Ingest every inbox entry not already in progress (left by a crash, or a failed try); how many."""
        queued = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            with self._changed:
                if path.name in self._in_flight:
                    continue
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as fp:
                    while chunk := fp.read(1 << 20):
                        digest.update(chunk)
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            named = _named_digest(path)
            if named is not None and named != digest.hexdigest():
                # Named, then a crash before its fsync ended: never acknowledged, and not whole.
                log.warning("inbox %s: its bytes do not match the hash in its name; dropped", path.name)
                path.unlink(missing_ok=True)
                continue
            # The caller's store rights were checked before the instance was acknowledged.
            self._submit(path, digest.hexdigest(), size, None)
            queued += 1
        if queued:
            log.info("inbox: %d received instance(s) queued for indexing", queued)
        return queued

    def start(self, retry_seconds: float = RETRY_SECONDS) -> None:
        """Recover now, and again every ``retry_seconds`` for entries whose ingest failed for want of resources.

        Files under a temporary name, left by a crash before they were acknowledged, go first."""
        for debris in self.directory.glob(f"*{SPOOL_SUFFIX}"):
            debris.unlink(missing_ok=True)
        self.recover()

        def again() -> None:
            while not self._stopped.wait(retry_seconds):
                self.recover()

        self._retry = threading.Thread(target=again, name="inbox-retry", daemon=True)
        self._retry.start()

    def settle(self, timeout: float = 60.0) -> bool:
        """Wait until nothing received is still being ingested; False when ``timeout`` passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._in_flight, timeout)

    @property
    def pending(self) -> int:
        with self._changed:
            return len(self._in_flight)

    def close(self) -> None:
        self._stopped.set()
        self._executor.shutdown(wait=True)
