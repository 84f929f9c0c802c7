"""QIDO-RS query parameters (PS3.18 8.3.4) to a ``Query``: attributes, includefield, fuzzymatching, limit, offset."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.datadict import tag_for_keyword

from ..dicom.uids import is_valid_uid
from ..http.problems import HTTPProblem
from ..services.query import Level, MatchKey, Query, QueryError, parse_key, tag_vr

MAX_INT = 2**31 - 1  # what every index can bind as an integer
CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}
_HEX_TAG = re.compile(r"[0-9A-Fa-f]{8}")


@dataclass
class _Node:
    """A matching key being assembled: a value, or (for a sequence) its items' keys by tag."""

    raw: str | None = None
    children: dict[int, _Node] = field(default_factory=dict)


def attribute_tag(name: str, parameter: str) -> int:
    """The tag of a keyword (``PatientName``) or an 8-digit hex tag (``00100010``)."""
    if _HEX_TAG.fullmatch(name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise HTTPProblem(400, f"query parameter {parameter!r}: {name!r} is neither a DICOM keyword nor a tag")
    return int(tag)


def _int_param(values: list[str], name: str) -> int | None:
    if not values:
        return None
    if len(values) > 1:
        raise HTTPProblem(400, f"query parameter {name} is given more than once")
    raw = values[0].strip()
    if not raw.isdigit():
        raise HTTPProblem(400, f"query parameter {name}={values[0]!r} is not a whole number (0 or more)")
    value = int(raw)
    if value > MAX_INT:
        raise HTTPProblem(400, f"query parameter {name} must be at most {MAX_INT}")
    return value


def _fuzzy(values: list[str]) -> bool:
    if len(values) > 1:
        raise HTTPProblem(400, "query parameter fuzzymatching is given more than once")
    if not values:
        return False
    value = values[0].strip().lower()
    if value not in ("true", "false"):
        raise HTTPProblem(400, f"query parameter fuzzymatching={values[0]!r} must be true or false")
    return value == "true"


def _includefields(values: list[str]) -> tuple[frozenset[int], bool]:
    tags: set[int] = set()
    include_all = False
    for value in values:
        for name in (v.strip() for v in value.split(",")):
            if not name:
                continue
            if name == "all":
                include_all = True
                continue
            # A dotted path returns its whole top-level sequence.
            tags.add(attribute_tag(name.split(".")[0], "includefield"))
    return frozenset(tags), include_all


def _build(tag: int, node: _Node, parameter: str) -> MatchKey:
    items = tuple(_build(child_tag, child, parameter) for child_tag, child in sorted(node.children.items()))
    if items and tag_vr(tag) != "SQ":
        raise HTTPProblem(400, f"query parameter {parameter!r}: {tag:08X} is not a sequence")
    try:
        return parse_key(tag, node.raw or "", items)
    except QueryError as exc:
        raise HTTPProblem(400, f"query parameter {parameter!r}: {exc}") from None


def parse_query(
    params: list[tuple[str, str]],
    level: Level,
    scope: dict[int, str],
    return_levels: tuple[Level, ...],
    max_results: int,
    pn_case_insensitive: bool,
) -> tuple[Query, bool]:
    """The query and whether the server's maximum (not the client) set the limit."""
    control: dict[str, list[str]] = {name: [] for name in CONTROL}
    roots: dict[int, _Node] = {}
    first_parameter: dict[int, str] = {}
    for name, value in params:
        if name in CONTROL:
            control[name].append(value)
            continue
        path = [attribute_tag(part, name) for part in name.split(".")]
        node = roots.setdefault(path[0], _Node())
        first_parameter.setdefault(path[0], name)
        for tag in path[1:]:
            node = node.children.setdefault(tag, _Node())
        if node.raw is not None or (node.children and len(path) == 1):
            raise HTTPProblem(400, f"query parameter {name!r} is given more than once")
        node.raw = value
    keys = [_build(tag, node, first_parameter[tag]) for tag, node in roots.items()]
    for tag, uid in scope.items():
        if not is_valid_uid(uid):
            raise HTTPProblem(400, f"{uid!r} in the URL is not a valid DICOM UID")
        keys.append(parse_key(tag, uid))
    limit = _int_param(control["limit"], "limit")
    offset = _int_param(control["offset"], "offset") or 0
    include, include_all = _includefields(control["includefield"])
    capped = limit is None or limit > max_results
    query = Query(
        level=level,
        keys=keys,
        include=include,
        include_all=include_all,
        limit=max_results if capped else limit,  # type: ignore[arg-type]
        offset=offset,
        fuzzy=_fuzzy(control["fuzzymatching"]),
        pn_case_insensitive=pn_case_insensitive,
        return_levels=return_levels,
    )
    return query, capped
