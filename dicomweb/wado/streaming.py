"""Response bodies made of literal pieces (part heads, the closing delimiter) and stored instances.

The pieces are cut into batches of at most ``BATCH_BYTES``; each batch is filled in one worker-thread step,
the file bytes read straight into the batch's buffer (no copy to join them with their part heads), and the
next batch is read while the current one is being sent. A whole series thus costs one thread hop and one
socket write per few instances instead of one hop per instance and two writes per part, and reading
overlaps sending. At most two batches per response are in memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import anyio

from ..services.retrieve import RetrieveService, StoredInstance

BATCH_BYTES = 2 << 20

Piece = bytes | StoredInstance


@dataclass(frozen=True)
class _Span:
    """``length`` bytes of ``instance``'s stored file from ``offset``."""

    instance: StoredInstance
    offset: int
    length: int


def body_length(pieces: Sequence[Piece]) -> int:
    return sum(len(p) if isinstance(p, bytes) else p.size for p in pieces)


def batches(pieces: Sequence[Piece], limit: int = BATCH_BYTES) -> Iterator[list[bytes | _Span]]:
    """The pieces in order, grouped into lists of about ``limit`` bytes (files are split, literals never)."""
    batch: list[bytes | _Span] = []
    size = 0
    for piece in pieces:
        if isinstance(piece, bytes):
            batch.append(piece)
            size += len(piece)
            continue
        offset = 0
        while offset < piece.size:
            if size >= limit:
                yield batch
                batch, size = [], 0
            length = min(limit - size, piece.size - offset)
            batch.append(_Span(piece, offset, length))
            size += length
            offset += length
    if batch:
        yield batch


class _Filler:
    """Fills batches in order, keeping the file of an instance split across batches open between them."""

    def __init__(self, retrieve: RetrieveService) -> None:
        self.retrieve = retrieve
        self._open: tuple[StoredInstance, BinaryIO] | None = None

    def fill(self, batch: list[bytes | _Span]) -> memoryview:
        view = memoryview(bytearray(sum(len(p) if isinstance(p, bytes) else p.length for p in batch)))
        at = 0
        for piece in batch:
            if isinstance(piece, bytes):
                view[at:at + len(piece)] = piece
                at += len(piece)
            else:
                self._read_into(piece, view[at:at + piece.length])
                at += piece.length
        return view

    def _read_into(self, span: _Span, target: memoryview) -> None:
        if self._open is None or self._open[0] is not span.instance:
            self.close()
            self._open = (span.instance, self.retrieve.open(span.instance))
        fp = self._open[1]
        fp.seek(span.offset)
        filled = 0
        while filled < span.length:
            count = fp.readinto(target[filled:])  # type: ignore[attr-defined]
            if not count:
                raise OSError(f"the stored file of instance {span.instance.sop_instance_uid} ends after "
                              f"{span.offset + filled} bytes; the index says {span.instance.size}")
            filled += count

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


async def stream(retrieve: RetrieveService, pieces: Sequence[Piece]) -> AsyncIterator[memoryview]:
    """The body, batch by batch, the next batch read while the current one goes out."""
    filler = _Filler(retrieve)
    groups = batches(pieces, BATCH_BYTES)

    def read_ahead() -> asyncio.Future[memoryview] | None:
        batch = next(groups, None)
        if batch is None:
            return None
        return asyncio.ensure_future(anyio.to_thread.run_sync(filler.fill, batch))

    def close_after(done: asyncio.Future[memoryview]) -> None:
        filler.close()
        if not done.cancelled():
            done.exception()  # retrieved: a read that failed after the client left is not an error to report

    pending = read_ahead()
    try:
        while pending is not None:
            data = await pending
            pending = read_ahead()
            yield data
    finally:
        if pending is None:
            filler.close()
        else:  # the client left mid-body: the file closes once the read in flight has finished
            pending.add_done_callback(close_after)
