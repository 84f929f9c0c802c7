"""The inbox a C-STORE is acknowledged from: received bytes written once, exactly, and durable before the
answer; what was never acknowledged is never ingested."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from dicomweb.services import inbox as inbox_module
from dicomweb.services.inbox import Inbox
from dicomweb.services.ingest import StoreResult
from dicomweb.services.staging import SPOOL_SUFFIX, StagedBlob

from .conftest import FILES, Gateway, data_file
from .test_receive_path import store_one


class Recording:
    """An ingest that keeps the bytes it was handed."""

    def __init__(self) -> None:
        self.stored: list[bytes] = []
        self.done = threading.Event()

    def store(self, blob: StagedBlob, expected_study: str | None = None,
              institutions: frozenset[str] | None = None) -> StoreResult:
        with blob.open() as fp:
            data = fp.read()
        assert hashlib.sha256(data).hexdigest() == blob.sha256 and len(data) == blob.size
        self.stored.append(data)
        blob.discard()
        self.done.set()
        return StoreResult("stored")


def _inbox(tmp_path: Path, ingest: Recording) -> Inbox:
    staging = tmp_path / "staging"
    staging.mkdir()
    return Inbox(staging / "inbox", ingest, staging, workers=1, fsync=True)


def test_arrived_parts_are_the_file_byte_for_byte_and_only_accepted_ones_are_ingested(tmp_path: Path) -> None:
    ingest = Recording()
    inbox = _inbox(tmp_path, ingest)
    parts = [b"\0" * 128 + b"DICM", os.urandom(300_000), memoryview(os.urandom(1000))]
    expected = b"".join(bytes(p) for p in parts)
    blob = inbox.arrive(parts)
    assert blob.path is not None and blob.path.suffix == SPOOL_SUFFIX and blob.path.parent == inbox.directory
    assert blob.path.read_bytes() == expected
    assert (blob.sha256, blob.size) == (hashlib.sha256(expected).hexdigest(), len(expected))
    assert inbox.recover() == 0  # not acknowledged yet: nothing for a recovery to ingest
    inbox.accept(blob)
    assert ingest.done.wait(10) and inbox.settle(10)
    assert ingest.stored == [expected]
    assert list(inbox.directory.iterdir()) == []  # indexed: the inbox entry is gone

    refused = inbox.arrive([b"x" * 10])  # a check refused it: the handler discards the blob
    refused.discard()
    assert list(inbox.directory.iterdir()) == []
    inbox.close()


def test_short_writes_are_continued_where_they_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = _inbox(tmp_path, Recording())
    real = os.writev

    def at_most_777(fd: int, buffers: list[memoryview]) -> int:
        budget, taken = 777, []
        for buffer in buffers:
            taken.append(buffer[:budget])
            budget -= len(taken[-1])
            if budget == 0:
                break
        return real(fd, taken)

    monkeypatch.setattr(inbox_module.os, "writev", at_most_777)
    parts = [os.urandom(5000), b"", os.urandom(3)]
    blob = inbox.arrive(parts)
    assert blob.path is not None and blob.path.read_bytes() == b"".join(parts)
    blob.discard()
    inbox.close()


def test_a_restart_drops_unacknowledged_files_and_ingests_acknowledged_ones(tmp_path: Path) -> None:
    ingest = Recording()
    inbox = _inbox(tmp_path, ingest)
    (inbox.directory / f"half-written{SPOOL_SUFFIX}").write_bytes(b"never acknowledged")
    (inbox.directory / "acknowledged.dcm").write_bytes(b"acknowledged before the crash")  # an older name
    whole = b"named, synced, acknowledged"
    (inbox.directory / f"{'a' * 32}-{hashlib.sha256(whole).hexdigest()}.dcm").write_bytes(whole)
    # Named, then the crash came before its bytes were all on disk: never acknowledged.
    (inbox.directory / f"{'b' * 32}-{hashlib.sha256(whole).hexdigest()}.dcm").write_bytes(whole[:5])
    inbox.start(retry_seconds=3600)
    assert ingest.done.wait(10) and inbox.settle(10)
    assert sorted(ingest.stored) == [b"acknowledged before the crash", whole]
    assert list(inbox.directory.iterdir()) == []
    inbox.close()


def test_an_inbox_that_cannot_be_written_answers_out_of_resources_and_stores_nothing(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = gateway.dimse.inbox
    assert inbox is not None

    def full(parts: object) -> StagedBlob:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(inbox, "arrive", full)
    response = store_one(gateway, "STORESCP", data_file(FILES[0]))
    assert response.Status == 0xA700
    gateway.settle()
    found = gateway.http.get("/dicom-web/studies")
    assert found.status_code == 204, found.text  # no study: QIDO's empty answer
    assert [p for p in inbox.directory.iterdir() if p.is_file()] == []
