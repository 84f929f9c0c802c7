"""WADO-RS retrieval of instances and metadata, and DELETE, at study, series and instance level."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..archive import Archive
from ..dicom.json_model import with_base
from ..dicom.uids import is_valid_uid
from ..http.media import MediaRange, parse_accept
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from ..services.retrieve import CHUNK, StoredInstance
from ..stow.routes import base_url

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"


def _uids(request: Request) -> tuple[str, str | None, str | None]:
    params = request.path_params
    study, series, sop = params["study"], params.get("series"), params.get("instance")
    for what, value in (("Study", study), ("Series", series), ("SOP", sop)):
        if value is not None and not is_valid_uid(value):
            raise HTTPProblem(400, f"{what} Instance UID {value!r} is not a valid UID")
    return study, series, sop


def _not_found(study: str, series: str | None, sop: str | None) -> HTTPProblem:
    if sop is not None:
        return HTTPProblem(404, f"instance {sop} of series {series} in study {study} is not in the archive")
    if series is not None:
        return HTTPProblem(404, f"series {series} of study {study} is not in the archive")
    return HTTPProblem(404, f"study {study} is not in the archive")


async def _instances(request: Request) -> list[StoredInstance]:
    archive: Archive = request.app.state.archive
    study, series, sop = _uids(request)
    found = await anyio.to_thread.run_sync(archive.retrieve.instances, study, series, sop)
    if not found:
        raise _not_found(study, series, sop)
    return found


def _wants_single_part(ranges: list[MediaRange], request: Request) -> bool:
    """``Accept: application/dicom`` on an instance: the file itself, as curl users expect."""
    return "instance" in request.path_params and bool(ranges) and ranges[0].essence == DICOM


def _check_syntax(ranges: list[MediaRange], instances: list[StoredInstance]) -> None:
    """Stored bytes are given as they are; a different transfer syntax asked for is not (yet) possible."""
    for media_range in ranges:
        if media_range.essence in ("*/*", "multipart/related", "multipart/*", DICOM):
            kind = media_range.params.get("type", DICOM).lower() if media_range.type == "multipart" else DICOM
            if kind not in (DICOM, "*/*", "application/*"):
                continue
            wanted = media_range.params.get("transfer-syntax", "*")
            if wanted == "*" or all(i.transfer_syntax_uid == wanted for i in instances):
                return
    stored = sorted({i.transfer_syntax_uid for i in instances})
    raise HTTPProblem(
        406,
        "the instances can be given as multipart/related; type=\"application/dicom\" in their stored "
        f"transfer syntax ({', '.join(stored)}) or with transfer-syntax=*",
    )


async def _file_chunks(archive: Archive, instance: StoredInstance) -> AsyncIterator[bytes]:
    if instance.size <= CHUNK:  # one thread hop for the common small instance
        yield await anyio.to_thread.run_sync(
            archive.retrieve.read_range, instance, 0, instance.size
        )
        return
    fp = await anyio.to_thread.run_sync(archive.retrieve.open, instance)
    try:
        while chunk := await anyio.to_thread.run_sync(fp.read, CHUNK):
            yield chunk
    finally:
        fp.close()


async def retrieve_instances(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    ranges = parse_accept(request.headers.get("accept"))
    instances = await _instances(request)
    _check_syntax(ranges, instances)
    base = base_url(request)

    if _wants_single_part(ranges, request):
        (instance,) = instances
        return StreamingResponse(
            _file_chunks(archive, instance),
            media_type=f"{DICOM}; transfer-syntax={instance.transfer_syntax_uid}",
            headers={"Content-Length": str(instance.size), "ETag": f'"{instance.sha256}"'},
        )

    boundary = new_boundary()
    heads = [
        part_head(
            boundary,
            [
                ("Content-Type", f"{DICOM}; transfer-syntax={i.transfer_syntax_uid}"),
                ("Content-Location", f"{base}/studies/{i.study_instance_uid}/series/{i.series_instance_uid}"
                                     f"/instances/{i.sop_instance_uid}"),
            ],
            first=index == 0,
        )
        for index, i in enumerate(instances)
    ]
    tail = closing(boundary)
    length = sum(len(h) for h in heads) + sum(i.size for i in instances) + len(tail)

    async def body() -> AsyncIterator[bytes]:
        for head, instance in zip(heads, instances, strict=True):
            yield head
            async for chunk in _file_chunks(archive, instance):
                yield chunk
        yield tail

    return StreamingResponse(
        body(),
        media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}',
        headers={"Content-Length": str(length)},
    )


async def retrieve_metadata(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    ranges = parse_accept(request.headers.get("accept"))
    if not any(r.matches(DICOM_JSON) or r.matches("application/json") for r in ranges):
        raise HTTPProblem(406, f"metadata is given as {DICOM_JSON}")
    study, series, sop = _uids(request)
    texts = await anyio.to_thread.run_sync(archive.retrieve.metadata, study, series, sop)
    if not texts:
        raise _not_found(study, series, sop)
    body = with_base("[" + ",".join(texts) + "]", base_url(request))
    return Response(body, media_type=DICOM_JSON)


async def delete_resource(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    study, series, sop = _uids(request)
    removed = await anyio.to_thread.run_sync(archive.removal.delete, study, series, sop)
    if not removed:
        raise _not_found(study, series, sop)
    return Response(status_code=204)
