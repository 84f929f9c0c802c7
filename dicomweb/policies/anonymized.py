"""Answers for a study the principal sees de-identified only (PS3.15 Annex E Basic Profile, on the fly).

Headers are de-identified (metadata, Part 10 instances); pixel answers (frames, Pixel Data bulk data,
rendered images without annotation) pass as they are, except from series flagged with burned-in annotation,
which are withheld: their pixels may show what the header profile removed. Every UID in an answer is a
pseudonym the guard resolves back on the next request.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, BinaryIO

import anyio
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..archive import Archive
from ..dicom.json_model import dumps, with_base
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from ..qido.routes import xml_body
from ..services.query import T_SERIES, T_STUDY
from ..services.retrieve import CHUNK, StoredInstance
from ..stow.routes import base_url
from ..wado.common import not_found
from ..wado.negotiate import accept_ranges, instance_representation
from ..wado.routes import _metadata_form
from ..wado.zip_archive import zip_response
from .engine import Decision
from .http import set_query

Endpoint = Callable[[Request], Awaitable[Response]]
Given = tuple[str, str | None, str | None]  # the UIDs as the request named them (pseudonyms)
DICOM = "application/dicom"
PIXEL_TAGS = {"7FE00010", "7FE00008", "7FE00009"}
SPOOL_BYTES = 16 * 1024 * 1024


def _burned_in_series(archive: Archive, study: str) -> set[str]:
    stmt = select(T_SERIES.c.series_instance_uid).select_from(
        T_SERIES.join(T_STUDY, T_SERIES.c.study_fk == T_STUDY.c.id)
    ).where(T_STUDY.c.study_instance_uid == study, T_SERIES.c.burned_in_annotation.is_(True))
    with archive.engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def _without_annotation(request: Request) -> None:
    """Rendered answers for an anonymized view never burn patient identity into the image."""
    set_query(request, [(k, v) for k, v in request.query_params.multi_items() if k.lower() != "annotation"])


async def answer(
    kind: str, request: Request, endpoint: Endpoint, decision: Decision,
    given: Given,
) -> Response:
    archive: Archive = request.app.state.archive
    study = decision.study_uid
    params = request.query_params if kind == "wado-uri" else request.path_params
    series = params.get("seriesUID" if kind == "wado-uri" else "series")
    burned = await anyio.to_thread.run_sync(_burned_in_series, archive, study)
    if series is not None and series in burned:
        raise not_found(*given)
    if kind in ("rendered", "thumbnail") and series is None and burned:
        raise not_found(*given)  # a study-level image might come from a withheld series
    if kind in ("frames", "rendered", "thumbnail"):
        _without_annotation(request)
        return await endpoint(request)
    if kind == "bulkdata":
        if request.path_params.get("path", "").strip("/").upper() not in PIXEL_TAGS:
            raise not_found(*given)  # other bulk values are header attributes the profile may remove
        return await endpoint(request)
    if kind == "metadata":
        return await _metadata(request, archive, decision, given)
    if kind == "instances":
        return await _instances(request, archive, decision, burned, given)
    if kind == "wado-uri":
        content = (request.query_params.get("contentType") or "").split(";")[0].strip().lower()
        if content == DICOM:
            return await _wado_uri_dicom(request, archive, decision, given)
        _without_annotation(request)
        return await endpoint(request)
    raise HTTPProblem(403, "this answer is not available in an anonymized view")


def _deidentified_metadata(request: Request, decision: Decision, texts: list[str]) -> list[dict[str, Any]]:
    """Each instance's metadata de-identified; the pseudonyms in it are recorded in one batch."""
    base = base_url(request)
    return request.app.state.deid.json_many(  # type: ignore[no-any-return]
        [(json.loads(with_base(text, base)), decision.patient_key) for text in texts])


async def _metadata(request: Request, archive: Archive, decision: Decision, given: Given) -> Response:
    form = _metadata_form(accept_ranges(request))
    study, series, sop = decision.study_uid, request.path_params.get("series"), request.path_params.get("instance")
    texts = await anyio.to_thread.run_sync(lambda: archive.retrieve.metadata(study, series, sop,
                                                                             without_burned_in=True))
    if not texts:
        raise not_found(*given)
    datasets = await anyio.to_thread.run_sync(_deidentified_metadata, request, decision, texts)
    headers = {"Cache-Control": "private, no-store", "Vary": "Accept, Authorization"}
    if form == "json":
        return Response(dumps(datasets), media_type="application/dicom+json", headers=headers)
    boundary = new_boundary()
    return Response(xml_body(datasets, boundary), headers=headers,
                    media_type=f'multipart/related; type="application/dicom+xml"; boundary={boundary}')


def _deidentified_file(request: Request, archive: Archive, decision: Decision, inst: StoredInstance) -> BinaryIO:
    """The instance de-identified, spooled (memory up to a bound, then a temporary file)."""
    sink = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=str(archive.staging_dir))
    with archive.retrieve.open(inst) as source:
        request.app.state.deid.part10(source, sink, decision.patient_key)
    sink.seek(0)
    return sink  # type: ignore[return-value]


def _chunks(fp: BinaryIO) -> Iterator[bytes]:
    with fp:
        while chunk := fp.read(CHUNK):
            yield chunk


async def _instances(
    request: Request, archive: Archive, decision: Decision, burned: set[str],
    given: Given,
) -> Response:
    study, series, sop = decision.study_uid, request.path_params.get("series"), request.path_params.get("instance")
    found = await anyio.to_thread.run_sync(archive.retrieve.instances, study, series, sop)
    instances = [i for i in found if i.series_instance_uid not in burned]
    if not instances:
        raise not_found(*given)
    stored = {i.transfer_syntax_uid for i in instances}
    choice = instance_representation(accept_ranges(request), stored, single_allowed=sop is not None)
    if choice.target is not None and stored != {choice.target}:  # no transcoding of de-identified copies
        raise HTTPProblem(406, "an anonymized view gives instances in their stored transfer syntax only: "
                               f"{', '.join(sorted(stored))}")
    deid = request.app.state.deid
    headers = {"Cache-Control": "private, no-store", "Vary": "Accept, Authorization"}
    if choice.kind == "zip":
        def entry(inst: StoredInstance) -> tuple[str, BinaryIO]:
            name = f"{deid.pseudonym(inst.series_instance_uid)}/{deid.pseudonym(inst.sop_instance_uid)}.dcm"
            return name, _deidentified_file(request, archive, decision, inst)

        return zip_response(archive, instances, headers, entry=entry, filename=deid.pseudonym(study))
    if choice.kind == "single":
        (inst,) = instances
        fp = await anyio.to_thread.run_sync(_deidentified_file, request, archive, decision, inst)
        return StreamingResponse(_chunks(fp), media_type=f"{DICOM}; transfer-syntax={inst.transfer_syntax_uid}",
                                 headers=headers)
    boundary = new_boundary()
    base = base_url(request)

    async def body() -> AsyncIterator[bytes]:
        for index, inst in enumerate(instances):
            # The file's de-identification records these pseudonyms before the client can name them.
            fp = await anyio.to_thread.run_sync(_deidentified_file, request, archive, decision, inst)
            location = (f"{base}/studies/{deid.pseudonym(inst.study_instance_uid)}/series/"
                        f"{deid.pseudonym(inst.series_instance_uid)}/instances/{deid.pseudonym(inst.sop_instance_uid)}")
            yield part_head(boundary, [("Content-Type", f"{DICOM}; transfer-syntax={inst.transfer_syntax_uid}"),
                                       ("Content-Location", location)], first=index == 0)
            for chunk in _chunks(fp):
                yield chunk
        yield closing(boundary)

    return StreamingResponse(body(), media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}',
                             headers=headers)


async def _wado_uri_dicom(
    request: Request, archive: Archive, decision: Decision, given: Given
) -> Response:
    q = request.query_params
    found = await anyio.to_thread.run_sync(archive.retrieve.instances, decision.study_uid, q.get("seriesUID"),
                                           q.get("objectUID"))
    if len(found) != 1:
        raise not_found(*given)
    (inst,) = found
    fp = await anyio.to_thread.run_sync(_deidentified_file, request, archive, decision, inst)
    return StreamingResponse(_chunks(fp), media_type=DICOM,
                             headers={"Cache-Control": "private, no-store", "Vary": "Authorization"})

