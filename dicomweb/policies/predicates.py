"""Read scopes as SQL: each is a condition on the ``study`` row (joined with its ``patient``).

Every scope is a non-correlated ``IN (subquery)`` or a plain column test: the database computes the small
set of a principal's patients or studies once, then walks the study indexes; an EXISTS per candidate row
would cost a probe per study of a 100,000-study archive.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, select, true, union

from ..services.query import T_PATIENT, T_STUDY
from .principal import NationalId, Principal
from .tables import CARE, GRANT, IDENTIFIER, SHARE

_PATIENT = T_PATIENT.alias("pol_patient")


def _care_active(now: datetime) -> ColumnElement[bool]:
    return and_(
        CARE.c.ended_at.is_(None), or_(CARE.c.valid_from.is_(None), CARE.c.valid_from <= now),
        or_(CARE.c.valid_until.is_(None), CARE.c.valid_until > now),
    )


def _patients_in_care(*conditions: ColumnElement[bool]) -> Any:
    """Ids of the patients some active care relationship matching ``conditions`` names, by PatientID with its
    issuer (an empty issuer in the record matches any) or by one of the patient's other IDs."""
    issuer_ok_main = or_(CARE.c.issuer_of_patient_id == "",
                         CARE.c.issuer_of_patient_id == _PATIENT.c.issuer_of_patient_id)
    by_main = select(_PATIENT.c.id).select_from(
        CARE.join(_PATIENT, and_(_PATIENT.c.patient_id == CARE.c.patient_id, issuer_ok_main))
    ).where(*conditions)
    issuer_ok_other = or_(CARE.c.issuer_of_patient_id == "", CARE.c.issuer_of_patient_id == IDENTIFIER.c.issuer)
    by_other = select(IDENTIFIER.c.patient_fk).select_from(
        CARE.join(IDENTIFIER, and_(IDENTIFIER.c.value == CARE.c.patient_id, issuer_ok_other))
    ).where(*conditions)
    return union(by_main, by_other)


def _patients_with_ids(ids: tuple[NationalId, ...]) -> Any:
    def main(n: NationalId) -> ColumnElement[bool]:
        match = _PATIENT.c.patient_id == n.value
        return and_(match, _PATIENT.c.issuer_of_patient_id == n.issuer) if n.issuer else match

    def other(n: NationalId) -> ColumnElement[bool]:
        match = IDENTIFIER.c.value == n.value
        return and_(match, IDENTIFIER.c.issuer == n.issuer) if n.issuer else match

    return union(
        select(_PATIENT.c.id).where(or_(*(main(n) for n in ids))),
        select(IDENTIFIER.c.patient_fk).where(or_(*(other(n) for n in ids))),
    )


def _granted(principal: Principal, now: datetime, anonymized: bool) -> Any:
    return select(GRANT.c.study_instance_uid).where(
        GRANT.c.grantee == principal.subject, GRANT.c.active_from.is_not(None), GRANT.c.active_from <= now,
        GRANT.c.revoked_at.is_(None), or_(GRANT.c.expires_at.is_(None), GRANT.c.expires_at > now),
        GRANT.c.anonymized.is_(anonymized),
    )


def scope_condition(scope: str, principal: Principal, now: datetime) -> ColumnElement[bool]:
    """The studies ``scope`` opens to ``principal`` (a scope whose attribute the principal lacks opens none)."""
    if scope == "all":
        return true()
    if scope == "own_patient":
        ids = tuple(n for n in principal.national_ids if n.value)
        return T_STUDY.c.patient_fk.in_(_patients_with_ids(ids)) if ids else false()
    if scope == "care_relationship":
        return T_STUDY.c.patient_fk.in_(_patients_in_care(CARE.c.doctor == principal.subject, _care_active(now)))
    if scope == "department":
        if not (principal.institution and principal.department):
            return false()
        return T_STUDY.c.patient_fk.in_(_patients_in_care(
            CARE.c.institution == principal.institution, CARE.c.department == principal.department, _care_active(now)
        ))
    if scope == "referring_physician":
        return T_STUDY.c.referring_physician_name == principal.name if principal.name else false()
    if scope == "institution":
        return T_STUDY.c.institution_name == principal.institution if principal.institution else false()
    if scope == "research_shared":
        if not principal.institution:
            return false()
        shared = select(SHARE.c.study_instance_uid).where(
            SHARE.c.institution == principal.institution, SHARE.c.revoked_at.is_(None))
        return T_STUDY.c.study_instance_uid.in_(shared)
    raise ValueError(f"no SQL for scope {scope!r}")


def grant_condition(principal: Principal, now: datetime, anonymized: bool) -> ColumnElement[bool]:
    return T_STUDY.c.study_instance_uid.in_(_granted(principal, now, anonymized))
