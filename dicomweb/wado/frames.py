"""WADO-RS frames (PS3.18 10.4.1.1.4): ``.../instances/{sop}/frames/1,2,5``.

Each frame is one range read at the offsets indexed at ingest, sent as stored (``transfer-syntax=*`` or the
stored encoding asked for), or transcoded when the Accept header asks for another encoding.
"""

from __future__ import annotations

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..http.problems import HTTPProblem
from ..transcode import NotTranscodable
from ..transcode import syntaxes as ts
from .caching import entity_tag, head_or, not_modified, not_modified_response, validator_headers
from .common import multipart_body, one_image
from .negotiate import accept_ranges, frame_representation
from .pixels import frames_in

MAX_FRAME_LIST = 10_000


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


async def retrieve_frames(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    ranges = accept_ranges(request)
    numbers = parse_frame_list(request.path_params["frames"])
    image = await one_image(request)
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
    media = ts.frame_media_type(target)
    etag = entity_tag(inst.sha256, "frames", ",".join(map(str, numbers)), target, choice.kind)
    headers = validator_headers(etag, inst.created_at)
    if not_modified(request, etag, inst.created_at):
        return not_modified_response(headers)
    try:
        frames = await anyio.to_thread.run_sync(
            frames_in, archive.retrieve, inst, image.bits_allocated, numbers, target)
    except NotTranscodable as exc:
        raise HTTPProblem(406, f"the frames cannot be given as {target}: {exc}") from None
    part_type = f"{media}; transfer-syntax={target}"
    if choice.kind == "single":
        (frame,) = frames
        response = Response(frame, media_type=part_type, headers=headers)
        return head_or(request, response, len(frame))
    base = str(request.url).split("?", 1)[0].rsplit("/frames/", 1)[0]
    boundary, body = multipart_body([
        ([("Content-Type", part_type), ("Content-Location", f"{base}/frames/{n}")], frame)
        for n, frame in zip(numbers, frames, strict=True)
    ])
    response = Response(
        body, headers=headers,
        media_type=f'multipart/related; type="{media}"; transfer-syntax={target}; boundary={boundary}')
    return head_or(request, response, len(body))
