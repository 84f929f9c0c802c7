"""Exports: PS3.15 A.5 audit message XML and FHIR R4 AuditEvent, from the same mapping."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

import pytest

from dicomweb.audit.dicom_xml import audit_message, audit_messages_xml, write_audit_messages
from dicomweb.audit.fhir import audit_bundle, audit_event, write_bundle

WHEN = datetime(2024, 5, 1, 8, 0, 0, 5, tzinfo=UTC)


def _record(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 7, "occurred_at": WHEN, "subject": "dr.house", "roles": "chief,doctor",
        "institution_of_principal": "North", "action": "retrieve", "outcome": "success", "status": 200, "method": "GET",
        "path": "/dicom-web/studies/1.2.3", "query": "", "study_uid": "1.2.3", "series_uid": "", "instance_uid": "",
        "patient_id": "P1", "institution": "North", "client_ip": "192.0.2.7", "user_agent": "", "detail": "instances",
        "count": None, "bytes_sent": 10,
    }
    base.update(values)
    return base


# action, detail, path, status/outcome -> EventID, EventTypeCode, EventActionCode, EventOutcomeIndicator
CASES = [
    ({"action": "query", "detail": "studies", "query": "PatientID=P1"}, "110112", None, "E", "0"),
    ({"action": "retrieve", "detail": "metadata"}, "110103", None, "R", "0"),
    ({"action": "retrieve", "detail": "frames"}, "110104", None, "R", "0"),
    ({"action": "store", "method": "POST"}, "110104", None, "C", "0"),
    ({"action": "delete", "method": "DELETE"}, "110105", None, "D", "0"),
    ({"action": "login", "outcome": "login-failure", "status": 401, "subject": ""}, "110114", "110122", "E", "4"),
    ({"action": "policy-change", "path": "/admin/grants"}, "110113", "110137", "U", "0"),
    ({"action": "policy-change", "path": "/admin/policy/rules"}, "110113", "110136", "U", "0"),
    ({"action": "policy-read", "path": "/admin/grants"}, "110113", "110132", "R", "0"),
    ({"action": "admin", "path": "/admin/jobs"}, "110113", "110132", "E", "0"),
    ({"action": "audit-read", "path": "/audit"}, "110101", None, "R", "0"),
    ({"action": "retrieve", "outcome": "denied", "status": 404}, "110104", None, "R", "4"),
    ({"action": "retrieve", "outcome": "failure", "status": 503}, "110104", None, "R", "8"),
]


@pytest.mark.parametrize(("values", "event_id", "type_code", "action", "outcome"), CASES)
def test_dicom_audit_message(values: dict[str, Any], event_id: str, type_code: str | None, action: str,
                             outcome: str) -> None:
    message = ET.fromstring(ET.tostring(audit_message(_record(**values), "ARCHIVE")))
    event = message.find("EventIdentification")
    assert event is not None
    assert event.attrib == {"EventActionCode": action, "EventDateTime": "2024-05-01T08:00:00.000005Z",
                            "EventOutcomeIndicator": outcome}
    event_code = event.find("EventID")
    assert event_code is not None and event_code.attrib["csd-code"] == event_id
    assert event_code.attrib["codeSystemName"] == "DCM" and event_code.attrib["originalText"]
    types = [e.attrib["csd-code"] for e in event.findall("EventTypeCode")]
    assert types == ([type_code] if type_code else [])
    user, archive = message.findall("ActiveParticipant")
    assert user.attrib["UserID"] == (values.get("subject", "dr.house") or "anonymous")
    assert (user.attrib["UserIsRequestor"], user.attrib["NetworkAccessPointID"],
            user.attrib["NetworkAccessPointTypeCode"]) == ("true", "192.0.2.7", "2")
    role_codes = [(r.attrib["csd-code"], r.attrib["codeSystemName"]) for r in user.findall("RoleIDCode")]
    assert role_codes[1:] == [("chief", "dicomweb-role"), ("doctor", "dicomweb-role")]
    assert role_codes[0][0] in ("110152", "110153")
    assert archive.attrib == {"UserID": "ARCHIVE", "UserIsRequestor": "false"}
    source = message.find("AuditSourceIdentification")
    assert source is not None and source.attrib == {"AuditSourceID": "ARCHIVE"}
    objects = {o.attrib["ParticipantObjectID"]: o for o in message.findall("ParticipantObjectIdentification")}
    study, patient = objects["1.2.3"], objects["P1"]
    assert (study.attrib["ParticipantObjectTypeCode"], study.attrib["ParticipantObjectTypeCodeRole"]) == ("2", "3")
    study_type = study.find("ParticipantObjectIDTypeCode")
    assert study_type is not None and study_type.attrib["csd-code"] == "110180"
    assert (patient.attrib["ParticipantObjectTypeCode"], patient.attrib["ParticipantObjectTypeCodeRole"]) == ("1", "1")


@pytest.mark.parametrize(("values", "event_id", "type_code", "action", "outcome"), CASES)
def test_fhir_audit_event(values: dict[str, Any], event_id: str, type_code: str | None, action: str,
                          outcome: str) -> None:
    resource = json.loads(json.dumps(audit_event(_record(**values), "ARCHIVE")))
    assert resource["resourceType"] == "AuditEvent"
    assert resource["type"] == {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": event_id,
                                "display": resource["type"]["display"]}
    subtypes = [s["code"] for s in resource["subtype"]]
    assert subtypes == ([type_code] if type_code else []) + [values["action"]]
    assert (resource["action"], resource["outcome"], resource["recorded"]) == (
        action, outcome, "2024-05-01T08:00:00.000005Z")
    [agent] = resource["agent"]
    assert agent["requestor"] is True
    assert agent["who"]["identifier"]["value"] == (values.get("subject", "dr.house") or "anonymous")
    assert agent["network"] == {"address": "192.0.2.7", "type": "2"}
    assert [r["coding"][0]["code"] for r in agent["role"]] == ["chief", "doctor"]
    assert resource["source"]["observer"] == {"display": "ARCHIVE"}
    whats = [e.get("what", {}).get("identifier", {}).get("value") for e in resource["entity"]]
    assert "urn:oid:1.2.3" in whats and "P1" in whats
    assert ("outcomeDesc" in resource) == (outcome != "0" or bool(_record(**values)["detail"]))


def test_query_carries_its_parameters() -> None:
    record = _record(action="query", study_uid="", patient_id="", query="PatientID=P1")
    resource = audit_event(record)
    assert [e["query"] for e in resource["entity"]] == ["UGF0aWVudElEPVAx"]
    message = audit_message(record)
    query = message.find("ParticipantObjectIdentification/ParticipantObjectQuery")
    assert query is not None and query.text == "UGF0aWVudElEPVAx"


def test_documents_and_streams_agree() -> None:
    records = [_record(id=i) for i in (1, 2, 3)]
    stream = io.BytesIO()
    assert write_audit_messages(records, stream) == 3
    assert ET.fromstring(stream.getvalue()).findall("AuditMessage")[2].find("EventIdentification") is not None
    assert ET.tostring(ET.fromstring(stream.getvalue())) == ET.tostring(ET.fromstring(audit_messages_xml(records)))
    out = io.BytesIO()
    assert write_bundle(records, out) == 3
    assert json.loads(out.getvalue()) == audit_bundle(records)
    assert audit_bundle(records)["type"] == "collection" and "total" not in audit_bundle(records)
