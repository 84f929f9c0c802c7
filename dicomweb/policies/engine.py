"""The policy engine: what a principal may see (a SQL predicate, a decision per study), store, delete, audit.

One engine serves every transport. Searches put ``View.visible`` inside their single query's WHERE clause, so
limit, offset and counts are computed over what the principal may see; retrievals ask ``decide`` once per
request. A study the principal may not see is reported exactly as a study that does not exist.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, select, true
from sqlalchemy.engine import Engine

from ..index.db import reading
from ..index.models import utcnow
from ..services.query import T_PATIENT, T_STUDY, Kind, MatchKey
from .predicates import (
    CARE_SCOPES,
    NOW,
    ROW_SCOPES,
    Now,
    among,
    care_condition,
    grant_condition,
    on_each_row,
    scope_condition,
)
from .principal import Principal
from .rules import ReadScope, Rules, load_rules
from .tables import GRANT


@dataclass(frozen=True)
class View:
    """The studies a principal sees: ``visible`` (None: every study) and, among them, those it sees
    de-identified only: ``anonymized`` (None: none)."""

    visible: ColumnElement[bool] | None
    anonymized: ColumnElement[bool] | None

    @property
    def unrestricted(self) -> bool:
        return self.visible is None and self.anonymized is None


@dataclass(frozen=True)
class Decision:
    """The answer for one study: whether it exists for this principal, and whether only de-identified."""

    allowed: bool
    anonymized: bool = False
    study_uid: str = ""
    institution: str = ""
    patient_id: str = ""
    patient_key: str = ""


DENIED = Decision(False)
Condition = Callable[..., ColumnElement[bool]]  # a scope as a condition on a study table (or alias)
STUDY_UID = 0x0020000D
NARROW_SCOPES = frozenset({"own_patient", "care_relationship", "grant"})
ANONYMIZED_GRANTS_TTL = 5.0  # seconds between reads of who holds anonymized grants
VIEW_CACHE_SIZE = 4096  # principals' views kept built (each a few kB of expression objects)


def _view(principal: Principal, reads: list[ReadScope], anonymized_grants: bool, now: Now, per_row: bool) -> View:
    full: list[Condition] = []
    anonymized: list[Condition] = []
    scopes = {read.scope for read in reads}
    cared = tuple(read.scope for read in reads if read.scope in CARE_SCOPES and not read.anonymized)
    if len(cared) > 1:  # one set for all the relationships that open studies in full
        full.append(partial(care_condition, cared, principal, now))
        reads = [read for read in reads if read.scope not in cared or read.anonymized]
    for read in reads:
        if read.scope == "grant":
            full.append(partial(grant_condition, principal, now, False))
            if anonymized_grants:
                anonymized.append(partial(grant_condition, principal, now, True))
        else:
            (anonymized if read.anonymized else full).append(partial(scope_condition, read.scope, principal, now))
    if not full + anonymized:
        return View(false(), None)  # a role that reads nothing (an auditor)
    # A principal who sees a handful of studies (a patient, a doctor's patients, granted studies) is best served
    # by a semi-join that starts from them; one who sees a share of the archive (an institution, a department,
    # research shares) by a test on each row the date index yields, stopping at the limit.
    visible: ColumnElement[bool]
    if per_row:
        visible = or_(*(c(T_STUDY, per_row=True) for c in full + anonymized))
    elif scopes <= NARROW_SCOPES:
        visible = among(full + anonymized)
    else:
        conditions = [c(T_STUDY) for c in full + anonymized]
        visible = on_each_row(conditions[0]) if len(conditions) == 1 and not scopes <= ROW_SCOPES else or_(
            *conditions)
    if not anonymized:
        return View(visible, None)
    if not full:
        return View(visible, true())  # whatever it sees, it sees de-identified: no per-row test
    # Per answered row (so as probes): de-identified where an anonymized scope opens the study and no full scope
    # does. The anonymized scopes come first: where they do not match the rest is never evaluated.
    full_here = or_(*(c(T_STUDY, per_row=True) for c in full))
    return View(visible, and_(or_(*(c(T_STUDY, per_row=True) for c in anonymized)), not_(full_here)))


class PolicyEngine:
    def __init__(self, engine: Engine, rules: Rules, anonymized_grants_ttl: float = ANONYMIZED_GRANTS_TTL) -> None:
        self.engine = engine
        self.rules = rules
        self._ttl = anonymized_grants_ttl
        self._lock = threading.Lock()
        self._anonymized_grantees: frozenset[str] = frozenset()
        self._grantees_read_at = -math.inf
        self._views_lock = threading.Lock()
        self._views: OrderedDict[tuple[Principal, bool, bool], View] = OrderedDict()

    def _has_anonymized_grants(self, subject: str) -> bool:
        """Whether some grant to ``subject`` is to be seen de-identified. Such grants are rare; knowing who has
        none keeps the per-row anonymized test (and its second copy of every scope) out of their queries. The
        list is read at most every few seconds: a new anonymized grant opens within that time, and until then
        its study stays hidden, never shown in full."""
        with self._lock:
            if time.monotonic() - self._grantees_read_at > self._ttl:
                stmt = select(GRANT.c.grantee).where(GRANT.c.anonymized.is_(True), GRANT.c.revoked_at.is_(None)
                                                     ).distinct()
                with self.engine.connect() as conn:
                    self._anonymized_grantees = frozenset(conn.execute(stmt).scalars())
                self._grantees_read_at = time.monotonic()
            return subject in self._anonymized_grantees

    @classmethod
    def open(cls, engine: Engine, policy_file: str = "") -> PolicyEngine:
        return cls(engine, load_rules(policy_file))

    # -- reading ---------------------------------------------------------------------------------------------
    def view(self, principal: Principal, now: datetime | None = None, per_row: bool = False) -> View:
        """``per_row``: for a statement that tests few studies (one study's decision, a search inside one
        study): every scope as index probes on the row, where building a scope's set would cost more.

        Without ``now`` the predicates compare against the time the statement runs, and the view is built
        once per principal and form and then reused: building it costs more than running a one-study search."""
        if principal.is_system:
            return View(None, None)
        reads = list(dict.fromkeys(read for rule in self.rules.for_roles(principal.roles) for read in rule.read))
        if any(read.scope == "all" and not read.anonymized for read in reads):
            return View(None, None)  # every study in full: no predicate at all
        anonymized_grants = any(read.scope == "grant" for read in reads) and self._has_anonymized_grants(
            principal.subject)
        if now is not None:
            return _view(principal, reads, anonymized_grants, now, per_row)
        key = (principal, per_row, anonymized_grants)
        with self._views_lock:
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
                return found
        view = _view(principal, reads, anonymized_grants, NOW, per_row)
        with self._views_lock:
            self._views[key] = view
            if len(self._views) > VIEW_CACHE_SIZE:
                self._views.popitem(last=False)
        return view

    def search_view(self, principal: Principal, keys: list[MatchKey]) -> View:
        """The view for a search: a search inside one study (its series, its instances) tests that study only,
        where probes beat sets."""
        one_study = any(k.tag == STUDY_UID and k.kind == Kind.SINGLE for k in keys)
        return self.view(principal, per_row=one_study)

    def may_anonymize(self, principal: Principal) -> bool:
        """Whether some answer for this principal can be de-identified (its UIDs are then pseudonyms): the
        guard resolves pseudonyms only then, sparing every other principal's retrieval that query."""
        if principal.is_system:
            return False
        reads = [read for rule in self.rules.for_roles(principal.roles) for read in rule.read]
        return any(read.anonymized for read in reads) or (
            any(read.scope == "grant" for read in reads) and self._has_anonymized_grants(principal.subject))

    def decide(self, principal: Principal, study_uid: str) -> Decision:
        """One query: the study's facts and both predicates evaluated on its row."""
        view = self.view(principal, per_row=True)
        columns: list[Any] = [T_STUDY.c.institution_name, T_PATIENT.c.patient_id, T_PATIENT.c.patient_key]
        columns.append((view.visible if view.visible is not None else true()).label("visible"))
        columns.append((view.anonymized if view.anonymized is not None else false()).label("anonymized"))
        stmt = select(*columns).select_from(T_STUDY.join(T_PATIENT, T_STUDY.c.patient_fk == T_PATIENT.c.id)).where(
            T_STUDY.c.study_instance_uid == study_uid)
        with reading(self.engine) as conn:
            row = conn.execute(stmt).first()
        if row is None or not row.visible:
            return DENIED
        return Decision(True, bool(row.anonymized), study_uid, row.institution_name, row.patient_id,
                        row.patient_key)

    def is_patient_of(self, principal: Principal, study_uid: str) -> bool:
        if not principal.national_ids:
            return False
        condition = scope_condition("own_patient", principal, utcnow())
        stmt = select(T_STUDY.c.id).where(T_STUDY.c.study_instance_uid == study_uid, condition)
        with self.engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def study_institution(self, study_uid: str) -> str | None:
        with self.engine.connect() as conn:
            found = conn.execute(select(T_STUDY.c.institution_name).where(
                T_STUDY.c.study_instance_uid == study_uid)).first()
        return None if found is None else str(found.institution_name)

    # -- writing and administering -----------------------------------------------------------------------------
    def store_institutions(self, principal: Principal) -> frozenset[str] | None:
        """The Institution Names the principal may store into; None: any; empty: none at all."""
        if principal.is_system:
            return None
        rights = {rule.store for rule in self.rules.for_roles(principal.roles)}
        if "any" in rights:
            return None
        if "own_institution" in rights and principal.institution:
            return frozenset({principal.institution, ""})
        return frozenset()

    def may_delete(self, principal: Principal) -> bool:
        return principal.is_system or any(rule.delete for rule in self.rules.for_roles(principal.roles))

    def audit_scope(self, principal: Principal) -> str | None:
        """"*": every audit record; an institution name: that institution's; None: none."""
        if principal.is_system:
            return "*"
        rights = {rule.audit for rule in self.rules.for_roles(principal.roles)}
        if "all" in rights:
            return "*"
        if "institution" in rights and principal.institution:
            return principal.institution
        return None

    def may_manage(self, principal: Principal, capability: str, institution: str) -> bool:
        if principal.is_system:
            return True
        for rule in self.rules.for_roles(principal.roles):
            if capability in rule.manage and (
                rule.reach == "all" or (institution and institution == principal.institution)
            ):
                return True
        return False

