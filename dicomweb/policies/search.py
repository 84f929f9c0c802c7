"""QIDO under the policy: the view's predicate inside the one query, and de-identified rows where it says so.

In a view with anonymized studies, UIDs in the query may be pseudonyms (resolved back first) and a key on an
attribute the profile removes or replaces could reveal the hidden value by matching; such queries, and UIDs
that are not pseudonyms, are matched against the studies seen in full only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import ColumnElement, and_, not_
from starlette.requests import Request

from ..services.query import Kind, MatchKey, Query, SearchResult
from .engine import View
from .http import policy_of, principal_of


def _resolved_key(key: MatchKey, originals: dict[str, str]) -> tuple[MatchKey, bool]:
    values = tuple(originals.get(v, v) for v in key.values)
    return replace(key, values=values), all(v in originals for v in key.values)


def policy_view(request: Request, query: Query) -> tuple[Query, View]:
    """The query with pseudonyms resolved, and the view of the caller (blocking: run in a thread)."""
    principal = principal_of(request)
    view = policy_of(request).search_view(principal, query.keys)
    if view.anonymized is None:
        return query, view
    deid = request.app.state.deid
    uid_values = [v for k in query.keys if k.vr == "UI" and k.kind in (Kind.SINGLE, Kind.LIST) for v in k.values]
    originals = deid.resolve_many(uid_values) if uid_values else {}
    keys: list[MatchKey] = []
    full_only = False
    for key in query.keys:
        if key.vr == "UI" and key.kind in (Kind.SINGLE, Kind.LIST):
            key, all_pseudonyms = _resolved_key(key, originals)
            full_only |= not all_pseudonyms
        elif key.kind != Kind.UNIVERSAL and not deid.kept_for_matching(key.tag):
            full_only = True
        keys.append(key)
    query = replace(query, keys=keys)
    if full_only:
        visible: ColumnElement[bool] = not_(view.anonymized) if view.visible is None else and_(
            view.visible, not_(view.anonymized))
        return query, View(visible, view.anonymized)
    return query, view


def deidentify_results(request: Request, result: SearchResult) -> list[dict[str, Any]]:
    """The answer's datasets, the anonymized rows de-identified (blocking: run in a thread)."""
    if not any(result.anonymized):
        return result.datasets
    rows = list(zip(result.datasets, result.anonymized, result.patient_keys, strict=True))
    # One batch of pseudonyms recorded for the whole page (they resolve back on the client's next request).
    cleaned = iter(request.app.state.deid.json_many([(d, key) for d, anonymized, key in rows if anonymized]))
    return [next(cleaned) if anonymized else dataset for dataset, anonymized, _ in rows]
