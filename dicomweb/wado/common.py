"""What the WADO routes share: UIDs from the path, 404 messages, multipart bodies of ready parts."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..dicom.uids import is_valid_uid
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from .lookup import ImageInstance, image_instance


def uids(request: Request) -> tuple[str, str | None, str | None]:
    params = request.path_params
    study, series, sop = params["study"], params.get("series"), params.get("instance")
    for what, value in (("Study", study), ("Series", series), ("SOP", sop)):
        if value is not None and not is_valid_uid(value):
            raise HTTPProblem(400, f"{what} Instance UID {value!r} is not a valid UID")
    return study, series, sop


def not_found(study: str, series: str | None, sop: str | None) -> HTTPProblem:
    if sop is not None:
        return HTTPProblem(404, f"instance {sop} of series {series} in study {study} is not in the archive")
    if series is not None:
        return HTTPProblem(404, f"series {series} of study {study} is not in the archive")
    return HTTPProblem(404, f"study {study} is not in the archive")


async def one_image(request: Request) -> ImageInstance:
    archive: Archive = request.app.state.archive
    study, series, sop = uids(request)
    assert series is not None and sop is not None
    found = await anyio.to_thread.run_sync(image_instance, archive.engine, study, series, sop)
    if found is None:
        raise not_found(study, series, sop)
    return found


def multipart_body(parts: Sequence[tuple[list[tuple[str, str]], bytes | bytearray]]) -> tuple[str, bytes]:
    """A whole multipart/related body of parts already in memory; returns (boundary, body)."""
    boundary = new_boundary()
    chunks: list[bytes | bytearray] = []
    for index, (headers, data) in enumerate(parts):
        chunks.append(part_head(boundary, headers, first=index == 0))
        chunks.append(data)
    chunks.append(closing(boundary))
    return boundary, b"".join(chunks)


def with_headers(response: Response, headers: dict[str, str]) -> Response:
    for name, value in headers.items():
        response.headers[name] = value
    return response
