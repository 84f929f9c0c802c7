"""Media types and the Accept header (RFC 9110 12.5.1, PS3.18 8.7): ranges, parameters, q-values."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .problems import HTTPProblem

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})")
_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})")


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"

    def matches(self, media_type: str) -> bool:
        """Whether this range admits the concrete type (``*/*``, ``image/*``, exact)."""
        kind, _, sub = media_type.partition("/")
        return self.type in ("*", kind) and self.subtype in ("*", sub)


def _unquote(value: str) -> str:
    if value.startswith('"') and value.endswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _split_top_level(header: str) -> list[str]:
    """Split on commas outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in header:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [p for p in parts if p.strip()]


def parse_media_type(text: str) -> MediaRange:
    """One media type with parameters; raises ValueError when malformed."""
    match = _TYPE.match(text)
    if not match:
        raise ValueError(f"malformed media type {text.strip()!r}")
    params: dict[str, str] = {}
    q = 1.0
    pos = match.end()
    while pos < len(text.rstrip()):
        pm = _PARAM.match(text, pos)
        if not pm:
            raise ValueError(f"malformed parameters in media type {text.strip()!r}")
        name, value = pm.group(1).lower(), _unquote(pm.group(2))
        if name == "q":
            try:
                q = float(value)
            except ValueError:
                raise ValueError(f"q-value {value!r} is not a number") from None
            if not 0.0 <= q <= 1.0:
                raise ValueError(f"q-value {value} is outside 0..1")
        else:
            params[name] = value
        pos = pm.end()
    return MediaRange(match.group(1).lower(), match.group(2).lower(), params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The Accept header's ranges, most preferred first; an absent header accepts anything."""
    if header is None or not header.strip():
        return [MediaRange("*", "*")]
    return list(_parsed_accept(header))


@lru_cache(maxsize=512)
def _parsed_accept(header: str) -> tuple[MediaRange, ...]:
    """Clients send the same few Accept headers again and again (a viewer: one per kind of request), so the
    parse is kept; the ranges are shared, read-only."""
    try:
        ranges = [parse_media_type(part) for part in _split_top_level(header)]
    except ValueError as exc:
        raise HTTPProblem(400, f"malformed Accept header: {exc}") from None
    # Stable sort: q first, then more specific ranges before wildcards.
    return tuple(sorted(
        (r for r in ranges if r.q > 0),
        key=lambda r: (-r.q, r.type == "*", r.subtype == "*"),
    ))


def multipart_related(content_type: str | None) -> tuple[MediaRange, bytes]:
    """The parsed ``multipart/related`` Content-Type of a request and its boundary."""
    if not content_type:
        raise HTTPProblem(415, "the request has no Content-Type; expected multipart/related")
    try:
        media = parse_media_type(content_type)
    except ValueError as exc:
        raise HTTPProblem(400, f"malformed Content-Type: {exc}") from None
    if media.essence != "multipart/related":
        raise HTTPProblem(415, f"Content-Type {media.essence} is not supported; expected multipart/related")
    boundary = media.params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise HTTPProblem(400, "the multipart/related Content-Type has no usable boundary parameter")
    return media, boundary.encode("latin-1")


def negotiate(header: str | None, offers: list[str]) -> str:
    """The first of ``offers`` (in server preference) that the most preferred acceptable range admits."""
    for media_range in parse_accept(header):
        for offer in offers:
            if media_range.matches(offer):
                return offer
    raise HTTPProblem(406, f"none of the accepted media types can be given; available: {', '.join(offers)}")
