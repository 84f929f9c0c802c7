"""``application/zip`` of a study, series or instance (PS3.18 8.7.3.2): the stored files, streamed.

Entries are stored uncompressed (DICOM files compress poorly and the point is speed) and named
``{study}/{series}/{sop}.dcm``; the zip is written to a streaming buffer one instance at a time, so memory
holds one instance at most.
"""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

import anyio
from starlette.responses import StreamingResponse

from ..archive import Archive
from ..services.retrieve import CHUNK, StoredInstance


class _Sink:
    """A write-only file for ZipFile: it collects what is written until the stream takes it."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


# An entry: its name in the zip and the bytes to put there (the stored file, or a rewritten copy of it).
Entry = Callable[[StoredInstance], tuple[str, BinaryIO]]


def stored_entry(archive: Archive) -> Entry:
    def entry(instance: StoredInstance) -> tuple[str, BinaryIO]:
        name = f"{instance.study_instance_uid}/{instance.series_instance_uid}/{instance.sop_instance_uid}.dcm"
        return name, archive.retrieve.open(instance)

    return entry


def _add(entry: Entry, zf: zipfile.ZipFile, sink: _Sink, instance: StoredInstance) -> bytes:
    name, source = entry(instance)
    info = zipfile.ZipInfo(name, date_time=instance.created_at.timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED
    with source as src, zf.open(info, "w", force_zip64=instance.size > 0x7FFF0000) as dst:
        while chunk := src.read(CHUNK):
            dst.write(chunk)
    return sink.take()


def _finish(zf: zipfile.ZipFile, sink: _Sink) -> bytes:
    zf.close()
    return sink.take()


def zip_response(archive: Archive, instances: list[StoredInstance], headers: dict[str, str],
                 entry: Entry | None = None, filename: str | None = None) -> StreamingResponse:
    """The zip, streamed an instance at a time; ``entry`` names and opens each (default: the stored file
    under its UIDs), ``filename`` is the download's name without ``.zip`` (default: the study UID)."""
    make_entry = entry or stored_entry(archive)

    async def body() -> AsyncIterator[bytes]:
        sink = _Sink()
        zf = zipfile.ZipFile(sink, "w", allowZip64=True)  # type: ignore[call-overload]
        for instance in instances:
            yield await anyio.to_thread.run_sync(_add, make_entry, zf, sink, instance)
        yield await anyio.to_thread.run_sync(_finish, zf, sink)

    name = filename or instances[0].study_instance_uid
    return StreamingResponse(
        body(), media_type="application/zip",
        headers={**headers, "Content-Disposition": f'attachment; filename="{name}.zip"'},
    )
