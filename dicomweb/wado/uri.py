"""WADO-URI (PS3.18 9): ``/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=&contentType=``.

``application/dicom`` gives the stored file (or transcoded with ``transferSyntax``); ``image/jpeg`` (the
default for images) gives one frame (``frameNumber``, default 1) as JPEG, the first frame of a multi-frame
image, rescaled to 8 bits over its own range when the stored values are wider. The Accept header is
ignored: OHIF sends a multipart one with contentType=application/dicom (REQUESTS.md 4).
"""

from __future__ import annotations

import anyio
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..dicom.uids import is_valid_uid
from ..http.problems import HTTPProblem
from ..transcode import NotTranscodable, PixelDescription, decode_frame, encode_frame, transcode_instance
from ..transcode import syntaxes as ts
from .caching import entity_tag, head_or, not_modified, not_modified_response, validator_headers
from .lookup import ImageInstance, image_instance
from .pixels import read_frames, read_header

JPEG = "image/jpeg"
DICOM = "application/dicom"


def _param(request: Request, name: str, required: bool = True) -> str | None:
    value = request.query_params.get(name)
    if value is None and required:
        raise HTTPProblem(400, f"WADO-URI needs the {name} parameter")
    return value


def _jpeg(archive: Archive, image: ImageInstance, frame: int) -> bytes:
    inst = image.stored
    pixels = PixelDescription.of(read_header(archive.retrieve, inst))
    (data,) = read_frames(archive.retrieve, inst, image.bits_allocated, [frame])
    source = ts.EXPLICIT_LE if ts.is_native(inst.transfer_syntax_uid) else inst.transfer_syntax_uid
    array = decode_frame(source, data, pixels)
    if array.dtype != np.uint8:
        low, high = float(array.min()), float(array.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        array = ((array.astype(np.float32) - low) * scale).clip(0, 255).astype(np.uint8)
    if pixels.photometric_interpretation == "MONOCHROME1":
        array = 255 - array
    return encode_frame(array, ts.JPEG_BASELINE, pixels)


def _dicom(archive: Archive, image: ImageInstance, target: str | None) -> bytes:
    inst = image.stored
    if target in (None, "*", inst.transfer_syntax_uid):
        return archive.retrieve.read_range(inst, 0, inst.size)
    with archive.retrieve.open(inst) as fp:
        return transcode_instance(fp, inst.transfer_syntax_uid, target)


async def wado_uri(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    if (_param(request, "requestType") or "").upper() != "WADO":
        raise HTTPProblem(400, "requestType must be WADO")
    uids = [_param(request, n) or "" for n in ("studyUID", "seriesUID", "objectUID")]
    for name, value in zip(("studyUID", "seriesUID", "objectUID"), uids, strict=True):
        if not is_valid_uid(value):
            raise HTTPProblem(400, f"{name}={value!r} is not a valid UID")
    content_types = [c.strip().split(";")[0].lower() for c in (_param(request, "contentType", False) or "").split(",")]
    study, series, sop = uids
    image = await anyio.to_thread.run_sync(image_instance, archive.engine, study, series, sop)
    if image is None:
        raise HTTPProblem(404, f"instance {uids[2]} of series {uids[1]} in study {uids[0]} is not in the archive")
    inst = image.stored
    wanted = next((c for c in content_types if c in (DICOM, JPEG, "image/*", "*/*")), None)
    if wanted is None and content_types != [""]:
        raise HTTPProblem(406, f"WADO-URI gives contentType {DICOM} or {JPEG}")
    if wanted in (None, "image/*", "*/*"):
        wanted = JPEG if inst.pixel_offset is not None or inst.frame_ranges_json else DICOM
    target = _param(request, "transferSyntax", False)
    if target not in (None, "*", inst.transfer_syntax_uid) and target not in ts.INSTANCE_TARGETS:
        raise HTTPProblem(
            406, f"transferSyntax {target} cannot be given; the archive writes {', '.join(ts.INSTANCE_TARGETS)}")
    frame_text = _param(request, "frameNumber", False) or "1"
    if not frame_text.isdigit() or not 1 <= int(frame_text) <= inst.number_of_frames:
        raise HTTPProblem(
            400, f"frameNumber={frame_text!r} is not a frame of this instance (1..{inst.number_of_frames})")

    etag = entity_tag(inst.sha256, "wado-uri", wanted, target or "*", frame_text)
    headers = validator_headers(etag, inst.created_at)
    if not_modified(request, etag, inst.created_at):
        return not_modified_response(headers)
    try:
        if wanted == JPEG:
            if inst.pixel_offset is None:
                raise HTTPProblem(406, f"instance {inst.sop_instance_uid} has no image; ask for contentType={DICOM}")
            body = await anyio.to_thread.run_sync(_jpeg, archive, image, int(frame_text))
            media = JPEG
        else:
            body = await anyio.to_thread.run_sync(_dicom, archive, image, target)
            media = DICOM
    except NotTranscodable as exc:
        raise HTTPProblem(406, f"the instance cannot be given as asked: {exc}") from None
    return head_or(request, Response(body, media_type=media, headers=headers), len(body))
