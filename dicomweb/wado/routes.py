"""WADO-RS retrieval of instances and metadata, and DELETE, at study, series and instance level.

Instances: the stored files as they are, or transcoded when the Accept header names another transfer syntax,
as multipart/related, a single application/dicom, or application/zip. Metadata: DICOM JSON or
multipart/related DICOM XML, with finished study and series answers cached by a validator of their instances.
Every answer carries an entity tag and Last-Modified; conditional requests answer 304, HEAD no body.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..archive import Archive
from ..dicom.json_model import with_base
from ..dicom.xml_model import json_to_xml
from ..http.media import MediaRange
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from ..services.retrieve import StoredInstance
from ..stow.routes import base_url
from ..transcode import NotTranscodable, transcode_instance
from .caching import entity_tag, head_or, not_modified, not_modified_response, validator_headers
from .common import not_found, uids
from .frames import instance_locations
from .lookup import metadata_validator
from .metadata_cache import MetadataCache
from .negotiate import DICOM, accept_ranges, instance_representation
from .streaming import Piece, body_length, stream
from .zip_archive import zip_response

log = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
GZIP_MIN_BYTES = 1024


async def _instances(request: Request) -> list[StoredInstance]:
    archive: Archive = request.app.state.archive
    study, series, sop = uids(request)
    found = await anyio.to_thread.run_sync(archive.retrieve.instances, study, series, sop)
    if not found:
        raise not_found(study, series, sop)
    return found


def _transcoded(archive: Archive, instance: StoredInstance, target: str) -> bytes:
    with archive.retrieve.open(instance) as fp:
        return transcode_instance(fp, instance.transfer_syntax_uid, target)


async def _as(archive: Archive, instance: StoredInstance, target: str | None) -> tuple[str, bytes | None]:
    """The transfer syntax a part goes out in and its bytes when transcoded (None: stream the stored file).

    An instance that cannot be transcoded goes out as stored, labelled with its own transfer syntax."""
    if target is None or target == instance.transfer_syntax_uid:
        return instance.transfer_syntax_uid, None
    try:
        return target, await anyio.to_thread.run_sync(_transcoded, archive, instance, target)
    except NotTranscodable as exc:
        log.info("instance %s sent as stored: %s", instance.sop_instance_uid, exc)
        return instance.transfer_syntax_uid, None


def _instance_url(base: str, i: StoredInstance) -> str:
    return f"{base}/studies/{i.study_instance_uid}/series/{i.series_instance_uid}/instances/{i.sop_instance_uid}"


async def retrieve_instances(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    ranges = accept_ranges(request)
    instances = await _instances(request)
    stored = {i.transfer_syntax_uid for i in instances}
    choice = instance_representation(ranges, stored, single_allowed="instance" in request.path_params)
    etag = entity_tag((i.sha256 for i in instances), choice.kind, choice.target or "*")
    last_modified = max(i.created_at for i in instances)
    headers = validator_headers(etag, last_modified)
    if not_modified(request, etag, last_modified):
        return not_modified_response(headers)
    if choice.kind == "zip":
        return head_or(request, zip_response(archive, instances, headers), None)
    base = base_url(request)

    if choice.kind == "single":
        (instance,) = instances
        if choice.target not in (None, instance.transfer_syntax_uid):
            try:
                data = await anyio.to_thread.run_sync(_transcoded, archive, instance, choice.target)
            except NotTranscodable as exc:
                raise HTTPProblem(406, f"the instance cannot be given as {choice.target}: {exc}") from None
            media = f"{DICOM}; transfer-syntax={choice.target}"
            return head_or(request, Response(data, media_type=media, headers=headers), len(data))
        response = StreamingResponse(
            stream(archive.retrieve, [instance]) if request.method != "HEAD" else iter(()),
            media_type=f"{DICOM}; transfer-syntax={instance.transfer_syntax_uid}",
            headers={**headers, "Content-Length": str(instance.size)},
        )
        return head_or(request, response, instance.size)

    boundary = new_boundary()
    tail = closing(boundary)
    content_type = f'multipart/related; type="{DICOM}"; boundary={boundary}'
    if choice.target is None or stored == {choice.target}:
        # As stored: the length is known before the first byte.
        pieces: list[Piece] = []
        for index, i in enumerate(instances):
            pieces.append(part_head(boundary, [("Content-Type", f"{DICOM}; transfer-syntax={i.transfer_syntax_uid}"),
                                               ("Content-Location", _instance_url(base, i))], first=index == 0))
            pieces.append(i)
        pieces.append(tail)
        length = body_length(pieces)
        if request.method == "HEAD":
            return head_or(request, Response(headers=headers, media_type=content_type), length)
        return StreamingResponse(stream(archive.retrieve, pieces), media_type=content_type,
                                 headers={**headers, "Content-Length": str(length)})

    # Transcoded: the first instance before answering, so one that cannot be converted is a 406.
    first_syntax: str
    first_data: bytes | None
    if len(instances) == 1 and choice.target is not None:
        try:
            first_syntax, first_data = choice.target, await anyio.to_thread.run_sync(
                _transcoded, archive, instances[0], choice.target)
        except NotTranscodable as exc:
            raise HTTPProblem(406, f"the instance cannot be given as {choice.target}: {exc}") from None
    else:
        first_syntax, first_data = await _as(archive, instances[0], choice.target)
    if request.method == "HEAD":
        return head_or(request, Response(headers=headers, media_type=content_type), None)

    async def transcoded_body() -> AsyncIterator[bytes | memoryview]:
        for index, instance in enumerate(instances):
            syntax, data = (first_syntax, first_data) if index == 0 else await _as(archive, instance, choice.target)
            yield part_head(boundary, [("Content-Type", f"{DICOM}; transfer-syntax={syntax}"),
                                       ("Content-Location", _instance_url(base, instance))], first=index == 0)
            if data is not None:
                yield data
            else:
                async for chunk in stream(archive.retrieve, [instance]):
                    yield chunk
        yield tail

    return StreamingResponse(transcoded_body(), media_type=content_type, headers=headers)


def _metadata_form(ranges: list[MediaRange]) -> str:
    for media_range in ranges:
        if media_range.matches(DICOM_JSON) or media_range.matches("application/json"):
            return "json"
        if media_range.essence == DICOM_XML:
            return "xml"
        if media_range.essence in ("multipart/related", "multipart/*"):
            inner = media_range.params.get("type", DICOM_XML).lower()
            if inner in (DICOM_XML, "application/*", "*/*"):
                return "xml"
    raise HTTPProblem(406, f'metadata is given as {DICOM_JSON} or multipart/related; type="{DICOM_XML}"')


def _wants_gzip(request: Request) -> bool:
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip().lower() in ("gzip", "x-gzip"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _build_metadata(texts: list[str], base: str, form: str, compress: bool) -> tuple[bytes, str]:
    """The finished body and its content type (CPU work: run in a thread)."""
    if form == "json":
        body = with_base("[" + ",".join(texts) + "]", base).encode()
        content_type = DICOM_JSON
    else:
        boundary = new_boundary()
        parts = [
            part_head(boundary, [("Content-Type", f"{DICOM_XML}; charset=utf-8")], first=index == 0)
            + json_to_xml(json.loads(with_base(text, base))).encode()
            for index, text in enumerate(texts)
        ]
        body = b"".join(parts) + closing(boundary)
        content_type = f'multipart/related; type="{DICOM_XML}"; boundary={boundary}'
    if compress and len(body) >= GZIP_MIN_BYTES:
        body = gzip.compress(body, compresslevel=5, mtime=0)
    return body, content_type


def _cache(request: Request, archive: Archive) -> MetadataCache | None:
    cache: MetadataCache | None = getattr(request.app.state, "wado_metadata_cache", None)
    if cache is None and archive.settings.metadata_cache_bytes > 0:
        cache = MetadataCache(archive.settings.metadata_cache_bytes)
        request.app.state.wado_metadata_cache = cache
    return cache


async def retrieve_metadata(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    form = _metadata_form(accept_ranges(request))
    study, series, sop = uids(request)
    validator = await anyio.to_thread.run_sync(metadata_validator, archive.engine, study, series, sop)
    if validator.count == 0:
        raise not_found(study, series, sop)
    base = base_url(request)
    compress = _wants_gzip(request)
    etag = entity_tag(validator.token, base, form, "gzip" if compress else "identity")
    headers = validator_headers(etag, validator.last_modified)
    if not_modified(request, etag, validator.last_modified):
        return not_modified_response(headers)

    cache = _cache(request, archive)
    key = (validator.token, base, form, compress)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        # Cached as "content type\n" + body: an XML answer's boundary lives in its content type.
        content_type, _, body = cached.partition(b"\n")
    else:
        texts = await anyio.to_thread.run_sync(archive.retrieve.metadata, study, series, sop)
        if not texts:
            raise not_found(study, series, sop)
        body, type_text = await anyio.to_thread.run_sync(_build_metadata, texts, base, form, compress)
        content_type = type_text.encode()
        if cache is not None and sop is None:
            cache.put(key, content_type + b"\n" + body)
    if compress and body[:2] == b"\x1f\x8b":
        headers["Content-Encoding"] = "gzip"
    response = Response(body, media_type=content_type.decode(), headers=headers)
    return head_or(request, response, len(body))


async def delete_resource(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    study, series, sop = uids(request)
    removed = await anyio.to_thread.run_sync(archive.removal.delete, study, series, sop)
    instance_locations(request).forget_study(study)
    if not removed:
        raise not_found(study, series, sop)
    return Response(status_code=204)
