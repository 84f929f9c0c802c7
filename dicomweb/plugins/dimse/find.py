"""Query/Retrieve C-FIND (Patient Root and Study Root) over the shared query model of QIDO-RS.

The identifier becomes a ``services.query.Query``; answers are cut back to the keys the peer asked for.
The PATIENT level has no table of its own: it is answered from study matches, one answer per patient.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom.events import Event

from ...archive import Archive
from ...services.query import Kind, Level, MatchKey, Query, QueryError, parse_key, search
from .access import NOT_AUTHORIZED, AccessRules
from .identifiers import CONTROL_TAGS, project, raw_value
from .sop import PATIENT_ROOT_FIND
from .status import CANCEL, IDENTIFIER_MISMATCH, PENDING, UNABLE_TO_PROCESS, status

log = logging.getLogger(__name__)

LEVELS: dict[str, Level] = {"PATIENT": "study", "STUDY": "study", "SERIES": "series", "IMAGE": "instance"}
PAGE = 500
PATIENT_TAGS = (0x00100020, 0x00100021, 0x00100010)  # what tells one patient from another
NUMBER_OF_PATIENT_STUDIES = 0x00201200

FindAnswer = tuple[int | Dataset, Dataset | None]


def _key(element: Any) -> MatchKey:
    if element.VR == "SQ":
        template = element.value[0] if element.value else None
        items = tuple(k for k in (_key(e) for e in template or ()) if k.kind != Kind.UNIVERSAL)
        return parse_key(int(element.tag), "", items)
    return parse_key(int(element.tag), raw_value(element))


def build_query(identifier: Dataset, dimse_level: str, pn_case_insensitive: bool) -> Query:
    """The query an identifier asks for; raises QueryError for a key that cannot be matched."""
    keys: list[MatchKey] = []
    include: set[int] = set()
    for element in identifier:
        tag = int(element.tag)
        if tag in CONTROL_TAGS or element.tag.group in (0x0000, 0x0002) or element.tag.is_private:
            continue
        if dimse_level == "PATIENT" and element.tag.group != 0x0010:
            continue  # study keys cannot restrict a patient answer
        include.add(tag)
        key = _key(element)
        if key.kind != Kind.UNIVERSAL:
            keys.append(key)
    return Query(level=LEVELS[dimse_level], keys=keys, include=frozenset(include), limit=PAGE,
                 pn_case_insensitive=pn_case_insensitive)


def _answer(found: dict[str, Any], identifier: Dataset, level: str, ae_title: str) -> Dataset:
    answer = project(Dataset.from_json(found), identifier)
    answer.QueryRetrieveLevel = level
    answer.SpecificCharacterSet = "ISO_IR 192"
    if "RetrieveAETitle" in identifier:
        answer.RetrieveAETitle = ae_title
    if "InstanceAvailability" in identifier:
        answer.InstanceAvailability = "ONLINE"
    return answer


def _matches(archive: Archive, query: Query, visible: Any = None) -> Iterator[dict[str, Any]]:
    """Every match the caller may see (``visible``: the policy's predicate), a page (one SQL statement) at a time."""
    while True:
        result = search(archive.engine, query, visible)
        yield from result.datasets
        if not result.more:
            return
        query.offset += query.limit


def handle_find(event: Event, archive: Archive, rules: AccessRules, ae_title: str) -> Iterator[FindAnswer]:
    caller = event.assoc.requestor.ae_title
    if not rules.allows(caller, "query"):
        yield status(NOT_AUTHORIZED, f"{caller} may not query here"), None
        return
    identifier = event.identifier
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    request: Any = event.request
    patient_root = request.AffectedSOPClassUID == PATIENT_ROOT_FIND
    if level not in LEVELS or (level == "PATIENT" and not patient_root):
        allowed = "PATIENT, STUDY, SERIES or IMAGE" if patient_root else "STUDY, SERIES or IMAGE"
        yield status(IDENTIFIER_MISMATCH, f"QueryRetrieveLevel must be {allowed}"), None
        return
    try:
        query = build_query(identifier, level, archive.settings.qido_pn_case_insensitive)
    except QueryError as exc:
        yield status(IDENTIFIER_MISMATCH, str(exc)), None
        return
    visible = rules.policy.visible(caller) if rules.policy is not None else None
    try:
        if level == "PATIENT":
            yield from _patients(event, archive, query, identifier, ae_title, visible)
            return
        for found in _matches(archive, query, visible):
            if event.is_cancelled:
                yield CANCEL, None
                return
            yield PENDING, _answer(found, identifier, level, ae_title)
    except Exception:
        log.exception("C-FIND from %s failed", caller)
        yield status(UNABLE_TO_PROCESS, "the archive could not run the query; see its log"), None


def _patients(event: Event, archive: Archive, query: Query, identifier: Dataset,
              ae_title: str, visible: Any = None) -> Iterator[FindAnswer]:
    patients: dict[tuple[str, ...], tuple[dict[str, Any], int]] = {}
    for found in _matches(archive, query, visible):
        if event.is_cancelled:
            yield CANCEL, None
            return
        key = tuple(json.dumps(found.get(f"{tag:08X}"), sort_keys=True) for tag in PATIENT_TAGS)
        first, studies = patients.get(key, (found, 0))
        patients[key] = (first, studies + 1)
    for first, studies in patients.values():
        if event.is_cancelled:
            yield CANCEL, None
            return
        answer = _answer(first, identifier, "PATIENT", ae_title)
        if NUMBER_OF_PATIENT_STUDIES in identifier:
            answer.NumberOfPatientRelatedStudies = studies
        yield PENDING, answer
