"""Read scopes as SQL: each is a condition on the ``study`` row (joined with its ``patient``).

Every scope is a non-correlated ``IN (subquery)`` or a plain column test: the database computes the small
set of a principal's patients or studies once, then walks the study indexes; an EXISTS per candidate row
would cost a probe per study of a 100,000-study archive.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, literal, or_, select, true, union

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


def _cared_for(study: Any, *records: ColumnElement[bool]) -> ColumnElement[bool]:
    """Per row: a matching care relationship names this study's patient (index probes; no set is built)."""
    patient = T_PATIENT.alias("pol_row_patient")
    issuer_ok = or_(CARE.c.issuer_of_patient_id == "", CARE.c.issuer_of_patient_id == patient.c.issuer_of_patient_id)
    by_main = select(literal(1)).select_from(
        CARE.join(patient, and_(patient.c.patient_id == CARE.c.patient_id, issuer_ok))
    ).where(patient.c.id == study.c.patient_fk, *records)
    issuer_ok_other = or_(CARE.c.issuer_of_patient_id == "", CARE.c.issuer_of_patient_id == IDENTIFIER.c.issuer)
    by_other = select(literal(1)).select_from(
        CARE.join(IDENTIFIER, and_(IDENTIFIER.c.value == CARE.c.patient_id, issuer_ok_other))
    ).where(IDENTIFIER.c.patient_fk == study.c.patient_fk, *records)
    return or_(exists(by_main), exists(by_other))


def scope_condition(
    scope: str, principal: Principal, now: datetime, study: Any = T_STUDY, per_row: bool = False
) -> ColumnElement[bool]:
    """The studies ``scope`` opens to ``principal`` (a scope whose attribute the principal lacks opens none),
    as a condition on ``study`` (the study table or an alias of it). ``per_row``: as probes for each row
    tested (one study's decision, a search inside one study) rather than as sets built once (a search
    walking many studies)."""
    if scope == "all":
        return true()
    if scope == "own_patient":
        ids = tuple(n for n in principal.national_ids if n.value)
        return study.c.patient_fk.in_(_patients_with_ids(ids)) if ids else false()
    if scope in ("care_relationship", "department"):
        records: tuple[ColumnElement[bool], ...]
        if scope == "care_relationship":
            records = (CARE.c.doctor == principal.subject, _care_active(now))
        elif principal.institution and principal.department:
            records = (CARE.c.institution == principal.institution, CARE.c.department == principal.department,
                       _care_active(now))
        else:
            return false()
        # As sets: a test on the study row itself (not on its joined patient), so the date index's walk
        # filters early.
        return _cared_for(study, *records) if per_row else study.c.patient_fk.in_(_patients_in_care(*records))
    if scope == "referring_physician":
        return study.c.referring_physician_name == principal.name if principal.name else false()
    if scope == "institution":
        return study.c.institution_name == principal.institution if principal.institution else false()
    if scope == "research_shared":
        if not principal.institution:
            return false()
        shared = select(SHARE.c.study_instance_uid).where(
            SHARE.c.institution == principal.institution, SHARE.c.revoked_at.is_(None))
        if per_row:
            return exists(shared.where(SHARE.c.study_instance_uid == study.c.study_instance_uid))
        return study.c.study_instance_uid.in_(shared)
    raise ValueError(f"no SQL for scope {scope!r}")


def grant_condition(principal: Principal, now: datetime, anonymized: bool, study: Any = T_STUDY,
                    per_row: bool = False) -> ColumnElement[bool]:
    granted = _granted(principal, now, anonymized)
    if per_row:
        return exists(granted.where(GRANT.c.study_instance_uid == study.c.study_instance_uid))
    return study.c.study_instance_uid.in_(granted)


def among(conditions: list[Callable[[Any], ColumnElement[bool]]]) -> ColumnElement[bool]:
    """``study.id IN (the union of each condition's study ids)``: one semi-join the planner can start from the
    principal's few studies (a doctor's 50 of 100,000), where an OR of conditions would be checked on every
    study the date index walks past."""
    if not conditions:
        return false()
    selects = []
    for index, condition in enumerate(conditions):
        alias = T_STUDY.alias(f"pol_s{index}")
        selects.append(select(alias.c.id).where(condition(alias)))
    return T_STUDY.c.id.in_(union(*selects) if len(selects) > 1 else selects[0])
