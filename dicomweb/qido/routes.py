"""QIDO-RS (PS3.18 10.6): the six search resources, answered in DICOM JSON or multipart DICOM XML.

Each request is one SQL query (``services.query.search``) run in a worker thread; matching keys that the
level cannot use are ignored with a Warning, as is a result cut by the server's maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..archive import Archive
from ..dicom.json_model import dumps
from ..dicom.xml_model import json_to_xml
from ..http.media import parse_accept
from ..http.multipart import closing, new_boundary, part_head
from ..http.problems import HTTPProblem
from ..policies.http import audit_note
from ..policies.search import deidentify_results, policy_view
from ..services.query import Level, SearchResult, search
from ..stow.routes import base_url
from .params import parse_query

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
STUDY_UID, SERIES_UID = 0x0020000D, 0x0020000E


def _media_type(accept: str | None) -> str:
    """DICOM JSON (also for application/json) or multipart/related DICOM XML, in the client's order."""
    for media in parse_accept(accept):
        if media.matches(DICOM_JSON) or media.matches("application/json"):
            return DICOM_JSON
        if media.essence == "multipart/related" and media.params.get("type", DICOM_XML).lower() == DICOM_XML:
            return DICOM_XML
    raise HTTPProblem(
        406, f'search results are given as {DICOM_JSON} or multipart/related; type="{DICOM_XML}" only'
    )


def _warning(text: str) -> str:
    return f'299 - "{text}"'


def xml_body(datasets: list[dict[str, Any]], boundary: str) -> bytes:
    chunks = [
        part_head(boundary, [("Content-Type", f"{DICOM_XML}; charset=utf-8")], first=i == 0)
        + json_to_xml(ds).encode("utf-8")
        for i, ds in enumerate(datasets)
    ]
    return b"".join(chunks) + closing(boundary)


async def _search(request: Request, level: Level, return_levels: tuple[Level, ...]) -> Response:
    archive: Archive = request.app.state.archive
    settings = archive.settings
    media_type = _media_type(request.headers.get("accept"))
    scope = {}
    if "study" in request.path_params:
        scope[STUDY_UID] = request.path_params["study"]
    if "series" in request.path_params:
        scope[SERIES_UID] = request.path_params["series"]
    query, capped = parse_query(
        request.query_params.multi_items(), level, scope, return_levels,
        settings.qido_max_results, settings.qido_pn_case_insensitive,
    )
    base = base_url(request)

    def run() -> tuple[SearchResult, list[dict[str, Any]]]:
        restricted, view = policy_view(request, query)
        found = search(archive.engine, restricted, view.visible, base, view.anonymized)
        return found, deidentify_results(request, found)

    result, datasets = await anyio.to_thread.run_sync(run)
    audit_note(request, count=len(datasets))
    warnings = []
    if result.ignored:
        warnings.append(_warning(
            f"The following attributes are not supported for matching at the {level} level "
            f"and were ignored: {', '.join(result.ignored)}"
        ))
    if result.more and capped:
        warnings.append(_warning(
            "The number of results exceeded the maximum supported by the server. "
            "Additional results can be requested."
        ))
    headers = {"Warning": ", ".join(warnings)} if warnings else {}
    if not datasets:
        return Response(status_code=204, headers=headers)
    if media_type == DICOM_XML:
        boundary = new_boundary()
        return Response(
            xml_body(datasets, boundary), headers=headers,
            media_type=f'multipart/related; type="{DICOM_XML}"; boundary={boundary}',
        )
    return Response(dumps(datasets), media_type=DICOM_JSON, headers=headers)


def _route(level: Level, *return_levels: Level) -> Callable[[Request], Coroutine[Any, Any, Response]]:
    async def endpoint(request: Request) -> Response:
        return await _search(request, level, return_levels)

    endpoint.__name__ = f"search_{level}_{'_'.join(return_levels)}"
    return endpoint


# PS3.18 table 10.6.3-2: a search without its parent in the path also returns the parents' attributes.
search_studies = _route("study", "study")
search_series = _route("series", "study", "series")
search_study_series = _route("series", "series")
search_instances = _route("instance", "study", "series", "instance")
search_study_instances = _route("instance", "series", "instance")
search_series_instances = _route("instance", "instance")
