"""Audit records as DICOM audit messages (PS3.15 A.5), several wrapped in one ``AuditMessages`` document.

PS3.15 defines the single ``AuditMessage``; a read of many records needs one document, and a wrapper root
keeps that one XML file (streamable, one media type) instead of an archive of files.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any, BinaryIO

from .event import format_time
from .mapping import DESTINATION_ROLE, SOURCE_ROLE, STUDY_UID_TYPE, Code, map_record

ROLE_SYSTEM = "dicomweb-role"  # the principal's roles, as local codes


def _code(parent: ET.Element, tag: str, code: Code, system: str = "DCM") -> None:
    ET.SubElement(parent, tag, {"csd-code": code[0], "codeSystemName": system, "originalText": code[1]})


def audit_message(record: dict[str, Any], source: str = "dicomweb") -> ET.Element:
    mapped = map_record(record)
    message = ET.Element("AuditMessage")
    event = ET.SubElement(message, "EventIdentification", {
        "EventActionCode": mapped.action_code,
        "EventDateTime": format_time(record["occurred_at"]),
        "EventOutcomeIndicator": mapped.outcome_code,
    })
    _code(event, "EventID", mapped.event_id)
    if mapped.type_code is not None:
        _code(event, "EventTypeCode", mapped.type_code)
    if record.get("detail") or mapped.outcome_code != "0":
        ET.SubElement(event, "EventOutcomeDescription").text = \
            f"{record.get('outcome')} (status {record.get('status')}) {record.get('detail') or ''}".strip()

    user = ET.SubElement(message, "ActiveParticipant", {
        "UserID": record.get("subject") or "anonymous", "UserIsRequestor": "true",
        "NetworkAccessPointID": record.get("client_ip") or "", "NetworkAccessPointTypeCode": "2",
    })
    if record.get("institution_of_principal"):
        user.set("UserName", f"{record.get('subject')}@{record['institution_of_principal']}")
    _code(user, "RoleIDCode", mapped.requester_role)
    for role in filter(None, str(record.get("roles") or "").split(",")):
        _code(user, "RoleIDCode", (role, role), ROLE_SYSTEM)
    archive = ET.SubElement(message, "ActiveParticipant", {"UserID": source, "UserIsRequestor": "false"})
    _code(archive, "RoleIDCode", SOURCE_ROLE if mapped.requester_role == DESTINATION_ROLE else DESTINATION_ROLE)

    ET.SubElement(message, "AuditSourceIdentification", {"AuditSourceID": source})

    if record.get("study_uid"):
        study = ET.SubElement(message, "ParticipantObjectIdentification", {
            "ParticipantObjectID": record["study_uid"], "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _code(study, "ParticipantObjectIDTypeCode", STUDY_UID_TYPE)
        if record.get("action") == "query" and record.get("query"):
            ET.SubElement(study, "ParticipantObjectQuery").text = _b64(record["query"])
    elif record.get("action") == "query":
        query = ET.SubElement(message, "ParticipantObjectIdentification", {
            "ParticipantObjectID": record.get("path") or "", "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _code(query, "ParticipantObjectIDTypeCode", ("QIDO-RS", "QIDO-RS search"), "dicomweb")
        ET.SubElement(query, "ParticipantObjectQuery").text = _b64(record.get("query") or "")
    if record.get("patient_id"):
        patient = ET.SubElement(message, "ParticipantObjectIdentification", {
            "ParticipantObjectID": record["patient_id"], "ParticipantObjectTypeCode": "1",
            "ParticipantObjectTypeCodeRole": "1"})
        _code(patient, "ParticipantObjectIDTypeCode", ("2", "Patient Number"), "RFC-3881")
    return message


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def audit_messages_xml(records: Iterable[dict[str, Any]], source: str = "dicomweb") -> bytes:
    root = ET.Element("AuditMessages")
    for record in records:
        root.append(audit_message(record, source))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_audit_messages(records: Iterable[dict[str, Any]], stream: BinaryIO, source: str = "dicomweb") -> int:
    """The same document as ``audit_messages_xml``, written one message at a time (exports of any size)."""
    stream.write(b"<?xml version='1.0' encoding='utf-8'?>\n<AuditMessages>")
    written = 0
    for record in records:
        stream.write(ET.tostring(audit_message(record, source), encoding="utf-8", xml_declaration=False))
        written += 1
    stream.write(b"</AuditMessages>")
    return written
