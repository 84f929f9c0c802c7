"""Enforcement for every study-scoped route, applied once where the routes are declared (not in each handler).

Before a retrieval or deletion runs, the guard resolves pseudonymous UIDs, asks the policy engine for the
study's decision and either lets the handler answer, hands the request to the de-identifying handlers, or
answers exactly what the handler answers for a study that does not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

import anyio
from starlette.requests import Request
from starlette.responses import Response

from ..dicom.uids import is_valid_uid
from ..http.problems import HTTPProblem
from ..wado.common import not_found
from . import anonymized
from .engine import Decision
from .http import audit_note, policy_of, principal_of, set_query

Endpoint = Callable[[Request], Awaitable[Response]]
Kind = Literal["instances", "metadata", "frames", "bulkdata", "rendered", "thumbnail", "delete", "wado-uri"]
WADO_URI_PARAMS = ("studyUID", "seriesUID", "objectUID")


def _path_uids(request: Request, kind: Kind) -> tuple[str | None, str | None, str | None]:
    if kind == "wado-uri":
        study, series, sop = (request.query_params.get(name) for name in WADO_URI_PARAMS)
        return study, series, sop
    params = request.path_params
    return params.get("study"), params.get("series"), params.get("instance")


def _replace_uids(request: Request, kind: Kind, originals: dict[str, str]) -> None:
    """Point the request at the original UIDs the pseudonyms stand for (the handlers know only originals)."""
    if kind == "wado-uri":
        set_query(request, [(k, originals.get(v, v) if k in WADO_URI_PARAMS else v)
                            for k, v in request.query_params.multi_items()])
    else:
        request.scope["path_params"] = {k: originals.get(v, v) if k in ("study", "series", "instance") else v
                                        for k, v in request.path_params.items()}


def guarded(endpoint: Endpoint, kind: Kind) -> Endpoint:
    async def guard(request: Request) -> Response:
        principal = principal_of(request)
        study, series, sop = _path_uids(request, kind)
        if principal.is_system or study is None or not is_valid_uid(study):
            return await endpoint(request)  # the handler answers malformed requests as it always has
        policy = policy_of(request)
        originals: dict[str, str] = {}
        if policy.may_anonymize(principal):
            deid = request.app.state.deid
            given = [u for u in (study, series, sop) if u]
            originals = await anyio.to_thread.run_sync(deid.resolve_many, given)
        real_study = originals.get(study, study)
        decision: Decision = await anyio.to_thread.run_sync(policy.decide, principal, real_study)
        audit_note(request, study=real_study, series=originals.get(series or "", series),
                   instance=originals.get(sop or "", sop), patient=decision.patient_id,
                   institution=decision.institution)
        # An anonymized study is reachable only through its pseudonyms, a full one only through its own UIDs:
        # an original UID must not confirm that a de-identified study exists, nor link the two.
        if not decision.allowed or decision.anonymized != (study in originals):
            audit_note(request, outcome="denied")
            raise not_found(study, series, sop)
        if kind == "delete" and not policy.may_delete(principal):
            raise HTTPProblem(403, "this identity may not delete from the archive")
        if decision.anonymized:
            _replace_uids(request, kind, originals)
            return await anonymized.answer(kind, request, endpoint, decision, (study, series, sop))
        return await endpoint(request)

    guard.__name__ = getattr(endpoint, "__name__", "guarded")
    return guard
