"""HTTP caching for retrieval (RFC 9110 8.8, 13; RFC 9111): validators, conditional requests, HEAD.

Stored instances never change in place (a replacement is a new row with a new checksum), so an entity tag
built from the checksums of what a response holds, and from the representation chosen (transfer syntax,
media type, base URL), is strong; a matching ``If-None-Match`` or a not-newer ``If-Modified-Since`` answers
304 without touching storage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import Response

# Private: the answer depends on who asks once authorization comes; revalidate so deletions show at once.
CACHE_CONTROL = "private, max-age=0, must-revalidate"
VARY = "Accept, Accept-Encoding, Authorization"


def entity_tag(*parts: str | Iterable[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        for piece in [part] if isinstance(part, str) else part:
            digest.update(piece.encode())
            digest.update(b"\0")
    return f'"{digest.hexdigest()[:40]}"'


def http_date(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite gives back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def validator_headers(etag: str, last_modified: datetime | None) -> dict[str, str]:
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": VARY}
    modified = http_date(last_modified)
    if modified:
        headers["Last-Modified"] = modified
    return headers


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    candidates = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in candidates


def not_modified(request: Request, etag: str, last_modified: datetime | None) -> bool:
    """Whether a GET or HEAD can be answered 304 (If-None-Match wins over If-Modified-Since)."""
    if request.method not in ("GET", "HEAD"):
        return False
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return _etag_matches(inm, etag)
    ims = request.headers.get("if-modified-since")
    if ims and last_modified is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False  # an unreadable date is ignored (RFC 9110 13.1.3)
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        moment = last_modified if last_modified.tzinfo else last_modified.replace(tzinfo=UTC)
        return moment.replace(microsecond=0) <= since
    return False


def not_modified_response(headers: Mapping[str, str]) -> Response:
    return Response(status_code=304, headers=dict(headers))


def head_or(request: Request, response: Response, length: int | None) -> Response:
    """For HEAD, the same headers without a body (nor the work of producing one)."""
    if request.method != "HEAD":
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    if length is not None:
        headers["Content-Length"] = str(length)
    return Response(status_code=response.status_code, headers=headers)
