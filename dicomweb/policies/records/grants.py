"""Access grants: a patient's grant to a doctor, legal requests, supervised access - and their approvals.

A grant becomes active (``active_from``) when every approval its kind needs is in; it ends at its expiry or
by revocation, which is permanent. Each change is one transaction whose UPDATE re-checks the state it
changes, so two approvers racing cannot both win, nor approve a grant revoked a moment before.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, false, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from ..principal import Principal
from .common import ID_MAX, as_utc, institutions_asked, is_admin, now_utc, opt_utc, paging, session, study_uid, text
from .errors import RecordError
from .models import AccessGrant
from .permissions import APPROVE_LEGAL, GRANTS_READ, SUPERVISE, Permissions

KINDS = ("patient", "legal", "supervised")
SIDES = ("patient", "institution", "supervisor")
STATES = ("pending", "active", "expired", "revoked")
# The approvals each kind needs before it is active (a patient's own grant is its approval).
NEEDS: dict[str, tuple[str, ...]] = {"patient": (), "legal": ("patient", "institution"), "supervised": ("supervisor",)}
# Who may ask for each requested kind.
REQUESTERS = {"legal": frozenset({"lawyer", "court"}), "supervised": frozenset({"doctor", "chief", "radiologist"})}
_SIDE_RIGHT = {"institution": APPROVE_LEGAL, "supervisor": SUPERVISE}
T = AccessGrant.__table__  # type: ignore[attr-defined]


def _approved_at(grant: AccessGrant, side: str) -> datetime | None:
    value: datetime | None = getattr(grant, f"{side}_approved_at")
    return value


def awaiting(grant: AccessGrant) -> list[str]:
    """The approvals still missing."""
    return [side for side in NEEDS[grant.kind] if _approved_at(grant, side) is None]


def state(grant: AccessGrant, now: datetime) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    expires = opt_utc(grant.expires_at)
    if expires is not None and expires <= now:
        return "expired"
    active = opt_utc(grant.active_from)
    return "active" if active is not None and active <= now else "pending"


def _state_condition(name: str, now: datetime) -> ColumnElement[bool]:
    live = or_(T.c.expires_at.is_(None), T.c.expires_at > now)
    if name == "revoked":
        return T.c.revoked_at.is_not(None)
    if name == "expired":
        return and_(T.c.revoked_at.is_(None), T.c.expires_at.is_not(None), T.c.expires_at <= now)
    if name == "active":
        return and_(T.c.revoked_at.is_(None), live, T.c.active_from.is_not(None), T.c.active_from <= now)
    return and_(T.c.revoked_at.is_(None), live, or_(T.c.active_from.is_(None), T.c.active_from > now))


class Grants:
    def __init__(self, engine: Engine, permissions: Permissions, *, legal_max_days: int = 365) -> None:
        self.engine = engine
        self.permissions = permissions
        self.legal_max_days = legal_max_days

    # -- reading -----------------------------------------------------------------------------------------------
    def _load(self, grant_id: int) -> AccessGrant | None:
        if not 0 < grant_id <= ID_MAX:
            return None
        with session(self.engine) as s:
            return s.get(AccessGrant, grant_id)

    def _may_read(self, principal: Principal, grant: AccessGrant) -> bool:
        if is_admin(principal) or principal.subject in (grant.grantee, grant.requested_by):
            return True
        may = self.permissions.may_manage
        if may(principal, GRANTS_READ, grant.institution):
            return True
        if grant.kind == "legal" and may(principal, APPROVE_LEGAL, grant.institution):
            return True
        if grant.kind == "supervised" and may(principal, SUPERVISE, grant.institution):
            return True
        return self.permissions.is_patient_of(principal, grant.study_instance_uid)

    def get(self, principal: Principal, grant_id: int) -> AccessGrant:
        """The grant; 404 when there is none or the principal may not see it."""
        grant = self._load(grant_id)
        if grant is None or not self._may_read(principal, grant):
            raise RecordError(404, f"there is no grant {grant_id}")
        return grant

    def list(self, principal: Principal, *, study: str | None = None, grantee: str | None = None,
             kind: str | None = None, state: str | None = None, institution: str | None = None,
             limit: int = 100, offset: int = 0, now: datetime | None = None) -> list[AccessGrant]:
        """Newest first: the grants the principal may see, narrowed by the filters given."""
        now = now_utc(now)
        limit, offset = paging(limit, offset)
        if kind is not None and kind not in KINDS:
            raise RecordError(400, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if state is not None and state not in STATES:
            raise RecordError(400, f"state must be one of {', '.join(STATES)}, not {state!r}")
        where: list[ColumnElement[bool]] = []
        if not is_admin(principal):
            where.append(self._visible(principal, study, institution))
        for column, value in (("study_instance_uid", study), ("grantee", grantee), ("kind", kind),
                              ("institution", institution)):
            if value is not None:
                where.append(T.c[column] == value)
        if state is not None:
            where.append(_state_condition(state, now))
        stmt = select(AccessGrant).where(*where).order_by(col(AccessGrant.id).desc()).limit(limit).offset(offset)
        with session(self.engine) as s:
            return list(s.exec(stmt).all())

    def _visible(self, principal: Principal, study: str | None, institution: str | None) -> ColumnElement[bool]:
        """The grants a principal other than an administrator sees: its own (as grantee or requester), those of
        the institutions it manages grants in, and every grant of a study whose patient it is."""
        seen: list[ColumnElement[bool]] = [T.c.grantee == principal.subject, T.c.requested_by == principal.subject]
        may = self.permissions.may_manage
        for name in institutions_asked(principal, institution):
            if may(principal, GRANTS_READ, name):
                seen.append(T.c.institution == name)
                continue
            kinds = [k for k, right in (("legal", APPROVE_LEGAL), ("supervised", SUPERVISE))
                     if may(principal, right, name)]
            if kinds:
                seen.append(and_(T.c.institution == name, T.c.kind.in_(kinds)))
            elif institution is not None:
                raise RecordError(403, f"this identity may not list the grants of institution {institution!r}")
        if study is not None and self.permissions.is_patient_of(principal, study):
            seen.append(T.c.study_instance_uid == study)
        return or_(false(), *seen)

    # -- changing ----------------------------------------------------------------------------------------------
    def create(self, principal: Principal, kind: str, study: str, *, grantee: str = "", reason: str = "",
               expires_at: datetime | None = None, anonymized: bool = False,
               now: datetime | None = None) -> AccessGrant:
        now = now_utc(now)
        if kind not in KINDS:
            raise RecordError(400, f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        study = study_uid("study", study)
        institution = self.permissions.study_institution(study)
        if institution is None:
            raise RecordError(404, f"there is no study {study}")
        if kind == "patient":
            if not (principal.is_system or self.permissions.is_patient_of(principal, study)):
                raise RecordError(403, "only the study's patient may grant access to it")
        elif not (principal.is_system or principal.roles & REQUESTERS[kind]):
            raise RecordError(403, f"a {kind} request is made by the roles {', '.join(sorted(REQUESTERS[kind]))}")
        grantee = text("grantee", grantee, 200, required=kind == "patient" or principal.is_system)
        if kind != "patient" and not principal.is_system:
            if grantee not in ("", principal.subject):
                raise RecordError(403, "an identity may request access for itself only")
            grantee = principal.subject
        reason = text("reason", reason, 10_000, required=kind != "patient")
        expires_at = opt_utc(expires_at)
        if kind == "legal" and expires_at is None:
            raise RecordError(400, "expiresAt is required: legal access is temporary")
        if expires_at is not None and expires_at <= now:
            raise RecordError(400, "expiresAt must be in the future")
        if kind == "legal" and expires_at is not None and expires_at > now + timedelta(days=self.legal_max_days):
            raise RecordError(400, f"expiresAt is at most {self.legal_max_days} days ahead for legal access")
        if anonymized and kind != "supervised":
            raise RecordError(400, f"anonymized: a {kind} grant opens the study in full")
        grant = AccessGrant(kind=kind, study_instance_uid=study, institution=institution, grantee=grantee,
                            requested_by=principal.subject, reason=reason, anonymized=anonymized,
                            expires_at=expires_at, created_at=now)
        if kind == "patient":  # the patient's own grant carries its consent and is active at once
            grant.patient_approved_by, grant.patient_approved_at, grant.active_from = principal.subject, now, now
        with session(self.engine) as s, s.begin():
            s.add(grant)
        return grant

    def approve(self, principal: Principal, grant_id: int, side: str, *, now: datetime | None = None) -> AccessGrant:
        """Add one approval (``side``: patient, institution or supervisor); the last one needed activates."""
        now = now_utc(now)
        if side not in SIDES:
            raise RecordError(400, f"as must be one of {', '.join(SIDES)}, not {side!r}")
        grant = self.get(principal, grant_id)
        if side not in NEEDS[grant.kind]:
            raise RecordError(409, f"a {grant.kind} grant needs no {side} approval")
        if side == "patient":
            allowed = principal.is_system or self.permissions.is_patient_of(principal, grant.study_instance_uid)
        else:
            allowed = self.permissions.may_manage(principal, _SIDE_RIGHT[side], grant.institution)
        if not allowed:
            raise RecordError(403, f"this identity may not give the {side} approval of grant {grant_id}")
        if side == "supervisor" and principal.subject == grant.requested_by and not principal.is_system:
            raise RecordError(403, "a supervised request is approved by someone other than its requester")
        at, by = T.c[f"{side}_approved_at"], T.c[f"{side}_approved_by"]
        with session(self.engine) as s, s.begin():
            changed = s.execute(update(T).where(T.c.id == grant_id, at.is_(None), *self._open(now))
                                .values({at: now, by: principal.subject}))
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise self._conflict(grant_id, now, f"grant {grant_id} already has its {side} approval")
            s.execute(update(T).where(T.c.id == grant_id, T.c.active_from.is_(None),
                                      *(T.c[f"{n}_approved_at"].is_not(None) for n in NEEDS[grant.kind]))
                      .values(active_from=now))
        return self._reload(grant_id)

    def revoke(self, principal: Principal, grant_id: int, reason: str, *, now: datetime | None = None) -> AccessGrant:
        """End the grant for good, or refuse a request; its history stays."""
        now = now_utc(now)
        grant = self.get(principal, grant_id)
        if not self._may_revoke(principal, grant):
            raise RecordError(403, f"this identity may not revoke grant {grant_id}")
        reason = text("reason", reason, 10_000, required=True)
        with session(self.engine) as s, s.begin():
            changed = s.execute(update(T).where(T.c.id == grant_id, *self._open(now))
                                .values(revoked_at=now, revoked_by=principal.subject, revoke_reason=reason))
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise self._conflict(grant_id, now, f"grant {grant_id} cannot be revoked")
        return self._reload(grant_id)

    def _may_revoke(self, principal: Principal, grant: AccessGrant) -> bool:
        if is_admin(principal) or principal.subject in (grant.grantee, grant.requested_by):
            return True
        if grant.kind in ("patient", "legal") and self.permissions.is_patient_of(principal, grant.study_instance_uid):
            return True
        right = {"legal": APPROVE_LEGAL, "supervised": SUPERVISE}.get(grant.kind)
        return right is not None and self.permissions.may_manage(principal, right, grant.institution)

    @staticmethod
    def _open(now: datetime) -> tuple[ColumnElement[bool], ...]:
        return T.c.revoked_at.is_(None), or_(T.c.expires_at.is_(None), T.c.expires_at > now)

    def _conflict(self, grant_id: int, now: datetime, otherwise: str) -> RecordError:
        grant = self._reload(grant_id)
        if grant.revoked_at is not None:
            return RecordError(409, f"grant {grant_id} was revoked at {as_utc(grant.revoked_at).isoformat()}")
        if state(grant, now) == "expired" and grant.expires_at is not None:
            return RecordError(409, f"grant {grant_id} expired at {as_utc(grant.expires_at).isoformat()}")
        return RecordError(409, otherwise)

    def _reload(self, grant_id: int) -> AccessGrant:
        grant = self._load(grant_id)
        if grant is None:  # only a deleted row; the index never deletes grants
            raise RecordError(404, f"there is no grant {grant_id}")
        return grant
