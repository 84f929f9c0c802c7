"""Care relationships: which doctor treats which patient, in which department of which institution.

The policy engine opens a patient's studies to the doctor (and to the department's chief) while the
relationship is in force: from ``valid_from`` until ``valid_until`` or until it is ended.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, false, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from ..principal import Principal
from .common import ID_MAX, institutions_asked, is_admin, now_utc, opt_utc, paging, session, text
from .errors import RecordError
from .models import CareRelationship
from .permissions import CARE, Permissions

T = CareRelationship.__table__  # type: ignore[attr-defined]


def in_force(relationship: CareRelationship, now: datetime) -> bool:
    until, start = opt_utc(relationship.valid_until), opt_utc(relationship.valid_from)
    return (relationship.ended_at is None and (start is None or start <= now)
            and (until is None or until > now))


def _in_force(now: datetime) -> ColumnElement[bool]:
    return and_(T.c.ended_at.is_(None), T.c.valid_from <= now, or_(T.c.valid_until.is_(None), T.c.valid_until > now))


class CareRelationships:
    def __init__(self, engine: Engine, permissions: Permissions) -> None:
        self.engine = engine
        self.permissions = permissions

    def get(self, principal: Principal, relationship_id: int) -> CareRelationship:
        """The relationship; 404 when there is none or the principal may not see it (its doctor, the
        institution's care managers and administrators do)."""
        found = None
        if 0 < relationship_id <= ID_MAX:
            with session(self.engine) as s:
                found = s.get(CareRelationship, relationship_id)
        if found is None or not (is_admin(principal) or found.doctor == principal.subject
                                 or self.permissions.may_manage(principal, CARE, found.institution)):
            raise RecordError(404, f"there is no care relationship {relationship_id}")
        return found

    def list(self, principal: Principal, *, doctor: str | None = None, patient_id: str | None = None,
             institution: str | None = None, department: str | None = None, active: bool | None = None,
             limit: int = 100, offset: int = 0, now: datetime | None = None) -> list[CareRelationship]:
        """Newest first; ``active``: only those in force now (True) or only those not (False)."""
        now = now_utc(now)
        limit, offset = paging(limit, offset)
        where: list[ColumnElement[bool]] = []
        if not is_admin(principal):
            seen: list[ColumnElement[bool]] = [T.c.doctor == principal.subject]
            for name in institutions_asked(principal, institution):
                if self.permissions.may_manage(principal, CARE, name):
                    seen.append(T.c.institution == name)
                elif institution is not None:
                    raise RecordError(403, f"this identity may not list the care relationships of {institution!r}")
            where.append(or_(false(), *seen))
        for column, value in (("doctor", doctor), ("patient_id", patient_id), ("institution", institution),
                              ("department", department)):
            if value is not None:
                where.append(T.c[column] == value)
        if active is not None:
            where.append(_in_force(now) if active else ~_in_force(now))
        stmt = select(CareRelationship).where(*where).order_by(col(CareRelationship.id).desc())
        with session(self.engine) as s:
            return list(s.exec(stmt.limit(limit).offset(offset)).all())

    def add(self, principal: Principal, *, doctor: str, patient_id: str, institution: str, department: str = "",
            issuer: str = "", valid_from: datetime | None = None, valid_until: datetime | None = None,
            now: datetime | None = None) -> CareRelationship:
        now = now_utc(now)
        doctor = text("doctor", doctor, 200, required=True)
        patient_id = text("patientId", patient_id, 64, required=True)
        issuer = text("issuerOfPatientId", issuer, 64)
        institution = text("institution", institution, 64, required=True)
        department = text("department", department, 64)
        if not self.permissions.may_manage(principal, CARE, institution):
            raise RecordError(403, f"this identity may not manage the care relationships of {institution!r}")
        start = opt_utc(valid_from) or now
        until = opt_utc(valid_until)
        if until is not None and until <= start:
            raise RecordError(400, "validUntil must be after validFrom")
        with session(self.engine) as s, s.begin():
            same = s.exec(select(CareRelationship).where(
                col(CareRelationship.doctor) == doctor, col(CareRelationship.patient_id) == patient_id,
                col(CareRelationship.issuer_of_patient_id) == issuer,
                col(CareRelationship.institution) == institution, col(CareRelationship.department) == department,
                col(CareRelationship.ended_at).is_(None),
                or_(col(CareRelationship.valid_until).is_(None), col(CareRelationship.valid_until) > now),
            )).first()
            if same is not None:
                raise RecordError(409, f"care relationship {same.id} already names this doctor and patient there",
                                  existing=same.id)
            relationship = CareRelationship(
                doctor=doctor, patient_id=patient_id, issuer_of_patient_id=issuer, institution=institution,
                department=department, valid_from=start, valid_until=until, created_by=principal.subject,
                created_at=now)
            s.add(relationship)
        return relationship

    def end(self, principal: Principal, relationship_id: int, *, now: datetime | None = None) -> CareRelationship:
        now = now_utc(now)
        found = self.get(principal, relationship_id)
        if not self.permissions.may_manage(principal, CARE, found.institution):
            raise RecordError(403, f"this identity may not end care relationship {relationship_id}")
        with session(self.engine) as s, s.begin():
            changed = s.execute(update(T).where(T.c.id == relationship_id, T.c.ended_at.is_(None))
                                .values(ended_at=now, ended_by=principal.subject))
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise RecordError(409, f"care relationship {relationship_id} has already ended")
            ended = s.get(CareRelationship, relationship_id, populate_existing=True)
        assert ended is not None
        return ended
