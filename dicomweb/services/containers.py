"""Reading instances out of stored series containers: opened once, shared by all requests, checked always.

A container is opened from its tier (two range reads) and kept in a small LRU; each has its own lock
because a container's reader keeps decode state (an interslice chain cache) that threads must not share
mid-decode. Damage found by the container's checksums becomes :class:`InstanceIntegrityError`, naming
the instance, so nothing decodes silently to wrong bytes.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from ..backends.container import ContainerCorruptError, ContainerError, InstanceNotFoundError, SeriesContainer
from ..backends.tiers import StorageError, TierSet

T = TypeVar("T")
_OPEN_CONTAINERS = 16
_CACHED_INSTANCES = 4
_MAX_CACHED_INSTANCE = 64 << 20


class InstanceIntegrityError(StorageError):
    """The archive holds the instance, but its stored bytes failed a checksum: a server-side fault."""

    def __init__(self, sop_instance_uid: str, detail: str) -> None:
        super().__init__(f"instance {sop_instance_uid} failed its integrity check in the archive: {detail}")
        self.sop_instance_uid = sop_instance_uid


class FrameNotFound(LookupError):
    """The instance has no such frame (numbers are 1-based)."""


class _Opened:
    def __init__(self, container: SeriesContainer) -> None:
        self.container = container
        self.lock = threading.Lock()


class ContainerReader:
    """Opened containers by (tier, key), and the last few whole instances assembled from them."""

    def __init__(self, tiers: TierSet) -> None:
        self.tiers = tiers
        self._lock = threading.Lock()
        self._open: OrderedDict[tuple[str, str], _Opened] = OrderedDict()
        self._instances: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()

    def _get(self, tier: str, key: str) -> _Opened:
        with self._lock:
            found = self._open.get((tier, key))
            if found is not None:
                self._open.move_to_end((tier, key))
                return found
        fp = self.tiers[tier].open(key)
        try:
            opened = _Opened(SeriesContainer.open(fp))
        except BaseException:
            fp.close()
            raise
        with self._lock:
            self._open[(tier, key)] = opened
            while len(self._open) > _OPEN_CONTAINERS:
                self._open.popitem(last=False)  # its file closes when the reader is collected
        return opened

    def _call(self, tier: str, key: str, uid: str, action: Callable[[SeriesContainer], T]) -> T:
        try:
            opened = self._get(tier, key)
            with opened.lock:
                return action(opened.container)
        except ContainerCorruptError as exc:
            self.forget(tier, key)
            raise InstanceIntegrityError(uid, str(exc)) from exc
        except InstanceNotFoundError:
            raise
        except ContainerError as exc:
            raise InstanceIntegrityError(uid, str(exc)) from exc

    def holds(self, tier: str, key: str, uid: str, sha256: str) -> bool:
        """Whether the container holds exactly this version of the instance (not one replaced since)."""
        def check(c: SeriesContainer) -> bool:
            try:
                return bool(c._get(uid).meta["sha256"] == sha256)
            except InstanceNotFoundError:
                return False

        return self._call(tier, key, uid, check)

    def read_instance(self, tier: str, key: str, uid: str) -> bytes:
        """The original Part 10 bytes (SHA-256 checked by the container)."""
        cache_key = (tier, key, uid)
        with self._lock:
            data = self._instances.get(cache_key)
            if data is not None:
                self._instances.move_to_end(cache_key)
                return data
        data = self._call(tier, key, uid, lambda c: c.read_instance(uid))
        if len(data) <= _MAX_CACHED_INSTANCE:
            with self._lock:
                self._instances[cache_key] = data
                while len(self._instances) > _CACHED_INSTANCES:
                    self._instances.popitem(last=False)
        return data

    def read_frame(self, tier: str, key: str, uid: str, number: int) -> bytes:
        try:
            return self._call(tier, key, uid, lambda c: c.read_frame(uid, number))
        except InstanceNotFoundError as exc:
            raise FrameNotFound(str(exc)) from None

    def forget(self, tier: str, key: str) -> None:
        with self._lock:
            self._open.pop((tier, key), None)
            for cached in [k for k in self._instances if k[:2] == (tier, key)]:
                del self._instances[cached]


def frame_from_part10(data: bytes, number: int, uid: str) -> bytes:
    """A frame of an instance whose frame positions are not indexed (e.g. deflated): parse the file."""
    import pydicom
    from pydicom.encaps import get_frame

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    if "PixelData" not in ds:
        raise FrameNotFound(f"instance {uid} has no pixel data")
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if not 1 <= number <= count:
        raise FrameNotFound(f"instance {uid} has no frame {number} (it has {count})")
    value = bytes(ds.PixelData)
    if ds["PixelData"].is_undefined_length:
        return bytes(get_frame(value, number - 1, number_of_frames=count))
    size = len(value) // count
    return value[(number - 1) * size : number * size]
