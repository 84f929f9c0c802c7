"""Spooling incoming instances: memory up to a bound, then a file next to the storage tier.

The spool hashes while it writes, so the sha256 and size are known the moment the last byte arrives and
the stored file never has to be read again for them. A spool file on the tier's filesystem is renamed
into place by the tier: a large instance is written to disk exactly once.

A file that starts with its File Meta Information but lacks the 128-byte preamble and "DICM" prefix is
completed with them as it is spooled (a zero preamble, as PS3.10 7.1 allows when it is unused): that is what
pydicom, and so dicomweb-client, write for a data set made in memory. What follows is stored as sent.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..dicom.file_meta import PREAMBLE

SPOOL_SUFFIX = ".part"


def _completed(head: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """``head`` (at least the first 132 bytes of a file, or all of a shorter one) with the preamble and prefix
    put before a File Meta Information group that comes without them; otherwise unchanged."""
    if bytes(head[128:132]) == b"DICM":
        return head
    tag, vr = bytes(head[0:4]), bytes(head[4:6])
    if tag[:2] == b"\x02\x00" and len(vr) == 2 and vr.isalpha() and vr.isupper():  # (0002,xxxx), explicit VR
        return PREAMBLE + bytes(head)
    return head


@dataclass
class StagedBlob:
    """A complete received instance: in memory (``data``) or in a staging file (``path``)."""

    sha256: str
    size: int
    data: bytes | None = None
    path: Path | None = None
    durable: bool = False  # the file at ``path`` is already fsynced (an acknowledged DIMSE inbox entry)

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        self.data = None

    @classmethod
    def from_bytes(cls, data: bytes) -> StagedBlob:
        return cls(sha256=hashlib.sha256(data).hexdigest(), size=len(data), data=data)


class BlobSpooler:
    """Accumulates one part's bytes; call :meth:`finish` for the blob or :meth:`abort` to drop it."""

    def __init__(self, staging_dir: Path, memory_limit: int) -> None:
        self._dir = staging_dir
        self._limit = memory_limit
        self._hash = hashlib.sha256()
        self._buffer = bytearray()
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._size = 0
        self._head: bytearray | None = bytearray()  # the first bytes, until a preamble can be told apart

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._head is not None:
            if not self._head and len(chunk) >= len(PREAMBLE):
                chunk = _completed(chunk)
            else:
                self._head += chunk
                if len(self._head) < len(PREAMBLE):
                    return
                chunk = _completed(self._head)
            self._head = None
        self._hash.update(chunk)
        self._size += len(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return
        if len(self._buffer) + len(chunk) <= self._limit:
            self._buffer += chunk
            return
        # Past the memory bound: to a file, the chunk written from where it is (not copied to the buffer first).
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / f"{uuid.uuid4().hex}{SPOOL_SUFFIX}"
        self._file = open(self._path, "wb")
        if self._buffer:
            self._file.write(self._buffer)
            self._buffer = bytearray()
        self._file.write(chunk)

    def finish(self) -> StagedBlob:
        if self._head is not None:  # shorter than a preamble: whatever it is, the parser says what is wrong
            head, self._head = self._head, None
            if head:
                self.write(_completed(head))
        digest = self._hash.hexdigest()
        if self._file is None:
            return StagedBlob(sha256=digest, size=self._size, data=bytes(self._buffer))
        self._file.close()
        self._file = None
        return StagedBlob(sha256=digest, size=self._size, path=self._path)

    def abort(self) -> None:
        self._head = None
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass
        self._buffer = bytearray()


def stage_file(path: Path, staging_dir: Path, memory_limit: int) -> StagedBlob:
    """Stage a file from disk (the importer): copied so the tier may consume the staged copy."""
    spool = BlobSpooler(staging_dir, memory_limit)
    try:
        with open(path, "rb") as fp:
            while chunk := fp.read(1 << 20):
                spool.write(chunk)
    except BaseException:
        spool.abort()
        raise
    return spool.finish()


def stage_stream(stream: BinaryIO, staging_dir: Path, memory_limit: int) -> StagedBlob:
    spool = BlobSpooler(staging_dir, memory_limit)
    try:
        while chunk := stream.read(1 << 20):
            spool.write(chunk)
    except BaseException:
        spool.abort()
        raise
    return spool.finish()
