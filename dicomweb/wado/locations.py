"""Instances looked up lately, remembered for a moment: repeated frame requests skip the index lookup.

A viewer asks for the frames of one instance again and again (a cine loop, scrolling back and forth), and
the lookup (~0.05 ms of Python per request on SQLite, a round trip on PostgreSQL) is then most of the work
besides the read. What is remembered is safe to reuse because stored bytes never change under their key:
the storage key holds the checksum, a replacement is a new row with a new key, and the old blob is removed.
So a remembered location either still names the current bytes, or its blob is gone and the read says so.

- A read that finds the blob missing forgets the entry and asks the index again (deleted, replaced, or
  moved while this process was not looking: other processes store and delete too).
- A DELETE answered by this process forgets everything it remembers of that study at once.
- An entry is trusted for ``ttl`` seconds at most: that bounds how long an instance whose blob could not be
  removed (left for the sweeper) might still be served after a delete or a replacement elsewhere.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from .lookup import ImageInstance

Key = tuple[str, str, str]  # study, series, SOP instance UID


class InstanceLocations:
    def __init__(self, capacity: int = 4096, ttl: float = 2.0) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self._entries: OrderedDict[Key, tuple[float, ImageInstance]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> ImageInstance | None:
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if now - found[0] > self.ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[1]

    def put(self, key: Key, image: ImageInstance) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), image)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def forget(self, key: Key) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def forget_study(self, study: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == study]:
                del self._entries[key]
