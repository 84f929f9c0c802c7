"""Audit records as FHIR R4 AuditEvent resources (and a Bundle of them), from the same mapping as DICOM."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any, BinaryIO

from .event import format_time
from .mapping import Code, map_record

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACTION_SYSTEM = "urn:dicomweb:audit-action"
ROLE_SYSTEM = "urn:dicomweb:role"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"


def _coding(code: Code, system: str = DCM) -> dict[str, str]:
    return {"system": system, "code": code[0], "display": code[1]}


def audit_event(record: dict[str, Any], source: str = "dicomweb") -> dict[str, Any]:
    mapped = map_record(record)
    subtype = [_coding(mapped.type_code)] if mapped.type_code else []
    subtype.append({"system": ACTION_SYSTEM, "code": record.get("action", ""),
                    "display": record.get("detail") or record.get("action", "")})
    agent: dict[str, Any] = {
        "type": {"coding": [_coding(mapped.requester_role)]},
        "who": {"identifier": {"value": record.get("subject") or "anonymous"}},
        "requestor": True,
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}
                 for role in filter(None, str(record.get("roles") or "").split(","))],
    }
    if record.get("client_ip"):
        agent["network"] = {"address": record["client_ip"], "type": "2"}
    if record.get("institution_of_principal"):
        agent["location"] = {"display": record["institution_of_principal"]}
    if not agent["role"]:
        del agent["role"]
    entities: list[dict[str, Any]] = []
    if record.get("study_uid"):
        entities.append({
            "what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{record['study_uid']}"}},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
        })
    if record.get("action") == "query" and record.get("query"):
        entities.append({
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "query": base64.b64encode(str(record["query"]).encode("utf-8")).decode("ascii"),
        })
    if record.get("patient_id"):
        entities.append({
            "what": {"identifier": {"value": record["patient_id"]}},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(record.get("id", "")),
        "type": _coding(mapped.event_id),
        "subtype": subtype,
        "action": mapped.action_code,
        "recorded": format_time(record["occurred_at"]),
        "outcome": mapped.outcome_code,
        "agent": [agent],
        "source": {"observer": {"display": source},
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    if record.get("detail") or mapped.outcome_code != "0":
        resource["outcomeDesc"] = \
            f"{record.get('outcome')} (status {record.get('status')}) {record.get('detail') or ''}".strip()
    if entities:
        resource["entity"] = entities
    if not resource["id"]:
        del resource["id"]
    return resource


def audit_bundle(records: Iterable[dict[str, Any]], source: str = "dicomweb", search: bool = False) -> dict[str, Any]:
    """A ``searchset`` Bundle (an API search, with its total) or a ``collection`` (an export)."""
    events = [audit_event(record, source) for record in records]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset" if search else "collection"}
    if search:
        bundle["total"] = len(events)
    bundle["entry"] = [{"resource": event} for event in events]
    return bundle


def write_bundle(records: Iterable[dict[str, Any]], stream: BinaryIO, source: str = "dicomweb") -> int:
    """A ``collection`` Bundle, written one entry at a time (exports of any size)."""
    stream.write(b'{"resourceType":"Bundle","type":"collection","entry":[')
    written = 0
    for record in records:
        if written:
            stream.write(b",")
        stream.write(json.dumps({"resource": audit_event(record, source)}, ensure_ascii=False).encode("utf-8"))
        written += 1
    stream.write(b"]}")
    return written
