"""The records as JSON, for the admin API and the CLI: camelCase names, times in ISO 8601 UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .care import in_force
from .common import as_utc
from .grants import awaiting, state
from .models import AccessGrant, CareRelationship, ResearchShare


def when(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def grant_json(grant: AccessGrant, now: datetime) -> dict[str, Any]:
    return {
        "id": grant.id, "kind": grant.kind, "state": state(grant, now), "awaiting": awaiting(grant),
        "study": grant.study_instance_uid, "institution": grant.institution, "grantee": grant.grantee,
        "requestedBy": grant.requested_by, "reason": grant.reason, "anonymized": grant.anonymized,
        "expiresAt": when(grant.expires_at),
        "patientApprovedBy": grant.patient_approved_by, "patientApprovedAt": when(grant.patient_approved_at),
        "institutionApprovedBy": grant.institution_approved_by,
        "institutionApprovedAt": when(grant.institution_approved_at),
        "supervisorApprovedBy": grant.supervisor_approved_by,
        "supervisorApprovedAt": when(grant.supervisor_approved_at),
        "activeFrom": when(grant.active_from), "revokedAt": when(grant.revoked_at), "revokedBy": grant.revoked_by,
        "revokeReason": grant.revoke_reason, "createdAt": when(grant.created_at),
    }


def care_json(relationship: CareRelationship, now: datetime) -> dict[str, Any]:
    return {
        "id": relationship.id, "active": in_force(relationship, now), "doctor": relationship.doctor,
        "patientId": relationship.patient_id, "issuerOfPatientId": relationship.issuer_of_patient_id,
        "institution": relationship.institution, "department": relationship.department,
        "validFrom": when(relationship.valid_from), "validUntil": when(relationship.valid_until),
        "createdBy": relationship.created_by, "createdAt": when(relationship.created_at),
        "endedAt": when(relationship.ended_at), "endedBy": relationship.ended_by,
    }


def share_json(share: ResearchShare) -> dict[str, Any]:
    return {
        "id": share.id, "active": share.revoked_at is None, "study": share.study_instance_uid,
        "institution": share.institution, "sharedBy": share.shared_by, "reason": share.reason,
        "createdAt": when(share.created_at), "revokedAt": when(share.revoked_at), "revokedBy": share.revoked_by,
        "revokeReason": share.revoke_reason,
    }
