"""Storage tiers: a name plus an fsspec URL, found at run time like fsspec's own protocols.

A tier stores immutable blobs under keys derived from validated UIDs. Writes are atomic and durable
(temporary name, fsync, rename; an object store's PUT is atomic by itself) so the index may commit as soon
as ``store_*`` returns. Third parties add tiers through the ``dicomweb.tiers`` entry point group, keyed
by URL scheme; any other scheme fsspec knows is served by :class:`FsspecTier`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlparse

import fsspec

from ..settings import TierSettings

_KEY = re.compile(r"^[0-9A-Za-z._-]+(/[0-9A-Za-z._-]+)*$")
TEMP_MARK = ".tmp-"


class StorageError(OSError):
    """A tier could not do what was asked (unreachable, full, missing object)."""


def check_key(key: str) -> str:
    """Refuse anything that could leave the tier's root (keys come from validated UIDs only)."""
    if not _KEY.match(key) or ".." in key.split("/"):
        raise ValueError(f"unsafe storage key {key!r}")
    return key


class Tier:
    """The interface every storage tier offers."""

    name: str
    url: str

    def store_file(self, source: Path, key: str) -> None:
        """Store the file at ``source`` under ``key``; the source may be consumed (moved)."""
        raise NotImplementedError

    def store_bytes(self, data: bytes, key: str) -> None:
        raise NotImplementedError

    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader."""
        raise NotImplementedError

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self.open(key) as fp:
            fp.seek(offset)
            return fp.read(length)

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

    def _publish(self, temp: Path, target: Path) -> None:
        if self.fsync:
            with open(temp, "rb+") as fp:
                os.fsync(fp.fileno())
        os.replace(temp, target)
        self._sync_dir(target.parent)

    def store_file(self, source: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            same_fs = source.stat().st_dev == target.parent.stat().st_dev
        except OSError as exc:
            raise StorageError(f"cannot stat {source}: {exc.strerror}") from exc
        temp = target.with_name(f"{target.name}{TEMP_MARK}{uuid.uuid4().hex}")
        try:
            if same_fs:
                os.replace(source, temp)
            else:
                with open(source, "rb") as src, open(temp, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
            self._publish(temp, target)
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

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise StorageError(f"tier {self.name}: {key} is missing") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError as exc:
            raise StorageError(f"tier {self.name}: {key} is missing") from exc
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

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
    """Any fsspec filesystem (``s3://bucket/prefix``, ``memory://x``, ...); objects are written whole."""

    def __init__(self, name: str, url: str, options: dict[str, Any] | None = None, **_: Any):
        self.name = name
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(options or {}))
        self.root = root.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def store_file(self, source: Path, key: str) -> None:
        try:
            self.fs.put_file(str(source), self._path(key))
        except OSError as exc:
            raise StorageError(f"tier {self.name}: cannot store {key}: {exc}") from exc
        source.unlink(missing_ok=True)

    def store_bytes(self, data: bytes, key: str) -> None:
        try:
            self.fs.pipe_file(self._path(key), data)
        except OSError as exc:
            raise StorageError(f"tier {self.name}: cannot store {key}: {exc}") from exc

    def open(self, key: str) -> BinaryIO:
        try:
            return self.fs.open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise StorageError(f"tier {self.name}: {key} is missing") from exc

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            return self.fs.cat_file(self._path(key), start=offset, end=offset + length)
        except FileNotFoundError as exc:
            raise StorageError(f"tier {self.name}: {key} is missing") from exc

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        for path, info in self.fs.find(self.root, detail=True).items():
            modified = info.get("LastModified") or info.get("mtime") or info.get("created") or 0
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
            yield path[len(self.root) + 1 :], stamp


def open_tier(config: TierSettings, *, fsync: bool = True) -> Tier:
    """The tier for a configured URL: a plugin registered for its scheme, else local files or fsspec."""
    scheme = urlparse(config.url).scheme or "file"
    for ep in entry_points(group="dicomweb.tiers"):
        if ep.name == scheme:
            factory = ep.load()
            return factory(config.name, config.url, config.options, fsync=fsync)
    if scheme == "file":
        return LocalTier(config.name, config.url, config.options, fsync=fsync)
    return FsspecTier(config.name, config.url, config.options)


class TierSet:
    """The configured tiers by name, and the one new instances are written to."""

    def __init__(self, tiers: dict[str, Tier], write_tier: str):
        self.tiers = tiers
        self.write = tiers[write_tier]

    def __getitem__(self, name: str) -> Tier:
        try:
            return self.tiers[name]
        except KeyError:
            raise StorageError(f"the index names a tier {name!r} that is not configured") from None
