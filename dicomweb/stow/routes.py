"""STOW-RS routes: ``POST /studies`` and ``POST /studies/{study}``.

The body is read as a stream and parsed, hashed and spooled chunk by chunk as it arrives (see
:class:`BodyReader`); completed parts are ingested (in worker processes, or threads) while later parts are
still arriving, with a bound on parts in flight so a fast client cannot pile up spooled data.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from ..archive import Archive
from ..dicom.json_model import dumps
from ..dicom.part10 import CANNOT_UNDERSTAND
from ..dicom.uids import is_valid_uid
from ..dicom.xml_model import json_to_xml
from ..http.media import multipart_related, negotiate
from ..http.multipart import MultipartError
from ..http.problems import HTTPProblem
from ..policies.http import audit_note, store_institutions
from ..services.ingest import StoreResult
from .json_parts import rebuild_instances
from .reader import BodyReader, ReceivedPart
from .response import build_response

log = logging.getLogger(__name__)

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
RESPONSE_TYPES = [DICOM_JSON, "application/dicom+xml", "application/json"]


def base_url(request: Request) -> str:
    archive: Archive = request.app.state.archive
    return f"{str(request.base_url).rstrip('/')}{archive.settings.base_path}"


class _Pipeline:
    """Ingests parts concurrently, keeping results in the order the parts arrived."""

    def __init__(
        self, archive: Archive, expected_study: str | None, institutions: frozenset[str] | None = None
    ) -> None:
        self.archive = archive
        self.expected_study = expected_study
        self.institutions = institutions
        self.limiter = anyio.CapacityLimiter(archive.ingest_parallelism)
        self.tasks: deque[asyncio.Future[StoreResult]] = deque()
        self.results: list[StoreResult] = []

    async def submit_dicom(self, part: ReceivedPart) -> None:
        if part.media_type not in (DICOM, ""):
            part.blob.discard()
            self.results_ready(
                StoreResult(
                    "failed",
                    failure_reason=CANNOT_UNDERSTAND,
                    message=f"part {part.index} has media type {part.media_type!r}, expected {DICOM}",
                )
            )
            return
        await self.submit_blob(part.blob)

    async def submit_blob(self, blob: object) -> None:
        while len(self.tasks) >= 2 * self.limiter.total_tokens:
            self.results.append(await self.tasks.popleft())
        store_async = getattr(self.archive.ingest, "store_async", None)
        if store_async is not None:  # worker processes: no thread of ours needs to wait for the answer
            self.tasks.append(asyncio.ensure_future(store_async(blob, self.expected_study, self.institutions)))
            return
        coro = anyio.to_thread.run_sync(
            self.archive.ingest.store, blob, self.expected_study, self.institutions,  # type: ignore[arg-type]
            limiter=self.limiter,
        )
        self.tasks.append(asyncio.ensure_future(coro))

    def results_ready(self, result: StoreResult) -> None:
        # A result known at once still waits for its place behind parts in flight.
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        future.set_result(result)
        self.tasks.append(future)

    async def drain(self) -> list[StoreResult]:
        while self.tasks:
            self.results.append(await self.tasks.popleft())
        return self.results


def _ingest_json_parts(pipeline: _Pipeline, parts: list[ReceivedPart]) -> list[tuple[object, StoreResult | None]]:
    rebuilt = rebuild_instances(parts)
    for part in parts:
        part.blob.discard()
    out: list[tuple[object, StoreResult | None]] = []
    for item in rebuilt:
        if item.blob is None:
            out.append((None, StoreResult("failed", item.sop_class_uid, item.sop_instance_uid,
                                          failure_reason=item.status, message=item.error)))
        else:
            out.append((item.blob, None))
    return out


async def store_instances(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    study = request.path_params.get("study")
    if study is not None and not is_valid_uid(study):
        raise HTTPProblem(400, f"Study Instance UID {study!r} in the URL is not a valid UID")
    media, boundary = multipart_related(request.headers.get("content-type"))
    kind = media.params.get("type", DICOM).lower()
    if kind not in (DICOM, DICOM_JSON):
        raise HTTPProblem(
            415, f"multipart/related type {kind!r} is not supported; use {DICOM} or {DICOM_JSON}"
        )
    response_type = negotiate(request.headers.get("accept"), RESPONSE_TYPES)

    reader = BodyReader(boundary, archive.staging_dir, archive.spool_memory_bytes)
    pipeline = _Pipeline(archive, study, store_institutions(request))
    json_parts: list[ReceivedPart] = []
    problem: str | None = None

    async def hand_on(parts: list[ReceivedPart]) -> None:
        for part in parts:
            if kind == DICOM:
                await pipeline.submit_dicom(part)
            else:
                json_parts.append(part)

    try:
        async for chunk in request.stream():
            try:
                completed = reader.feed([chunk])
            except MultipartError:
                await hand_on(reader.take())  # the parts completed before the malformed spot are kept
                raise
            await hand_on(completed)
        await hand_on(reader.close())
    except MultipartError as exc:
        reader.abort()
        problem = str(exc)
    except ClientDisconnect:
        reader.abort()
        await pipeline.drain()
        log.warning("client disconnected during STOW-RS after %d parts", reader.parser.parts)
        return Response(status_code=400)
    except BaseException:
        reader.abort()  # cancelled (shutdown): the spooled rest goes
        raise

    if kind == DICOM_JSON and problem is None:
        prepared = await anyio.to_thread.run_sync(_ingest_json_parts, pipeline, json_parts)
        for blob, failure in prepared:
            if failure is not None:
                pipeline.results_ready(failure)
            else:
                await pipeline.submit_blob(blob)
    elif kind == DICOM_JSON:
        for part in json_parts:
            part.blob.discard()

    results = await pipeline.drain()
    studies = sorted({r.study_instance_uid for r in results if r.ok and r.study_instance_uid})
    # The record names the study (one STOW request is almost always one study; others go in the detail).
    audit_note(request, study=studies[0] if studies else study, count=sum(1 for r in results if r.ok),
               detail=f"{len(results)} parts" + (f"; studies {' '.join(studies)}" if len(studies) > 1 else ""))
    if problem is not None:
        stored = [r.sop_instance_uid for r in results if r.ok]
        raise HTTPProblem(400, f"the multipart body is malformed: {problem}", storedInstances=stored)
    if not results:
        raise HTTPProblem(400, "the request holds no parts")

    outcome = build_response(results, base_url(request))
    if response_type == "application/dicom+xml":
        return Response(json_to_xml(outcome.dataset), status_code=outcome.status, media_type=response_type)
    return Response(dumps(outcome.dataset), status_code=outcome.status, media_type=response_type)
