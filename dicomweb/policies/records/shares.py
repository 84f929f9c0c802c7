"""Research shares: a study its institution opens to that institution's researchers, de-identified."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from ..principal import Principal
from .common import ID_MAX, institutions_asked, is_admin, now_utc, paging, session, study_uid, text
from .errors import RecordError
from .models import ResearchShare
from .permissions import RESEARCH_SHARE, Permissions

T = ResearchShare.__table__  # type: ignore[attr-defined]


class ResearchShares:
    def __init__(self, engine: Engine, permissions: Permissions) -> None:
        self.engine = engine
        self.permissions = permissions

    def get(self, principal: Principal, share_id: int) -> ResearchShare:
        """The share; 404 when there is none or the principal may not manage its institution's shares."""
        found = None
        if 0 < share_id <= ID_MAX:
            with session(self.engine) as s:
                found = s.get(ResearchShare, share_id)
        if found is None or not (is_admin(principal)
                                 or self.permissions.may_manage(principal, RESEARCH_SHARE, found.institution)):
            raise RecordError(404, f"there is no research share {share_id}")
        return found

    def list(self, principal: Principal, *, study: str | None = None, institution: str | None = None,
             active: bool | None = None, limit: int = 100, offset: int = 0) -> list[ResearchShare]:
        """Newest first: the shares of the institutions the principal manages shares in."""
        limit, offset = paging(limit, offset)
        where: list[ColumnElement[bool]] = []
        if not is_admin(principal):
            managed = [name for name in institutions_asked(principal, institution)
                       if self.permissions.may_manage(principal, RESEARCH_SHARE, name)]
            if not managed:
                raise RecordError(403, "this identity may not list research shares"
                                  + (f" of {institution!r}" if institution is not None else ""))
            where.append(T.c.institution.in_(managed))
        if study is not None:
            where.append(T.c.study_instance_uid == study)
        if institution is not None:
            where.append(T.c.institution == institution)
        if active is not None:
            where.append(T.c.revoked_at.is_(None) if active else T.c.revoked_at.is_not(None))
        stmt = select(ResearchShare).where(*where).order_by(col(ResearchShare.id).desc())
        with session(self.engine) as s:
            return list(s.exec(stmt.limit(limit).offset(offset)).all())

    def share(self, principal: Principal, study: str, *, institution: str = "", reason: str = "",
              now: datetime | None = None) -> ResearchShare:
        """Share ``study`` with the researchers of its institution (the system may name another institution,
        e.g. for a study that carries no Institution Name)."""
        now = now_utc(now)
        study = study_uid("study", study)
        owner = self.permissions.study_institution(study)
        if owner is None:
            raise RecordError(404, f"there is no study {study}")
        if not self.permissions.may_manage(principal, RESEARCH_SHARE, owner):
            raise RecordError(403, f"this identity may not share the studies of {owner!r} for research")
        institution = text("institution", institution, 64) or owner
        if institution != owner and not principal.is_system:
            raise RecordError(400, f"institution must be the study's institution {owner!r}, not {institution!r}")
        if not institution:
            raise RecordError(400, "institution is required: the study names no institution")
        reason = text("reason", reason, 10_000)
        share = ResearchShare(study_instance_uid=study, institution=institution, shared_by=principal.subject,
                              reason=reason, created_at=now)
        try:
            with session(self.engine) as s, s.begin():
                same = s.exec(select(ResearchShare).where(
                    col(ResearchShare.study_instance_uid) == study, col(ResearchShare.institution) == institution,
                    col(ResearchShare.revoked_at).is_(None))).first()
                if same is not None:
                    raise RecordError(409, f"research share {same.id} already shares this study with {institution!r}",
                                      existing=same.id)
                s.add(share)
        except IntegrityError:  # a concurrent share won the unique index
            raise RecordError(409, f"this study is already shared with {institution!r}") from None
        return share

    def revoke(self, principal: Principal, share_id: int, *, reason: str = "",
               now: datetime | None = None) -> ResearchShare:
        now = now_utc(now)
        self.get(principal, share_id)
        reason = text("reason", reason, 10_000)
        with session(self.engine) as s, s.begin():
            changed = s.execute(update(T).where(T.c.id == share_id, T.c.revoked_at.is_(None)).values(
                revoked_at=now, revoked_by=principal.subject, revoke_reason=reason or None))
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise RecordError(409, f"research share {share_id} was already revoked")
            revoked = s.get(ResearchShare, share_id, populate_existing=True)
        assert revoked is not None
        return revoked
