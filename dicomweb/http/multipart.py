"""Streaming multipart (RFC 2046) reading and writing.

The reader is a push parser: feed it chunks as they arrive; it hands each part's headers and body bytes to
a sink without ever holding more than one chunk plus a boundary's length. The writer produces the
multipart/related bodies of WADO-RS chunk by chunk.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable
from typing import Protocol


class MultipartError(ValueError):
    """The body is not a well-formed multipart body; the message says where."""


class PartSink(Protocol):
    def begin_part(self, headers: dict[str, str]) -> None: ...
    def part_data(self, data: bytes | memoryview) -> None:
        """Body bytes of the current part; ``data`` may be a view of the fed chunk, valid during the call only."""
    def end_part(self) -> None: ...


_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _EPILOGUE = range(5)
MAX_HEADER_BYTES = 16 * 1024


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


class MultipartParser:
    def __init__(self, boundary: bytes, sink: PartSink) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._sink = sink
        # A leading CRLF lets the first boundary be found like every later one.
        self._buffer = bytearray(b"\r\n")
        self._state = _PREAMBLE
        self.parts = 0

    @property
    def complete(self) -> bool:
        return self._state == _EPILOGUE

    @property
    def in_part(self) -> bool:
        return self._state == _BODY

    def feed(self, data: bytes) -> None:
        if self._state == _EPILOGUE:
            return
        if self._state == _BODY and len(self._buffer) <= len(self._delimiter) + 1 < len(data) // 2:
            data = self._body_chunk(data)
            if not data:
                return
        self._buffer += data
        self._process()

    def _body_chunk(self, data: bytes) -> bytes:
        """Inside a part's body with only a short undecided tail held back: hand the chunk's body bytes to the
        sink as views of the chunk (no copy), up to the next delimiter; return what the general loop must
        still read (from that delimiter on), b"" when nothing."""
        delimiter = self._delimiter
        tail = self._buffer
        if tail:
            # A delimiter beginning in the held-back tail (at most a delimiter and a byte) ends within the
            # chunk's first bytes.
            if (bytes(tail) + data[: len(delimiter) - 1]).find(delimiter) >= 0:
                return data  # the general loop finds it
            self._sink.part_data(bytes(tail))
            tail.clear()
        view = memoryview(data)
        idx = data.find(delimiter)
        if idx < 0:
            safe = len(data) - (len(delimiter) + 1)
            self._sink.part_data(view[:safe])
            tail += view[safe:]
            return b""
        if idx:
            self._sink.part_data(view[:idx])
        self._sink.end_part()
        self._state = _AFTER_DELIMITER
        return data[idx + len(delimiter) :]

    def _process(self) -> None:
        buf = self._buffer
        delimiter = self._delimiter
        keep = len(delimiter) + 1
        while True:
            if self._state == _PREAMBLE:
                idx = buf.find(delimiter)
                if idx < 0:
                    if len(buf) > keep:
                        del buf[: len(buf) - keep]
                    return
                del buf[: idx + len(delimiter)]
                self._state = _AFTER_DELIMITER
            elif self._state == _AFTER_DELIMITER:
                if len(buf) < 2:
                    return
                if buf.startswith(b"--"):
                    self._state = _EPILOGUE
                    buf.clear()
                    return
                eol = buf.find(b"\r\n")
                if eol < 0:
                    if len(buf) > 1024:
                        raise MultipartError("a boundary line is not followed by CRLF")
                    return
                if buf[:eol].strip(b" \t"):
                    raise MultipartError("unexpected bytes after a boundary (is the boundary right?)")
                del buf[: eol + 2]
                self._state = _HEADERS
            elif self._state == _HEADERS:
                if buf.startswith(b"\r\n"):
                    headers: dict[str, str] = {}
                    del buf[:2]
                else:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > MAX_HEADER_BYTES:
                            raise MultipartError("part headers longer than 16 KiB")
                        return
                    headers = _parse_headers(bytes(buf[:end]))
                    del buf[: end + 4]
                self.parts += 1
                self._sink.begin_part(headers)
                self._state = _BODY
            elif self._state == _BODY:
                idx = buf.find(delimiter)
                if idx < 0:
                    safe = len(buf) - keep
                    if safe > 0:
                        self._sink.part_data(bytes(buf[:safe]))
                        del buf[:safe]
                    return
                if idx:
                    self._sink.part_data(bytes(buf[:idx]))
                del buf[: idx + len(delimiter)]
                self._sink.end_part()
                self._state = _AFTER_DELIMITER
            else:  # pragma: no cover - epilogue handled above
                return

    def close(self) -> None:
        """Declare the body finished; raises when it ended early."""
        if self._state == _EPILOGUE:
            return
        if self._state == _PREAMBLE:
            raise MultipartError("the body contains no part with the boundary named in Content-Type")
        if self._state == _BODY:
            raise MultipartError(f"the body ended inside part {self.parts} (truncated request)")
        raise MultipartError("the body ended without the closing boundary")


# Boundaries are a keyed hash of a counter: unpredictable without the per-process key, never repeated, and
# made without a system call (os.urandom gives up the GIL, and the event loop then waits for a worker thread
# to hand it back: ~0.1 ms per response under load).
_BOUNDARY_KEY = os.urandom(32)
_boundary_numbers = itertools.count()


def new_boundary() -> str:
    number = next(_boundary_numbers)  # atomic under the GIL
    return hashlib.blake2b(number.to_bytes(8, "big"), key=_BOUNDARY_KEY, digest_size=16).hexdigest()


def part_head(boundary: str, headers: Iterable[tuple[str, str]], first: bool) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (b"" if first else b"\r\n") + f"--{boundary}\r\n{lines}\r\n".encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")
