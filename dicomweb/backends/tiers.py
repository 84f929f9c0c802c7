"""Storage tiers: a name plus an fsspec URL, found at run time like fsspec's own protocols.

A tier stores immutable blobs under keys derived from validated UIDs. Writes are atomic and durable
(temporary name, fsync, rename; an object store's PUT is atomic by itself) so the index may commit as soon
as ``store_*`` returns. Third parties add tiers through the ``dicomweb.tiers`` entry point group, keyed
by URL scheme; any other scheme fsspec knows is served by :class:`FsspecTier`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote, urlparse

import fsspec

from ..settings import TierSettings
from . import cached_read

_KEY = re.compile(r"^[0-9A-Za-z._-]+(/[0-9A-Za-z._-]+)*$")
TEMP_MARK = ".tmp-"


class StorageError(OSError):
    """A tier could not do what was asked (unreachable, full, missing object)."""


class ObjectMissing(StorageError):
    """The tier answered, and has no object under the key."""


class StorageUnavailable(StorageError):
    """The tier did not answer usefully (down, timing out, throttling): worth retrying later."""

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_key(key: str) -> str:
    """Refuse anything that could leave the tier's root (keys come from validated UIDs only)."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe storage key {key!r}")
    return key


COPY_CHUNK = 8 << 20


class Tier:
    """The interface every storage tier offers."""

    name: str
    url: str
    # Set by open_tier from the configuration (a plugin need not know about them).
    role: str = "local"
    capacity_bytes: int | None = None

    def store_file(self, source: Path, key: str) -> None:
        """Store the file at ``source`` under ``key``; the source may be consumed (moved)."""
        raise NotImplementedError

    def store_bytes(self, data: bytes, key: str) -> None:
        raise NotImplementedError

    def store_durable_file(self, source: Path, key: str) -> None:
        """:meth:`store_file` for a source whose bytes are already on stable storage (fsynced): a tier that
        can take the file over as it is need not make its bytes durable a second time."""
        self.store_file(source, key)

    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader."""
        raise NotImplementedError

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self.open(key) as fp:
            fp.seek(offset)
            return fp.read(length)

    def read_range_cached(self, key: str, offset: int, length: int) -> bytearray | None:
        """The range when it can be had without waiting on a disk or a network (``cached_read``), else None:
        safe to call on the event loop. Tiers that cannot tell always say None."""
        return None

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def exists(self, key: str) -> bool:
        raise NotImplementedError

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        """Every stored key with its modification time (seconds since the epoch)."""
        raise NotImplementedError

    def staging_dir(self) -> Path | None:
        """A folder on the same filesystem where a finished file can be renamed into place, if any."""
        return None

    def store_stream(self, source: BinaryIO, key: str) -> None:
        """Store everything ``source`` yields under ``key``, atomically (all or nothing under the key)."""
        self.store_bytes(source.read(), key)

    def sha256(self, key: str) -> str:
        """The SHA-256 of the stored object, read back from the tier (what a move verifies)."""
        digest = hashlib.sha256()
        with self.open(key) as fp:
            while chunk := fp.read(COPY_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()


class LocalTier(Tier):
    """Files under a local folder: ``file:///var/dicom/hot``."""

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None, *, fsync: bool = True):
        parsed = urlparse(url)
        if parsed.scheme not in ("file", ""):
            raise ValueError(f"LocalTier needs a file:// URL, not {url!r}")
        self.name = name
        self.url = url
        self.root = Path(unquote(parsed.path)).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._staging = self.root / ".staging"
        self._staging.mkdir(exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def staging_dir(self) -> Path:
        return self._staging

    def _sync_dir(self, directory: Path) -> None:
        if not self.fsync:
            return
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _publish(self, temp: Path, target: Path, data_synced: bool = False) -> None:
        if self.fsync and not data_synced:
            with open(temp, "rb+") as fp:
                os.fsync(fp.fileno())
        os.replace(temp, target)
        self._sync_dir(target.parent)  # the name: what the index commit after this relies on

    def store_file(self, source: Path, key: str) -> None:
        self._store_file(source, key, durable=False)

    def store_durable_file(self, source: Path, key: str) -> None:
        self._store_file(source, key, durable=True)

    def _store_file(self, source: Path, key: str, durable: bool) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            same_fs = source.stat().st_dev == target.parent.stat().st_dev
        except OSError as exc:
            raise StorageError(f"cannot stat {source}: {exc.strerror}") from exc
        temp = target.with_name(f"{target.name}{TEMP_MARK}{uuid.uuid4().hex}")
        try:
            if same_fs:
                os.replace(source, temp)  # the same inode: durable bytes stay durable
            else:
                with open(source, "rb") as src, open(temp, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            self._publish(temp, target, data_synced=durable and same_fs)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise StorageError(f"tier {self.name}: cannot store {key}: {exc.strerror}") from exc

    def store_bytes(self, data: bytes, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{target.name}{TEMP_MARK}{uuid.uuid4().hex}")
        try:
            with open(temp, "wb") as fp:
                fp.write(data)
            self._publish(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise StorageError(f"tier {self.name}: cannot store {key}: {exc.strerror}") from exc

    def store_stream(self, source: BinaryIO, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f"{target.name}{TEMP_MARK}{uuid.uuid4().hex}")
        try:
            with open(temp, "wb") as fp:
                while chunk := source.read(COPY_CHUNK):
                    fp.write(chunk)
            self._publish(temp, target)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"tier {self.name}: cannot store {key}: {exc.strerror}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(f"tier {self.name}: {key} is missing") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise ObjectMissing(f"tier {self.name}: {key} is missing") from exc
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def read_range_cached(self, key: str, offset: int, length: int) -> bytearray | None:
        return cached_read.read_cached(str(self._path(key)), offset, length)

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Empty series and study folders go too, so the tree mirrors the index.
        for parent in (path.parent, path.parent.parent):
            if parent == self.root:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if d != ".staging"]
            for filename in filenames:
                full = Path(dirpath) / filename
                try:
                    mtime = full.stat().st_mtime
                except FileNotFoundError:
                    continue
                yield full.relative_to(self.root).as_posix(), mtime


class FsspecTier(Tier):
    """Any fsspec filesystem (``memory://x``, ``gcs://bucket``, ...); objects appear whole or not at all.

    Errors are mapped once, here: a missing object is :class:`ObjectMissing`, anything else the store says
    or fails to say is :class:`StorageUnavailable`, so a client gets 503 with Retry-After, never a 500.
    """

    retry_after = 30

    # Bytes per written part and per read of a streamed copy; None: the filesystem's defaults.
    part_size: int | None = None

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None, **_: Any):
        self.name = name
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def _error(self, action: str, key: str, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, FileNotFoundError):
            return ObjectMissing(f"tier {self.name}: {key} is missing")
        return StorageUnavailable(
            f"the {self.role} store {self.name!r} could not {action} {key}: {type(exc).__name__}: {exc}",
            self.retry_after,
        )

    def store_file(self, source: Path, key: str) -> None:
        try:
            self.fs.put_file(str(source), self._path(key))
        except Exception as exc:
            raise self._error("store", key, exc) from exc
        source.unlink(missing_ok=True)

    def store_bytes(self, data: bytes, key: str) -> None:
        try:
            self.fs.pipe_file(self._path(key), data)
        except Exception as exc:
            raise self._error("store", key, exc) from exc

    def store_stream(self, source: BinaryIO, key: str) -> None:
        # Buffered writers upload in parts and publish on close; on failure discard() drops the parts,
        # so a broken copy never appears under the key.
        block = {"block_size": self.part_size} if self.part_size else {}
        try:
            target = self.fs.open(self._path(key), "wb", **block)
        except Exception as exc:
            raise self._error("store", key, exc) from exc
        try:
            while chunk := source.read(self.part_size or COPY_CHUNK):
                target.write(chunk)
        except BaseException as exc:
            discard = getattr(target, "discard", None)
            try:
                if discard is not None:
                    discard()
                    target.closed = True  # discarded: nothing left to flush when it is collected
                else:
                    target.close()
            except Exception:  # the original error is the one to report
                pass
            if isinstance(exc, Exception):
                raise self._error("store", key, exc) from exc
            raise
        try:
            target.close()
        except Exception as exc:
            raise self._error("store", key, exc) from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return self.fs.open(self._path(key), "rb")  # type: ignore[no-any-return]
        except Exception as exc:
            raise self._error("read", key, exc) from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            return bytes(self.fs.cat_file(self._path(key), start=offset, end=offset + length))
        except Exception as exc:
            raise self._error("read", key, exc) from exc

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._error("delete", key, exc) from exc

    def exists(self, key: str) -> bool:
        try:
            return bool(self.fs.exists(self._path(key)))
        except Exception as exc:
            raise self._error("look up", key, exc) from exc

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        try:
            found = self.fs.find(self.root, detail=True)
        except Exception as exc:
            raise self._error("list", self.root, exc) from exc
        for path, info in found.items():
            modified = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            yield path[len(self.root) + 1 :], stamp


# Tiers the core ships, by URL scheme; an entry point in group ``dicomweb.tiers`` with the same name wins.
BUILTIN = {"s3": "dicomweb.backends.s3:S3Tier", "s3a": "dicomweb.backends.s3:S3Tier"}


def _load(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(__import__(module, fromlist=[attribute]), attribute)


def open_tier(config: TierSettings, *, fsync: bool = True) -> Tier:
    """The tier for a configured URL: a plugin registered for its scheme, else a built-in, else fsspec."""
    scheme = urlparse(config.url).scheme or "file"
    tier: Tier | None = None
    for ep in entry_points(group="dicomweb.tiers"):
        if ep.name == scheme:
            tier = ep.load()(config.name, config.url, config.options, fsync=fsync)
            break
    if tier is None and scheme in BUILTIN:
        tier = _load(BUILTIN[scheme])(config.name, config.url, config.options, fsync=fsync)
    if tier is None:
        tier = (
            LocalTier(config.name, config.url, config.options, fsync=fsync)
            if scheme == "file"
            else FsspecTier(config.name, config.url, config.options)
        )
    tier.role = config.role
    tier.capacity_bytes = config.capacity_bytes
    return tier


class ReadHook(Protocol):
    """Told which tier served each read of ``key``."""

    def __call__(self, tier: Tier, key: str) -> None: ...

    def may_block(self, tier: Tier) -> bool:
        """Whether being told of a read from ``tier`` may wait on I/O (not to be done on the event loop)."""
        ...


ROLE_ORDER = {"local": 0, "laboratory": 1, "external": 2}


class _ReadThrough(Tier):
    """A tier as the index names it, whose reads fall back to the other tiers for the same key.

    Keys carry the content hash, so the same key on another tier is the same bytes: a reader whose
    instance was just moved (index read before the switch, source deleted after) still gets its bytes.
    """

    def __init__(self, tier: Tier, tierset: TierSet) -> None:
        self.inner = tier
        self.tierset = tierset
        self.name, self.url, self.role, self.capacity_bytes = tier.name, tier.url, tier.role, tier.capacity_bytes

    def _others(self) -> list[Tier]:
        return [t for t in self.tierset.by_role() if t is not self.inner]

    def _read(self, key: str, read: Callable[[Tier], Any]) -> Any:
        hook = self.tierset.on_read
        try:
            result = read(self.inner)
        except ObjectMissing:
            for other in self._others():
                try:
                    result = read(other)
                except ObjectMissing:
                    continue
                if hook is not None:
                    hook(other, key)
                return result
            raise
        if hook is not None:
            hook(self.inner, key)
        return result

    def open(self, key: str) -> BinaryIO:
        opened: list[Tier] = []

        def first(tier: Tier) -> BinaryIO:
            fp = tier.open(key)
            opened.append(tier)
            return fp

        fp = self._read(key, first)
        return _FailoverReader(fp, opened[-1], key, self.tierset)  # type: ignore[return-value]

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._read(key, lambda tier: tier.read_range(key, offset, length))  # type: ignore[no-any-return]

    def read_range_cached(self, key: str, offset: int, length: int) -> bytearray | None:
        """From the named tier only: a key it lacks is for the thread path, which reads through."""
        hook = self.tierset.on_read
        if hook is not None and hook.may_block(self.inner):
            return None
        data = self.inner.read_range_cached(key, offset, length)
        if data is not None and hook is not None:
            hook(self.inner, key)
        return data

    def sha256(self, key: str) -> str:
        return self.inner.sha256(key)

    def store_file(self, source: Path, key: str) -> None:
        self.inner.store_file(source, key)

    def store_durable_file(self, source: Path, key: str) -> None:
        self.inner.store_durable_file(source, key)

    def store_bytes(self, data: bytes, key: str) -> None:
        self.inner.store_bytes(data, key)

    def store_stream(self, source: BinaryIO, key: str) -> None:
        self.inner.store_stream(source, key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        return self.inner.iter_keys()

    def staging_dir(self) -> Path | None:
        return self.inner.staging_dir()


class _FailoverReader(io.RawIOBase):
    """A reader that, if its object vanishes mid-read (moved to another tier), goes on from the same
    offset in the copy on another tier: same key, same bytes."""

    def __init__(self, inner: BinaryIO, tier: Tier, key: str, tierset: TierSet) -> None:
        super().__init__()
        self.inner, self.tier, self.key, self.tierset = inner, tier, key, tierset
        self.position = 0
        self.tried = {tier.name}

    def _failover(self, exc: BaseException) -> None:
        for other in self.tierset.by_role():
            if other.name in self.tried:
                continue
            self.tried.add(other.name)
            try:
                fp = other.open(self.key)
            except ObjectMissing:
                continue
            fp.seek(self.position)
            self.inner.close()
            self.inner, self.tier = fp, other
            return
        raise ObjectMissing(f"{self.key} vanished from every tier while being read") from exc

    def _call(self, action: Callable[[], Any]) -> Any:
        while True:
            try:
                return action()
            except (FileNotFoundError, ObjectMissing) as exc:
                self._failover(exc)
            except StorageError:
                raise
            except Exception as exc:
                raise StorageUnavailable(f"tier {self.tier.name}: reading {self.key} failed: {exc}") from exc

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._call(lambda: self.inner.read(-1 if size is None else size))
        self.position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = int(self._call(lambda: self.inner.seek(offset, whence)))
        return self.position

    def tell(self) -> int:
        return self.position

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.inner.close()
        super().close()


class TierSet:
    """The configured tiers by name, and the one new instances are written to.

    ``tierset[name]`` reads through to the other tiers when the named one lacks the key (a study in the
    middle of a move stays readable); ``on_read`` is told which tier served each read (last-read tracking).
    """

    def __init__(self, tiers: dict[str, Tier], write_tier: str):
        self.tiers = tiers
        self.write = tiers[write_tier]
        self.on_read: ReadHook | None = None
        self._views = {name: _ReadThrough(tier, self) for name, tier in tiers.items()}

    def __getitem__(self, name: str) -> Tier:
        try:
            return self._views[name]
        except KeyError:
            raise StorageError(f"the index names a tier {name!r} that is not configured") from None

    def raw(self, name: str) -> Tier:
        """The tier itself, without read-through (moves and checks must see exactly one tier)."""
        self[name]
        return self.tiers[name]

    def by_role(self) -> list[Tier]:
        """Fastest first: local, laboratory, external, then in configuration order."""
        return sorted(self.tiers.values(), key=lambda t: ROLE_ORDER.get(t.role, 3))
