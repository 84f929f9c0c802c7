"""Read scopes as SQL: each is a condition on the ``study`` row (joined with its ``patient``).

Every scope is a non-correlated ``IN (subquery)`` or a plain column test: the database computes the small
set of a principal's patients or studies once, then walks the study indexes; an EXISTS per candidate row
would cost a probe per study of a 100,000-study archive.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, and_, bindparam, exists, false, or_, select, true, union
from sqlalchemy.sql.elements import BindParameter

from ..index.models import utcnow
from ..services.query import T_PATIENT, T_STUDY
from .principal import NationalId, Principal
from .tables import CARE_PATIENT, GRANT, IDENTIFIER, SHARE

_PATIENT = T_PATIENT.alias("pol_patient")

# The time a predicate is evaluated at: bound when the statement runs, so a predicate built once serves every
# later request (care relationships and grants begin and expire by the database's rows, not by when it was built).
NOW: BindParameter[datetime] = bindparam("pol_now", type_=DateTime(timezone=True), callable_=utcnow)
Now = datetime | BindParameter[datetime]


def _care_active(now: Now) -> ColumnElement[bool]:
    care = CARE_PATIENT.c
    return and_(care.ended_at.is_(None), or_(care.valid_from.is_(None), care.valid_from <= now),
                or_(care.valid_until.is_(None), care.valid_until > now))


def _patients_in_care(*records: ColumnElement[bool]) -> Any:
    """Ids of the patients some care relationship in force matching ``records`` names: read from
    ``care_patient``, where triggers keep each relationship resolved to its patients (by PatientID with its
    issuer, an empty issuer matching any, or by Other Patient IDs) beside copies of its keys and times, so that
    neither a patient nor the relationship is looked up here: one index range per scope."""
    return select(CARE_PATIENT.c.patient_fk).where(*records)


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


def _granted(principal: Principal, now: Now, anonymized: bool) -> Any:
    return select(GRANT.c.study_instance_uid).where(
        GRANT.c.grantee == principal.subject, GRANT.c.active_from.is_not(None), GRANT.c.active_from <= now,
        GRANT.c.revoked_at.is_(None), or_(GRANT.c.expires_at.is_(None), GRANT.c.expires_at > now),
        GRANT.c.anonymized.is_(anonymized),
    )


def _cared_for(study: Any, *records: ColumnElement[bool]) -> ColumnElement[bool]:
    """Per row: a matching care relationship names this study's patient (index probes; no set is built)."""
    return exists(_patients_in_care(*records).where(CARE_PATIENT.c.patient_fk == study.c.patient_fk))


CARE_SCOPES = frozenset({"care_relationship", "department"})  # opened by care relationships


def _care_keys(scope: str, principal: Principal) -> tuple[ColumnElement[bool], ...] | None:
    """Which relationships a care scope counts: the principal's own, or those of its department."""
    if scope == "care_relationship":
        return (CARE_PATIENT.c.doctor == principal.subject,)
    if principal.institution and principal.department:
        return CARE_PATIENT.c.institution == principal.institution, CARE_PATIENT.c.department == principal.department
    return None


def care_condition(scopes: tuple[str, ...], principal: Principal, now: Now, study: Any = T_STUDY,
                   per_row: bool = False) -> ColumnElement[bool]:
    """The studies of the patients the care relationships of ``scopes`` name, as one set (or one probe) for all
    of them: a chief's own and department's relationships cost a walked study one test, not two."""
    keys: list[tuple[ColumnElement[bool], ...]] = []
    for scope in scopes:
        found = _care_keys(scope, principal)
        if found is not None:
            keys.append((*found, _care_active(now)))
    if not keys:
        return false()
    if per_row:
        return or_(*(_cared_for(study, *k) for k in keys))
    # Each key an index range of its own (read from the index alone), appended into the one set.
    first, *others = [_patients_in_care(*k) for k in keys]
    condition: ColumnElement[bool] = study.c.patient_fk.in_(first.union_all(*others) if others else first)
    return condition


def scope_condition(
    scope: str, principal: Principal, now: Now, study: Any = T_STUDY, per_row: bool = False
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
    if scope in CARE_SCOPES:
        return care_condition((scope,), principal, now, study, per_row)
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


def grant_condition(principal: Principal, now: Now, anonymized: bool, study: Any = T_STUDY,
                    per_row: bool = False) -> ColumnElement[bool]:
    granted = _granted(principal, now, anonymized)
    if per_row:
        return exists(granted.where(GRANT.c.study_instance_uid == study.c.study_instance_uid))
    return study.c.study_instance_uid.in_(granted)


# Scopes that test the study row's own columns (no set of other rows to build).
ROW_SCOPES = frozenset({"institution", "referring_physician"})


def on_each_row(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """A set condition (``x IN (subquery)``) kept as a test on each row the date index yields: PostgreSQL builds
    the set once as a hash and probes it per row. Alone in a WHERE clause, PostgreSQL would turn it into a
    semi-join and may probe the set's table through an index for every study walked past (a researcher's newest
    studies: 5,700 probes for 100 answers, 2.5 times slower). Inside an OR it stays a hashed test anyway; alone
    it is wrapped in IS TRUE, which is not pulled up (and which SQLite evaluates alike)."""
    return condition.is_(true())


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
