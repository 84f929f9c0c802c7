"""Rendered output by key: a bounded in-memory LRU, and a folder for thumbnails that outlives the process.

A key is the digest of what determines the bytes: the stored files' SHA-256, the frames, the media type and
the parameters. A replaced instance has a new digest, so stale entries are never served, only evicted.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path


def render_key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


class RenderCache:
    def __init__(self, max_bytes: int, folder: Path | None) -> None:
        self.max_bytes = max_bytes
        self.folder = folder
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / key[:2] / key

    def get(self, key: str, *, persistent: bool = False) -> bytes | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        path = self._path(key) if persistent else None
        if path is None:
            return None
        try:
            data = path.read_bytes()
        except OSError:
            return None
        self._remember(key, data)
        return data

    def put(self, key: str, data: bytes, *, persistent: bool = False) -> None:
        self._remember(key, data)
        path = self._path(key) if persistent else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            temp.write_bytes(data)
            os.replace(temp, path)  # readers see the whole file or none

    def _remember(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 8:  # one huge cine must not flush every thumbnail
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
