"""Routes: ``/rendered`` and ``/thumbnail`` of a study, series, instance or frames (PS3.18 10.4.1.1.3).

What a request gets:
- instance: one frame (the first) as image/jpeg or image/png; every frame with Accept
  ``multipart/related; type="image/jpeg"``; the frames as a cine with image/gif or video/mp4.
- frames: one frame as an image; several as multipart/related, or as a cine with image/gif or video/mp4.
- series: every frame of every image as multipart/related, or one cine of the series.
- study: every frame as multipart/related, or one cine per series as multipart/related.
- thumbnail: one image (fitted into ``thumbnail_size`` unless ``viewport`` is given) of the representative
  frame: the middle frame of an instance, the middle image of a series, of the first series of a study.
Non-image objects (SR, waveforms, no pixel data) get 406; a frame number beyond the instance gets 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..archive import Archive
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from ..services.retrieve import StoredInstance
from ..stow.routes import base_url
from ..wado.common import uids
from ..wado.frames import parse_frame_list
from .params import ANIMATED, RENDERED_TYPES, THUMBNAIL_TYPES, Choice, RenderParams, choose_media, parse_params
from .service import FrameRef, Renderer, all_frames, is_image, representative

CACHE_CONTROL = "private, no-cache"  # revalidate by ETag: a deleted study must not linger in a browser


def renderer(request: Request) -> Renderer:
    """One renderer (caches) per application and archive."""
    archive: Archive = request.app.state.archive
    found: Renderer | None = getattr(request.app.state, "renderer", None)
    if found is None or found.archive is not archive:
        found = Renderer(archive)
        request.app.state.renderer = found
    return found


async def _instances(request: Request) -> list[StoredInstance]:
    archive: Archive = request.app.state.archive
    study, series, sop = uids(request)
    found = await anyio.to_thread.run_sync(archive.retrieve.instances, study, series, sop)
    if not found:
        where = f"instance {sop}" if sop else f"series {series}" if series else f"study {study}"
        raise HTTPProblem(404, f"{where} is not in the archive")
    if not any(is_image(i) for i in found):
        kinds = ", ".join(sorted({i.sop_class_uid for i in found}))
        raise HTTPProblem(406, f"the resource holds no images (SOP Class {kinds}); rendered media types need "
                               "pixel data")
    return found


def _frame_refs(request: Request, instance: StoredInstance) -> list[FrameRef]:
    frames = max(1, instance.number_of_frames)
    numbers = parse_frame_list(request.path_params["frames"])
    beyond = [n for n in numbers if n > frames]
    if beyond:
        raise HTTPProblem(400, f"instance {instance.sop_instance_uid} has {frames} frame(s); there is no frame "
                               f"{', '.join(map(str, beyond))}")
    return [FrameRef(instance, n - 1) for n in numbers]


def _location(base: str, ref: FrameRef) -> str:
    i = ref.instance
    return (f"{base}/studies/{i.study_instance_uid}/series/{i.series_instance_uid}/instances/"
            f"{i.sop_instance_uid}/frames/{ref.number}/rendered")


def _etag(key: str) -> str:
    return f'"{key[:40]}"'


async def _single(request: Request, key: str, media_type: str, produce: Callable[[], bytes]) -> Response:
    """A one-part answer with an ETag; If-None-Match that names it gets 304 without rendering."""
    etag = _etag(key)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Accept"}
    wanted = request.headers.get("if-none-match", "")
    if wanted.strip() == "*" or etag in (t.strip() for t in wanted.split(",")):
        return Response(status_code=304, headers=headers)
    body = await anyio.to_thread.run_sync(produce)
    return Response(body, media_type=media_type, headers=headers)


def _multipart(request: Request, parts: Sequence[tuple[str, Callable[[], bytes]]], media_type: str) -> Response:
    """Parts rendered one at a time as they are sent: memory stays at one part, the first byte comes early."""
    boundary = new_boundary()

    async def body() -> AsyncIterator[bytes]:
        for n, (location, produce) in enumerate(parts):
            data = await anyio.to_thread.run_sync(produce)
            yield part_head(boundary, [("Content-Type", media_type), ("Content-Location", location)], first=n == 0)
            yield data
        yield closing(boundary)

    return StreamingResponse(body(), media_type=f'multipart/related; type="{media_type}"; boundary={boundary}',
                             headers={"Vary": "Accept"})


def _prepare(request: Request, offers: tuple[str, ...]) -> tuple[RenderParams, Choice]:
    params = parse_params(request.query_params)
    choice = choose_media(request.headers.get("accept"), request.query_params.get("accept"), offers)
    return params, choice


async def rendered(request: Request) -> Response:
    params, choice = _prepare(request, RENDERED_TYPES)
    instances = await _instances(request)
    service = renderer(request)
    base = base_url(request)
    media = choice.media_type
    path = request.path_params

    if "frames" in path:
        refs = _frame_refs(request, instances[0])
    elif "instance" in path:
        inst = instances[0]
        every = [FrameRef(inst, n) for n in range(max(1, inst.number_of_frames))]
        refs = every if media in ANIMATED or choice.multipart else every[:1]
    else:
        refs = all_frames(instances)

    if media in ANIMATED:
        if "series" in path or "instance" in path:
            key = service.key("cine", refs, media, params)
            return await _single(request, key, media, lambda: service.cine(refs, media, params))
        by_series: dict[str, list[FrameRef]] = {}
        for ref in refs:
            by_series.setdefault(ref.instance.series_instance_uid, []).append(ref)
        parts = [
            (f"{base}/studies/{group[0].instance.study_instance_uid}/series/{uid}/rendered",
             partial(service.cine, group, media, params))
            for uid, group in by_series.items()
        ]
        return _multipart(request, parts, media)

    if len(refs) == 1 and ("instance" in path) and not choice.multipart:
        ref = refs[0]
        key = service.key("still", [ref], media, params)
        return await _single(request, key, media, lambda: service.still(ref, media, params))
    parts = [(_location(base, ref), partial(service.still, ref, media, params)) for ref in refs]
    return _multipart(request, parts, media)


async def thumbnail(request: Request) -> Response:
    params, choice = _prepare(request, THUMBNAIL_TYPES)
    instances = await _instances(request)
    service = renderer(request)
    media = choice.media_type
    if "frames" in request.path_params:
        ref = _frame_refs(request, instances[0])[0]
    else:
        found = representative(instances)
        assert found is not None  # _instances made sure there is an image
        ref = found
    key = service.key("still", [ref], media, service.thumbnail_params(params))
    return await _single(request, key, media, lambda: service.thumbnail(ref, media, params))
