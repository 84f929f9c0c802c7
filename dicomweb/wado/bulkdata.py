"""WADO-RS bulk data (PS3.18 10.4.1.1.5): every BulkDataURI the metadata gives, Pixel Data included.

URIs are ``.../instances/{sop}/bulkdata/{tag}`` or, inside sequences, ``{tag}/{item}/.../{tag}`` (items
count from 1), as ``dicom.json_model`` writes them. Pixel Data is read at its indexed offset; other values
come from the stored header. Binary values go out little endian. A single-part ``application/octet-stream``
answer honours a ``Range`` header (RFC 9110 14): 206 with ``Content-Range``, 416 when unsatisfiable.
"""

from __future__ import annotations

import re

import anyio
from pydicom import dcmread
from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..http.problems import HTTPProblem
from ..services.retrieve import RetrieveService, StoredInstance
from ..transcode import NotTranscodable
from ..transcode import syntaxes as ts
from .caching import entity_tag, head_or, not_modified, not_modified_response, validator_headers
from .common import multipart_body, one_image
from .lookup import ImageInstance
from .negotiate import OCTET, accept_ranges, frame_representation
from .pixels import frames_in, read_frames, swap_to_little

PIXEL_KEYS = {"7FE00010", "7FE00008", "7FE00009"}
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_SWAP_WIDTH = {"OW": 16, "OL": 32, "OF": 32, "OD": 64, "OV": 64}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_path(path: str) -> list[str | int]:
    """``00540016/1/00181072`` as [tag, item, tag]; 400 when it is not such a path."""
    segments = path.strip("/").split("/")
    if len(segments) % 2 == 0:
        raise HTTPProblem(400, f"bulk data path {path!r} must end with a tag (tag/item/tag...)")
    parsed: list[str | int] = []
    for index, segment in enumerate(segments):
        if index % 2 == 0:
            if not _TAG.match(segment):
                raise HTTPProblem(400, f"bulk data path {path!r}: {segment!r} is not a tag (8 hex digits)")
            parsed.append(segment.upper())
        else:
            if not segment.isdigit() or int(segment) < 1:
                raise HTTPProblem(400, f"bulk data path {path!r}: {segment!r} is not an item number (from 1)")
            parsed.append(int(segment))
    return parsed


def _element_value(retrieve: RetrieveService, inst: StoredInstance, path: list[str | int]) -> bytes | None:
    """A binary value from the stored file, little endian; None when the path names nothing binary."""
    last = str(path[-1])
    with retrieve.open(inst) as fp:
        ds: Dataset = dcmread(fp, stop_before_pixels=last not in PIXEL_KEYS or len(path) > 1)
    node: Dataset = ds
    for position in range(0, len(path) - 1, 2):
        tag, item = int(str(path[position]), 16), int(path[position + 1])
        if tag not in node or node[tag].VR != "SQ" or item > len(node[tag].value):
            return None
        node = node[tag].value[item - 1]
    tag = int(last, 16)
    if tag not in node:
        return None
    element = node[tag]
    value = element.value
    if not isinstance(value, bytes | bytearray):
        return None
    data = bytes(value)
    if inst.transfer_syntax_uid == ts.EXPLICIT_BE and element.VR in _SWAP_WIDTH:
        data = swap_to_little(data, _SWAP_WIDTH[element.VR])
    return data


def _native_pixels(retrieve: RetrieveService, image: ImageInstance) -> bytes:
    inst = image.stored
    assert inst.pixel_offset is not None and inst.pixel_length is not None
    if inst.transfer_syntax_uid == ts.EXPLICIT_BE and inst.pixel_tag == 0x7FE00010:
        frames = read_frames(retrieve, inst, image.bits_allocated, list(range(1, inst.number_of_frames + 1)))
        return b"".join(frames)
    data = retrieve.read_range(inst, inst.pixel_offset, inst.pixel_length)
    if inst.transfer_syntax_uid == ts.EXPLICIT_BE:
        data = swap_to_little(data, {"OF": 32, "OD": 64}.get(inst.pixel_vr, 16))
    return data


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range asked for as (start, end exclusive); None: the whole value. 416 when unsatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or match.group(1) == match.group(2) == "":
        return None  # several ranges or another unit: the whole value (RFC 9110 14.2 allows ignoring)
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise HTTPProblem(416, f"the range {header} is outside the value's {size} bytes",
                          headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def retrieve_bulkdata(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    ranges = accept_ranges(request)
    path = parse_path(request.path_params["path"])
    image = await one_image(request)
    inst = image.stored
    url = str(request.url).split("?", 1)[0]
    is_pixels = len(path) == 1 and inst.pixel_tag is not None and path[0] == f"{inst.pixel_tag:08X}"

    target = ts.EXPLICIT_LE
    kind = "single" if ranges and ranges[0].essence == OCTET else "multipart"
    if is_pixels:
        choice = frame_representation(ranges, inst.transfer_syntax_uid, single_allowed=True)
        target, kind = choice.target or ts.EXPLICIT_LE, choice.kind
    elif not any(r.matches(OCTET) or r.essence in ("multipart/related", "multipart/*") for r in ranges):
        raise HTTPProblem(406, "bulk data is given as application/octet-stream or "
                               'multipart/related; type="application/octet-stream"')
    etag = entity_tag(inst.sha256, "bulkdata", "/".join(map(str, path)), target, kind)
    headers = validator_headers(etag, inst.created_at)
    if not_modified(request, etag, inst.created_at):
        return not_modified_response(headers)

    values: list[bytes]
    if is_pixels and (not ts.is_native(inst.transfer_syntax_uid) or target != ts.EXPLICIT_LE):
        numbers = list(range(1, inst.number_of_frames + 1))
        try:
            values = await anyio.to_thread.run_sync(
                frames_in, archive.retrieve, inst, image.bits_allocated, numbers, target)
        except NotTranscodable as exc:
            raise HTTPProblem(406, f"the pixel data cannot be given as {target}: {exc}") from None
        if target == ts.EXPLICIT_LE:
            values = [b"".join(values)]  # uncompressed pixel data is one value, all frames in a row
    elif is_pixels:
        values = [await anyio.to_thread.run_sync(_native_pixels, archive.retrieve, image)]
    else:
        value = await anyio.to_thread.run_sync(_element_value, archive.retrieve, inst, path)
        if value is None:
            raise HTTPProblem(404, f"instance {inst.sop_instance_uid} has no bulk data at {'/'.join(map(str, path))}")
        values = [value]

    media = ts.frame_media_type(target) if is_pixels else OCTET
    part_type = f"{media}; transfer-syntax={target}" if is_pixels else OCTET
    if kind == "single" and len(values) == 1:
        data = values[0]
        headers["Accept-Ranges"] = "bytes"
        span = _byte_range(request.headers.get("range"), len(data))
        if span is not None:
            start, end = span
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            response = Response(data[start:end], status_code=206, media_type=part_type, headers=headers)
            return head_or(request, response, end - start)
        return head_or(request, Response(data, media_type=part_type, headers=headers), len(data))
    boundary, body = multipart_body([([("Content-Type", part_type), ("Content-Location", url)], v) for v in values])
    response = Response(body, media_type=f'multipart/related; type="{media}"; boundary={boundary}', headers=headers)
    return head_or(request, response, len(body))
