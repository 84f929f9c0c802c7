"""Acknowledging a C-STORE on durable receipt: check, make durable in the inbox, index in the background.

A peer sends its next instance only after the response, so everything here is on its critical path (a
helper thread writing the spool file to disk while the check runs was tried: the thread hand-offs cost more
than the overlap saved, on two busy cores). An instance whose SOP Instance UID was acknowledged but is not
yet indexed waits for the inbox to settle before its check, which would otherwise not see the first one: a
conflicting second version must be refused (or replace it) exactly as when the first one is indexed.
"""

from __future__ import annotations

import threading

from ...services.inbox import Inbox
from ...services.ingest import IngestService, StoreResult
from ...services.staging import StagedBlob

REMEMBERED = 20_000  # UIDs kept while the inbox never empties (a few MB)


class Receipt:
    def __init__(self, inbox: Inbox, checker: IngestService, settle_timeout: float) -> None:
        self.inbox = inbox
        self._checker = checker
        self._settle_timeout = settle_timeout
        self._lock = threading.Lock()
        self._acknowledged: set[str] = set()  # SOP Instance UIDs acknowledged, perhaps not yet indexed

    def receive(self, blob: StagedBlob, institutions: frozenset[str] | None) -> StoreResult:
        """What the C-STORE answers; once ok, the instance is durable in the inbox. Consumes ``blob``."""
        try:
            result = self._checker.check(blob, None, institutions)
            if result.ok and self._pending(result.sop_instance_uid):
                self.inbox.settle(self._settle_timeout)
                result = self._checker.check(blob, None, institutions)  # now against the indexed first one
            if result.ok:
                self.inbox.accept(blob, institutions)
                self._note(result.sop_instance_uid)
            return result
        finally:
            blob.discard()

    def _pending(self, sop_instance_uid: str) -> bool:
        with self._lock:
            return sop_instance_uid in self._acknowledged

    def _note(self, sop_instance_uid: str) -> None:
        if len(self._acknowledged) >= REMEMBERED:  # a backlog that never empties: let it, once, to forget
            self.inbox.settle(self._settle_timeout)
        with self._lock:
            if self.inbox.pending == 0:
                self._acknowledged.clear()  # all acknowledged so far is indexed: forget it
            self._acknowledged.add(sop_instance_uid)
