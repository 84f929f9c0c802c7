"""Finished metadata answers kept in memory, keyed by a validator of what they were built from.

A series' metadata is the join of its instances' stored JSON texts; viewers ask for it again and again. The
key holds the validator token (``lookup.metadata_validator``), so a stored, replaced or deleted instance
changes the key and a stale answer is never served; old entries age out by least recent use within a byte
budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable


class MetadataCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, value: bytes) -> None:
        if len(value) > self.max_bytes // 4:  # one huge answer must not flush everything else
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._entries[key] = value
            self._size += len(value)
            while self._size > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)
