"""Reading a STOW-RS body: multipart parts spooled as they arrive, each handed on when complete."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..http.media import parse_media_type
from ..http.multipart import MultipartParser
from ..services.staging import BlobSpooler, StagedBlob


@dataclass
class ReceivedPart:
    index: int
    media_type: str  # the part's Content-Type essence, "" when it had none
    params: dict[str, str]
    content_location: str | None
    blob: StagedBlob


@dataclass
class PartCollector:
    """The parser's sink: one spooler per part; completed parts wait in ``ready`` until taken."""

    staging_dir: Path
    memory_limit: int
    ready: list[ReceivedPart] = field(default_factory=list)
    _spool: BlobSpooler | None = None
    _headers: dict[str, str] = field(default_factory=dict)
    _count: int = 0

    def begin_part(self, headers: dict[str, str]) -> None:
        self._headers = headers
        self._spool = BlobSpooler(self.staging_dir, self.memory_limit)

    def part_data(self, data: bytes | memoryview) -> None:
        assert self._spool is not None
        self._spool.write(data)

    def end_part(self) -> None:
        assert self._spool is not None
        blob = self._spool.finish()
        self._spool = None
        self._count += 1
        raw_type = self._headers.get("content-type", "")
        try:
            media = parse_media_type(raw_type) if raw_type else None
        except ValueError:
            media = None
        self.ready.append(
            ReceivedPart(
                index=self._count,
                media_type=media.essence if media else ("invalid" if raw_type else ""),
                params=media.params if media else {},
                content_location=self._headers.get("content-location"),
                blob=blob,
            )
        )

    def take(self) -> list[ReceivedPart]:
        parts, self.ready = self.ready, []
        return parts

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.abort()
            self._spool = None
        for part in self.take():
            part.blob.discard()


class BodyReader:
    """Feeds request chunks to the parser, which spools (and hashes) each part as its bytes arrive.

    The route feeds each chunk on the event loop as it comes (about 0.3 ms of work per 256 KiB: a search for
    the boundary, a hash update and a write into the page cache). Measured against a reader thread beside
    the loop (which contends with it for the GIL) and against chunks gathered for a worker thread (which
    stops the socket while it works), this is the fastest way in and the cheapest: on the synthetic CT,
    8% more instances/s for the web process alone and 20% more end to end than the thread.
    """

    def __init__(self, boundary: bytes, staging_dir: Path, memory_limit: int) -> None:
        self.collector = PartCollector(staging_dir, memory_limit)
        self.parser = MultipartParser(boundary, self.collector)

    def feed(self, chunks: list[bytes]) -> list[ReceivedPart]:
        """Feed chunks; the parts they completed. Raises MultipartError (completed parts stay in take())."""
        for chunk in chunks:
            self.parser.feed(chunk)
        return self.collector.take()

    def take(self) -> list[ReceivedPart]:
        return self.collector.take()

    def close(self) -> list[ReceivedPart]:
        """The body ended: raises MultipartError if it ended early; the last parts."""
        self.parser.close()
        return self.collector.take()

    def abort(self) -> None:
        """Discard the part being spooled and any completed part not yet taken."""
        self.collector.abort()
