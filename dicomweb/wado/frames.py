"""WADO-RS frames (PS3.18 10.4.1.1.4): ``.../instances/{sop}/frames/1,2,5``.

Each frame is one range read at the offsets indexed at ingest, sent as stored (``transfer-syntax=*`` or the
stored encoding asked for), or transcoded when the Accept header asks for another encoding.

A frame request is the hottest path of a viewer scrolling a stack, so its blocking part (the index lookup,
the checks that need the instance, the range reads) runs as one step in one worker thread: one thread hop
per request instead of one per stage. Instances asked for again within moments are not looked up again
(``locations``). A conditional request that matches answers 304 from that step without touching storage.

Even that hop costs more than the read when the instance was looked up moments ago and its frames are in the
page cache (a viewer scrolling back and forth): such a request is answered on the event loop, by reads that
refuse rather than wait (``backends.cached_read``), and goes to the thread only when one refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..backends.tiers import ObjectMissing, StorageError
from ..http.media import MediaRange
from ..http.problems import HTTPProblem
from ..transcode import NotTranscodable
from ..transcode import syntaxes as ts
from .caching import entity_tag, head_or, not_modified, not_modified_response, validator_headers
from .common import multipart_body, not_found, uids
from .locations import InstanceLocations
from .lookup import ImageInstance, image_instance
from .negotiate import Representation, accept_ranges, frame_representation
from .pixels import cached_frames, frames_in

MAX_FRAME_LIST = 10_000
INLINE_MAX_BYTES = 4 << 20  # copied on the event loop at most per request (about a millisecond)


def parse_frame_list(text: str) -> list[int]:
    """``1,2,5`` as numbers; 400 for anything that is not a list of positive integers."""
    items = text.split(",")
    if len(items) > MAX_FRAME_LIST:
        raise HTTPProblem(400, f"at most {MAX_FRAME_LIST} frames can be asked for at once")
    numbers = []
    for item in items:
        item = item.strip()
        # ASCII only: str.isdigit() admits digits like "²" that int() refuses; 9 digits bound the value.
        if not (item.isascii() and item.isdigit()) or len(item) > 9 or int(item) < 1:
            raise HTTPProblem(400, f"frame list {text!r}: {item!r} is not a frame number (frames count from 1)")
        numbers.append(int(item))
    return numbers


@dataclass(frozen=True)
class _Answer:
    image: ImageInstance
    choice: Representation
    target: str
    etag: str
    frames: Sequence[bytes | bytearray] | None  # None: the client's copy is current (304)


@dataclass(frozen=True)
class _Checked:
    """A frame request checked against its instance: what goes out, and the entity tag of that."""

    choice: Representation
    target: str
    etag: str


def _checked(image: ImageInstance, numbers: list[int], ranges: list[MediaRange]) -> _Checked:
    inst = image.stored
    if inst.pixel_offset is None and inst.transfer_syntax_uid != ts.DEFLATED_LE:  # deflated: parsed per request
        raise HTTPProblem(404, f"instance {inst.sop_instance_uid} has no pixel data, so no frames")
    missing = [n for n in numbers if n > inst.number_of_frames]
    if missing:
        raise HTTPProblem(
            404, f"instance {inst.sop_instance_uid} has {inst.number_of_frames} frame(s); "
                 f"there is no frame {', '.join(map(str, missing))}")
    choice = frame_representation(ranges, inst.transfer_syntax_uid, single_allowed=len(numbers) == 1)
    target = choice.target or inst.transfer_syntax_uid
    return _Checked(choice, target, entity_tag(inst.sha256, "frames", ",".join(map(str, numbers)), target,
                                               choice.kind))


def _answer_inline(
    archive: Archive, locations: InstanceLocations, names: tuple[str, str, str], numbers: list[int],
    ranges: list[MediaRange], unchanged: Callable[[str, datetime], bool],
) -> _Answer | None:
    """The answer without leaving the event loop, when nothing of it can block: the instance was looked up
    moments ago, and its frames go out as stored and are in the page cache (or the client's copy is current).
    None sends the request to the thread path, which also reports every storage problem."""
    image = locations.get(names)
    if image is None:
        return None
    checked = _checked(image, numbers, ranges)
    if unchanged(checked.etag, image.stored.created_at):
        return _Answer(image, checked.choice, checked.target, checked.etag, None)
    try:
        frames = cached_frames(archive.retrieve, image.stored, numbers, checked.target, INLINE_MAX_BYTES)
    except StorageError:
        return None
    if frames is None:
        return None
    return _Answer(image, checked.choice, checked.target, checked.etag, frames)


def _answer(
    archive: Archive, locations: InstanceLocations, names: tuple[str, str, str], numbers: list[int],
    ranges: list[MediaRange], unchanged: Callable[[str, datetime], bool],
) -> _Answer:
    """Everything blocking a frame request needs, in order: the instance, the checks, the negotiation, the
    validators, then (unless ``unchanged``) the frames. Runs in a worker thread."""
    remembered = locations.get(names)
    if remembered is not None:
        try:
            return _answer_for(archive, remembered, numbers, ranges, unchanged)
        except ObjectMissing:
            locations.forget(names)  # deleted, replaced or moved since: ask the index
    image = image_instance(archive.engine, *names)
    if image is None:
        raise not_found(*names)
    locations.put(names, image)
    return _answer_for(archive, image, numbers, ranges, unchanged)


def _answer_for(
    archive: Archive, image: ImageInstance, numbers: list[int], ranges: list[MediaRange],
    unchanged: Callable[[str, datetime], bool],
) -> _Answer:
    checked = _checked(image, numbers, ranges)
    if unchanged(checked.etag, image.stored.created_at):
        return _Answer(image, checked.choice, checked.target, checked.etag, None)
    try:
        frames = frames_in(archive.retrieve, image.stored, image.bits_allocated, numbers, checked.target)
    except NotTranscodable as exc:
        raise HTTPProblem(406, f"the frames cannot be given as {checked.target}: {exc}") from None
    return _Answer(image, checked.choice, checked.target, checked.etag, frames)


def instance_locations(request: Request) -> InstanceLocations:
    """The app's memory of instances looked up lately (made on first use)."""
    locations: InstanceLocations | None = getattr(request.app.state, "wado_locations", None)
    if locations is None:
        locations = request.app.state.wado_locations = InstanceLocations()
    return locations


async def retrieve_frames(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    ranges = accept_ranges(request)
    numbers = parse_frame_list(request.path_params["frames"])
    study, series, sop = uids(request)
    assert series is not None and sop is not None

    def unchanged(etag: str, last_modified: datetime) -> bool:
        return not_modified(request, etag, last_modified)

    locations = instance_locations(request)
    names = (study, series, sop)
    answer = _answer_inline(archive, locations, names, numbers, ranges, unchanged)
    if answer is None:
        answer = await anyio.to_thread.run_sync(_answer, archive, locations, names, numbers, ranges, unchanged)
    headers = validator_headers(answer.etag, answer.image.stored.created_at)
    if answer.frames is None:
        return not_modified_response(headers)
    target = answer.target
    part_type = f"{ts.frame_media_type(target)}; transfer-syntax={target}"
    if answer.choice.kind == "single":
        (frame,) = answer.frames
        response = Response(memoryview(frame), media_type=part_type, headers=headers)
        return head_or(request, response, len(frame))
    base = str(request.url).split("?", 1)[0].rsplit("/frames/", 1)[0]
    boundary, body = multipart_body([
        ([("Content-Type", part_type), ("Content-Location", f"{base}/frames/{n}")], frame)
        for n, frame in zip(numbers, answer.frames, strict=True)
    ])
    response = Response(
        body, headers=headers,
        media_type=f'multipart/related; type="{ts.frame_media_type(target)}"; transfer-syntax={target}; '
                   f"boundary={boundary}")
    return head_or(request, response, len(body))
