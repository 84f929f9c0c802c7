"""The streaming multipart reader: any chunking of any body gives back exactly the parts sent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dicomweb.http.multipart import MultipartError, MultipartParser, closing, part_head


class Collect:
    def __init__(self) -> None:
        self.parts: list[tuple[dict[str, str], bytes]] = []
        self._current = bytearray()
        self._headers: dict[str, str] = {}

    def begin_part(self, headers: dict[str, str]) -> None:
        self._headers, self._current = headers, bytearray()

    def part_data(self, data: bytes) -> None:
        self._current += data

    def end_part(self) -> None:
        self.parts.append((self._headers, bytes(self._current)))


def encode(parts: list[bytes], boundary: str) -> bytes:
    body = b"".join(
        part_head(boundary, [("Content-Type", "application/dicom")], first=i == 0) + p for i, p in enumerate(parts)
    )
    return body + closing(boundary)


def parse(body: bytes, boundary: bytes, cuts: list[int]) -> list[tuple[dict[str, str], bytes]]:
    sink = Collect()
    parser = MultipartParser(boundary, sink)
    previous = 0
    for cut in [*sorted({min(c, len(body)) for c in cuts}), len(body)]:
        parser.feed(body[previous:cut])
        previous = cut
    parser.close()
    return sink.parts


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.binary(max_size=3000), min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=30),
)
def test_any_chunking_gives_back_the_parts(parts: list[bytes], cuts: list[int]) -> None:
    boundary = "b0undary-7f3a"
    # Data may contain anything except the delimiter itself (RFC 2046 guarantees that of a real boundary).
    parts = [p.replace(b"--" + boundary.encode(), b"xx") for p in parts]
    got = parse(encode(parts, boundary), boundary.encode(), cuts)
    assert [data for _, data in got] == parts
    assert all(headers == {"content-type": "application/dicom"} for headers, _ in got)


def test_data_that_nearly_contains_the_boundary() -> None:
    boundary = "XyZ"
    tricky = b"\r\n--XyZ-not-really"[:-1].replace(b"--XyZ", b"--XyW") + b"\r\n--Xy"
    got = parse(encode([tricky, b"\r\n"], boundary), boundary.encode(), [1, 5, 9, 13])
    assert [d for _, d in got] == [tricky, b"\r\n"]


def test_preamble_and_transport_padding_are_ignored() -> None:
    body = b"preamble text\r\n--B  \r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--B--\r\nepilogue"
    assert parse(body, b"B", []) == [({"content-type": "application/dicom"}, b"DATA")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary anywhere", "no part with the boundary"),
        (b"--B\r\nContent-Type: application/dicom\r\n\r\nDATA", "ended inside part 1"),
        (b"--B\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--B\r\n", "without the closing boundary"),
        (b"--Bjunk\r\n\r\nDATA\r\n--B--", "unexpected bytes after a boundary"),
        (b"--B\r\nbroken header line\r\n\r\nDATA\r\n--B--", "malformed part header"),
    ],
)
def test_malformed_bodies_are_named(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse(body, b"B", [])


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=70000), min_size=1, max_size=4),
    chunk=st.integers(min_value=1, max_value=40000),
    seed=st.integers(min_value=0, max_value=255),
)
def test_large_parts_in_any_chunk_size(sizes: list[int], chunk: int, seed: int) -> None:
    """Parts much larger than a chunk (the parser's path that hands the sink views of the chunk)."""
    boundary = "bnd"
    # Bytes that keep coming close to the delimiter ("\r\n--bn...") without completing it.
    pattern = bytes((seed + i) % 256 for i in range(251)) + b"\r\n--bn\r\n-\r\n--b"
    parts = [(pattern * (size // len(pattern) + 1))[:size] for size in sizes]
    body = encode(parts, boundary)
    got = parse(body, boundary.encode(), list(range(chunk, len(body), chunk)))
    assert [data for _, data in got] == parts
