"""Building STOW-RS bodies and splitting multipart answers, independently of the server's own code."""

from __future__ import annotations

import uuid


def stow_body(parts: list[bytes | tuple[str, bytes]], kind: str = "application/dicom") -> tuple[str, bytes]:
    """A multipart/related body; a part is bytes (application/dicom) or (content type, bytes)."""
    boundary = f"test-{uuid.uuid4().hex}"
    chunks = []
    for part in parts:
        ctype, data = part if isinstance(part, tuple) else ("application/dicom", part)
        chunks.append(f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="{kind}"; boundary={boundary}', b"".join(chunks)


def split_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart answer (RFC 2046), split by a plain reading of the boundary."""
    params = dict(
        p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p
    )
    boundary = params["boundary"].strip('"').encode()
    delimiter = b"\r\n--" + boundary
    pieces = (b"\r\n" + body).split(delimiter)
    assert pieces[-1].startswith(b"--"), "no closing boundary"
    parts = []
    for piece in pieces[1:-1]:
        head, _, data = piece[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, data))
    return parts
