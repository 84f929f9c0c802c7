"""One table from an audit record to the codes of both export formats (PS3.15 A.5 and FHIR R4 AuditEvent).

EventIDs and EventTypeCodes are DCM codes (PS3.16 CID 400 and 401; both formats use them, FHIR as
``type``/``subtype`` codings). EventActionCode C/R/U/D/E is shared too.

=============  ===================================  =====================================  ======
action         EventID                              EventTypeCode                          action
=============  ===================================  =====================================  ======
query          110112 Query                         -                                      E
retrieve       110103 DICOM Instances Accessed      - (detail "metadata": header only)     R
retrieve       110104 DICOM Instances Transferred   - (pixel data, frames, renders, ...)   R
store          110104 DICOM Instances Transferred   -                                      C
delete         110105 DICOM Study Deleted           -                                      D
login          110114 User Authentication           110122 Login                           E
policy-change  110113 Security Alert                110136 Security Roles Changed (rules)  U
                                                    110137 User Security Attributes
                                                    Changed (grants)
policy-read    110113 Security Alert                110132 Use of Restricted Function      R
admin          110113 Security Alert                110132 Use of Restricted Function      E
audit-read     110101 Audit Log Used                -                                      R
other          110100 Application Activity          -                                      E
=============  ===================================  =====================================  ======

Outcome: success 0; denied and login-failure 4 (minor: refused, nothing happened); failure 4 for a 4xx
answer, 8 (serious) for a 5xx answer or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Code = tuple[str, str]  # DCM code value, meaning

QUERY: Code = ("110112", "Query")
ACCESSED: Code = ("110103", "DICOM Instances Accessed")
TRANSFERRED: Code = ("110104", "DICOM Instances Transferred")
DELETED: Code = ("110105", "DICOM Study Deleted")
AUTHENTICATION: Code = ("110114", "User Authentication")
LOGIN: Code = ("110122", "Login")
SECURITY_ALERT: Code = ("110113", "Security Alert")
ROLES_CHANGED: Code = ("110136", "Security Roles Changed")
USER_SECURITY_CHANGED: Code = ("110137", "User Security Attributes Changed")
RESTRICTED_FUNCTION: Code = ("110132", "Use of Restricted Function")
AUDIT_LOG_USED: Code = ("110101", "Audit Log Used")
APPLICATION_ACTIVITY: Code = ("110100", "Application Activity")
# The requester's DICOM role: it sends (Source) or receives (Destination) the instances or the query.
SOURCE_ROLE: Code = ("110153", "Source Role ID")
DESTINATION_ROLE: Code = ("110152", "Destination Role ID")
STUDY_UID_TYPE: Code = ("110180", "Study Instance UID")


@dataclass(frozen=True)
class Mapped:
    event_id: Code
    type_code: Code | None
    action_code: str  # C R U D E
    outcome_code: str  # 0 4 8 12
    requester_role: Code


def outcome_code(record: dict[str, Any]) -> str:
    outcome, status = record.get("outcome"), record.get("status")
    if outcome == "success":
        return "0"
    if outcome in ("denied", "login-failure"):
        return "4"
    return "4" if isinstance(status, int) and 400 <= status < 500 else "8"


def map_record(record: dict[str, Any]) -> Mapped:
    action, detail = record.get("action", ""), record.get("detail", "")
    out = outcome_code(record)
    if action == "query":
        return Mapped(QUERY, None, "E", out, SOURCE_ROLE)
    if action == "retrieve":
        header_only = str(detail).startswith("metadata")
        return Mapped(ACCESSED if header_only else TRANSFERRED, None, "R", out, DESTINATION_ROLE)
    if action == "store":
        return Mapped(TRANSFERRED, None, "C", out, SOURCE_ROLE)
    if action == "delete":
        return Mapped(DELETED, None, "D", out, SOURCE_ROLE)
    if action == "login":
        return Mapped(AUTHENTICATION, LOGIN, "E", out, SOURCE_ROLE)
    if action == "policy-change":
        grants = "grants" in str(record.get("path", "")) or str(detail).startswith("grant")
        return Mapped(SECURITY_ALERT, USER_SECURITY_CHANGED if grants else ROLES_CHANGED, "U", out, SOURCE_ROLE)
    if action == "policy-read":
        return Mapped(SECURITY_ALERT, RESTRICTED_FUNCTION, "R", out, SOURCE_ROLE)
    if action == "admin":
        return Mapped(SECURITY_ALERT, RESTRICTED_FUNCTION, "E", out, SOURCE_ROLE)
    if action == "audit-read":
        return Mapped(AUDIT_LOG_USED, None, "R", out, DESTINATION_ROLE)
    return Mapped(APPLICATION_ACTIVITY, None, "E", out, SOURCE_ROLE)
