"""Answers for a study the principal sees de-identified only (PS3.15 Annex E Basic Profile, on the fly).

Headers are de-identified (metadata, Part 10 instances); pixel answers (frames, Pixel Data bulk data,
rendered images without annotation) pass as they are, except from series flagged with burned-in annotation,
which are withheld: their pixels may show what the header profile removed. Every UID in an answer is a
pseudonym the guard resolves back on the next request.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, BinaryIO
from urllib.parse import urlencode

import anyio
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..archive import Archive
from ..dicom.json_model import dumps, with_base
from ..dicom.xml_model import json_to_xml
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from ..services.query import T_INSTANCE, T_SERIES, T_STUDY
from ..services.retrieve import CHUNK, StoredInstance
from ..stow.routes import base_url
from ..wado.common import not_found
from ..wado.negotiate import accept_ranges
from ..wado.routes import _metadata_form
from .engine import Decision

Endpoint = Callable[[Request], Awaitable[Response]]
Given = tuple[str, str | None, str | None]  # the UIDs as the request named them (pseudonyms)
DICOM = "application/dicom"
PIXEL_TAGS = {"7FE00010", "7FE00008", "7FE00009"}
SPOOL_BYTES = 16 * 1024 * 1024
NAVIGATION_UIDS = ("0020000D", "0020000E", "00080018")  # what a client names in its next request


def _burned_in_series(archive: Archive, study: str) -> set[str]:
    stmt = select(T_SERIES.c.series_instance_uid).select_from(
        T_SERIES.join(T_STUDY, T_SERIES.c.study_fk == T_STUDY.c.id)
    ).where(T_STUDY.c.study_instance_uid == study, T_SERIES.c.burned_in_annotation.is_(True))
    with archive.engine.connect() as conn:
        return set(conn.execute(stmt).scalars())


def _without_annotation(request: Request) -> None:
    """Rendered answers for an anonymized view never burn patient identity into the image."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k.lower() != "annotation"]
    request.scope["query_string"] = urlencode(kept).encode()
    if hasattr(request, "_query_params"):
        del request._query_params


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
        return await _metadata(request, archive, decision, burned, given)
    if kind == "instances":
        return await _instances(request, archive, decision, burned, given)
    if kind == "wado-uri":
        content = (request.query_params.get("contentType") or "").split(";")[0].strip().lower()
        if content == DICOM:
            return await _wado_uri_dicom(request, archive, decision, given)
        _without_annotation(request)
        return await endpoint(request)
    raise HTTPProblem(403, "this answer is not available in an anonymized view")


def _metadata_texts(archive: Archive, study: str, series: str | None, sop: str | None) -> list[str]:
    retrieve = archive.retrieve
    stmt = retrieve._scope([T_INSTANCE.c.metadata_json], study, series, sop).where(
        T_SERIES.c.burned_in_annotation.is_(False))
    with archive.engine.connect() as conn:
        return list(conn.execute(stmt).scalars())


def _deidentified_metadata(
    request: Request, archive: Archive, decision: Decision, texts: list[str]
) -> list[dict[str, Any]]:
    deid = request.app.state.deid
    base = base_url(request)
    originals = [json.loads(with_base(text, base)) for text in texts]
    deid.remember([uid for obj in originals for tag in NAVIGATION_UIDS for uid in obj.get(tag, {}).get("Value", [])])
    return [deid.json_dataset(obj, decision.patient_key) for obj in originals]


async def _metadata(
    request: Request, archive: Archive, decision: Decision, burned: set[str],
    given: Given,
) -> Response:
    form = _metadata_form(accept_ranges(request))
    study, series, sop = decision.study_uid, request.path_params.get("series"), request.path_params.get("instance")
    texts = await anyio.to_thread.run_sync(_metadata_texts, archive, study, series, sop)
    if not texts:
        raise not_found(*given)
    datasets = await anyio.to_thread.run_sync(_deidentified_metadata, request, archive, decision, texts)
    headers = {"Cache-Control": "private, no-store", "Vary": "Accept, Authorization"}
    if form == "json":
        return Response(dumps(datasets), media_type="application/dicom+json", headers=headers)
    boundary = new_boundary()
    body = b"".join(
        part_head(boundary, [("Content-Type", "application/dicom+xml; charset=utf-8")], first=i == 0)
        + json_to_xml(ds).encode() for i, ds in enumerate(datasets)
    ) + closing(boundary)
    return Response(body, media_type=f'multipart/related; type="application/dicom+xml"; boundary={boundary}',
                    headers=headers)


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


def _wants_zip(request: Request) -> bool:
    return any(r.essence == "application/zip" for r in accept_ranges(request))


def _check_transfer_syntax(request: Request, stored: set[str]) -> None:
    for media in accept_ranges(request):
        wanted = media.params.get("transfer-syntax")
        if wanted and wanted != "*" and {wanted} != stored:
            raise HTTPProblem(406, "an anonymized view gives instances in their stored transfer syntax only: "
                                   f"{', '.join(sorted(stored))}")


async def _instances(
    request: Request, archive: Archive, decision: Decision, burned: set[str],
    given: Given,
) -> Response:
    study, series, sop = decision.study_uid, request.path_params.get("series"), request.path_params.get("instance")
    found = await anyio.to_thread.run_sync(archive.retrieve.instances, study, series, sop)
    instances = [i for i in found if i.series_instance_uid not in burned]
    if not instances:
        raise not_found(*given)
    deid = request.app.state.deid
    await anyio.to_thread.run_sync(deid.remember, [u for i in instances for u in (
        i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid)])
    headers = {"Cache-Control": "private, no-store", "Vary": "Accept, Authorization"}
    if _wants_zip(request):
        return StreamingResponse(_zip_body(request, archive, decision, instances), media_type="application/zip",
                                 headers={**headers, "Content-Disposition":
                                          f'attachment; filename="{deid.pseudonym(study)}.zip"'})
    _check_transfer_syntax(request, {i.transfer_syntax_uid for i in instances})
    boundary = new_boundary()
    base = base_url(request)

    async def body() -> AsyncIterator[bytes]:
        for index, inst in enumerate(instances):
            location = (f"{base}/studies/{deid.pseudonym(inst.study_instance_uid)}/series/"
                        f"{deid.pseudonym(inst.series_instance_uid)}/instances/{deid.pseudonym(inst.sop_instance_uid)}")
            yield part_head(boundary, [("Content-Type", f"{DICOM}; transfer-syntax={inst.transfer_syntax_uid}"),
                                       ("Content-Location", location)], first=index == 0)
            fp = await anyio.to_thread.run_sync(_deidentified_file, request, archive, decision, inst)
            for chunk in _chunks(fp):
                yield chunk
        yield closing(boundary)

    return StreamingResponse(body(), media_type=f'multipart/related; type="{DICOM}"; boundary={boundary}',
                             headers=headers)


async def _zip_body(
    request: Request, archive: Archive, decision: Decision, instances: list[StoredInstance]
) -> AsyncIterator[bytes]:
    deid = request.app.state.deid

    def build() -> BinaryIO:
        out = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES, dir=str(archive.staging_dir))
        with zipfile.ZipFile(out, "w", allowZip64=True) as zf:  # type: ignore[call-overload]
            for inst in instances:
                name = (f"{deid.pseudonym(inst.series_instance_uid)}/{deid.pseudonym(inst.sop_instance_uid)}.dcm")
                fp = _deidentified_file(request, archive, decision, inst)
                with fp, zf.open(name, "w", force_zip64=True) as entry:
                    while chunk := fp.read(CHUNK):
                        entry.write(chunk)
        out.seek(0)
        return out  # type: ignore[return-value]

    fp = await anyio.to_thread.run_sync(build)
    for chunk in _chunks(fp):
        yield chunk


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

