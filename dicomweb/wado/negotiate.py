"""Accept negotiation for instances, frames and bulk data (PS3.18 8.7.3, 8.7.4).

The ranges come sorted by preference (``http.media.parse_accept``); the first one the archive can satisfy
wins. ``transfer-syntax=*`` and an absent ``transfer-syntax`` on ``application/dicom`` mean the stored
bytes; a named syntax is given as stored when it matches, else transcoded when the archive can encode it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from ..http.media import MediaRange, parse_accept, parse_media_type
from ..http.problems import HTTPProblem
from ..transcode import syntaxes as ts

DICOM = "application/dicom"
ZIP = "application/zip"
OCTET = ts.OCTET_STREAM


_UNQUOTED_TYPE = re.compile(r'(;\s*type\s*=\s*)([^";,\s]+/[^";,\s]+)', re.IGNORECASE)


def accept_ranges(request: Request) -> list[MediaRange]:
    """The Accept header's ranges; ``type=application/octet-stream`` unquoted (a ``/`` is not a token
    character, yet OHIF and others send it so) is read as if quoted."""
    header = request.headers.get("accept")
    if header is not None:
        header = _UNQUOTED_TYPE.sub(r'\1"\2"', header)
    return parse_accept(header)


@dataclass(frozen=True)
class Representation:
    kind: str  # "multipart", "single" or "zip"
    target: str | None  # a transfer syntax to transcode into; None: as stored


def _admits(range_type: str, media_type: str) -> bool:
    kind, _, sub = range_type.partition("/")
    want_kind, _, want_sub = media_type.partition("/")
    return kind in ("*", want_kind) and sub in ("*", want_sub)


def _inner(media_range: MediaRange, default: str) -> tuple[str, dict[str, str]]:
    """The part type of a multipart range and its parameters (some clients put them inside ``type``)."""
    params = dict(media_range.params)
    raw = params.pop("type", default)
    try:
        inner = parse_media_type(raw)
    except ValueError:
        return raw.lower(), params
    return inner.essence, {**inner.params, **params}


def _instance_target(wanted: str | None, stored: set[str]) -> tuple[bool, str | None]:
    if wanted in (None, "*") or stored == {wanted}:
        return True, None
    if wanted in ts.INSTANCE_TARGETS:
        return True, wanted
    return False, None


def instance_representation(ranges: list[MediaRange], stored: set[str], single_allowed: bool) -> Representation:
    """How to give instances; raises 406 naming what can be given."""
    for media_range in ranges:
        essence = media_range.essence
        if essence == ZIP:
            return Representation("zip", None)
        if essence == DICOM:
            ok, target = _instance_target(media_range.params.get("transfer-syntax"), stored)
            if ok:
                return Representation("single" if single_allowed else "multipart", target)
            continue
        if essence in ("multipart/related", "multipart/*", "*/*"):
            inner, params = _inner(media_range, DICOM)
            if not _admits(inner, DICOM):
                continue
            ok, target = _instance_target(params.get("transfer-syntax"), stored)
            if ok:
                return Representation("multipart", target)
    raise HTTPProblem(
        406,
        'the instances can be given as multipart/related; type="application/dicom" with transfer-syntax=* '
        f"(stored: {', '.join(sorted(stored))}) or one of {', '.join(ts.INSTANCE_TARGETS)}; "
        "application/dicom for one instance; or application/zip",
    )


def _frame_target(inner: str, wanted: str | None, stored: str) -> str | None:
    """The syntax to give frames in for one range, or None when this range cannot be met."""
    given = ts.EXPLICIT_LE if ts.is_native(stored) else stored  # native frames always go out little endian
    stored_media = ts.frame_media_type(stored)
    if wanted == "*":
        if inner == OCTET or _admits(inner, stored_media):
            return given
        default = ts.DEFAULT_FOR_MEDIA.get(inner)
        return default if default in ts.FRAME_TARGETS else None
    if wanted is not None:
        if wanted in (stored, given) and _admits(inner, ts.frame_media_type(wanted)):
            return given
        if wanted in ts.FRAME_TARGETS and _admits(inner, ts.frame_media_type(wanted)):
            return wanted
        return None
    if "*" in inner:
        return given if _admits(inner, stored_media) else None
    if inner == stored_media:
        return given
    default = ts.DEFAULT_FOR_MEDIA.get(inner)
    return default if default in ts.FRAME_TARGETS else None


def frame_representation(ranges: list[MediaRange], stored: str, single_allowed: bool) -> Representation:
    """How to give frames (or pixel data): multipart or single part, and in which transfer syntax."""
    for media_range in ranges:
        essence = media_range.essence
        if essence in ("multipart/related", "multipart/*"):
            inner, params = _inner(media_range, OCTET)
            kind = "multipart"
        elif essence == "*/*":
            inner, params, kind = "*/*", dict(media_range.params), "multipart"
        elif single_allowed and (essence == OCTET or media_range.type == "image"):
            inner, params, kind = essence, dict(media_range.params), "single"
        else:
            continue
        target = _frame_target(inner, params.get("transfer-syntax"), stored)
        if target is not None:
            return Representation(kind, target)
    given = ts.EXPLICIT_LE if ts.is_native(stored) else stored
    raise HTTPProblem(
        406,
        f'the frames can be given as multipart/related; type="{ts.frame_media_type(given)}"; '
        f"transfer-syntax={given} (as stored), or transcoded to one of {', '.join(ts.FRAME_TARGETS)}",
    )
